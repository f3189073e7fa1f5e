"""`kiln manifest create` / `push`: single-platform images built by kiln (FROM scratch + COPY, so arm64 needs no
emulation) joined into one index, checked with skopeo and the test registries' logs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.registry import Registry, RegistryFactory

pytestmark = pytest.mark.root

DOCKERFILE = "FROM scratch\nARG TARGETARCH\nCOPY hello.txt /hello-$TARGETARCH\n"


def kiln(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kiln", *args], capture_output=True, text=True,
                          env={**os.environ}, timeout=300)  # fmt: skip


def build(tmp_path: Path, name: str, platform: str, *out: str, text: str = "hello\n") -> Path:
    """A kiln build for `platform` into the layout tmp_path/name, and to `out`'s other outputs."""
    ctx = tmp_path / f"ctx-{name}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "hello.txt").write_text(text)
    layout = tmp_path / name
    r = kiln("build", "--context", str(ctx), "--kiln-dir", str(tmp_path / "kiln"), "--log-format", "json",
             "--platform", platform, "--oci-layout-path", str(layout), *(out or ("--no-push",)))  # fmt: skip
    assert r.returncode == 0, r.stderr
    return layout


def skopeo(*args: str) -> str:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, check=True).stdout


def raw(ref: str, registry: Registry) -> tuple[dict[str, Any], str]:
    """The index at a registry reference as skopeo reads it, and the digest of its bytes."""
    out = subprocess.run(["skopeo", "inspect", "--raw", *registry.tool_flags(), f"docker://{ref}"],
                         capture_output=True, check=True).stdout  # fmt: skip
    return json.loads(out), "sha256:" + hashlib.sha256(out).hexdigest()


def arch_config(ref: str, arch: str, registry: Registry) -> dict[str, Any]:
    return dict(json.loads(skopeo("--override-arch", arch, "inspect", "--config", *registry.tool_flags(),
                                  f"docker://{ref}")))  # fmt: skip


def platforms(index: dict[str, Any]) -> list[str]:
    return sorted(f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"])


def test_layouts_joined_and_pushed_to_a_registry(tmp_path: Path, registry: Registry) -> None:
    amd = build(tmp_path, "amd", "linux/amd64")
    arm = build(tmp_path, "arm", "linux/arm64", text="arm\n")
    dest = registry.ref("manifest/joined", "v1")
    r = kiln("manifest", "create", "--insecure", dest, f"oci-layout://{amd}", f"oci-layout://{arm}")
    assert r.returncode == 0, r.stderr
    index, digest = raw(dest, registry)
    assert r.stdout.strip() == digest
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert platforms(index) == ["linux/amd64", "linux/arm64"]
    assert arch_config(dest, "arm64", registry)["architecture"] == "arm64"
    assert arch_config(dest, "amd64", registry)["architecture"] == "amd64"
    # Every blob is in the repository: skopeo copies the whole index out of it.
    skopeo("copy", "--all", *registry.skopeo_flags("src"), f"docker://{dest}", f"oci:{tmp_path / 'copied'}:x")
    # The arm64 image in the registry is the one built: kiln diff against the layout finds nothing.
    r = kiln("diff", "--insecure", f"oci-layout://{arm}", dest)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "A is one image (linux/arm64)" in r.stdout


def test_images_from_another_repository_and_another_registry(
    tmp_path: Path, registry: Registry, registry_factory: RegistryFactory
) -> None:
    other = registry_factory.start(name="manifest-other")
    amd_ref = registry.ref("manifest/src-amd", "v1")  # same registry: its blobs are mounted
    arm_ref = other.ref("manifest/src-arm", "v1")  # another registry: its blobs are copied across
    build(tmp_path, "amd", "linux/amd64", "--destination", amd_ref, "--insecure")
    build(tmp_path, "arm", "linux/arm64", "--destination", arm_ref, "--insecure", text="arm\n")
    dest = registry.ref("manifest/cross", "v2")
    mark = registry.log_mark()
    r = kiln("manifest", "create", "--insecure-registry", registry.address, "--insecure-registry", other.address,
             dest, amd_ref, f"docker://{arm_ref}")  # fmt: skip
    assert r.returncode == 0, r.stderr
    index, digest = raw(dest, registry)
    assert r.stdout.strip() == digest and platforms(index) == ["linux/amd64", "linux/arm64"]
    requests = registry.requests_since(mark)
    mounts = [p for m, p, s in requests if m == "POST" and "mount=" in p and "from=manifest%2Fsrc-amd" in p
              and s == 201]  # fmt: skip
    assert mounts, requests  # the amd64 layer and config, from the sibling repository
    assert arch_config(dest, "arm64", registry)["architecture"] == "arm64"
    skopeo("copy", "--all", *registry.skopeo_flags("src"), f"docker://{dest}", f"oci:{tmp_path / 'copied'}:x")


def test_create_into_a_layout_then_push(tmp_path: Path, registry: Registry) -> None:
    amd = build(tmp_path, "amd", "linux/amd64")
    arm = build(tmp_path, "arm", "linux/arm64")
    out = tmp_path / "list"
    r = kiln("manifest", "create", f"oci-layout://{out}:v1", f"oci-layout://{amd}", f"oci-layout://{arm}")
    assert r.returncode == 0, r.stderr
    created = r.stdout.strip()
    local = json.loads(skopeo("inspect", "--raw", f"oci:{out}:v1"))
    assert platforms(local) == ["linux/amd64", "linux/arm64"]
    assert json.loads(skopeo("--override-arch", "arm64", "inspect", "--config", f"oci:{out}:v1"))["architecture"] \
        == "arm64"
    dest = registry.ref("manifest/pushed", "v1")
    r = kiln("manifest", "push", "--insecure", f"oci-layout://{out}:v1", dest)
    assert r.returncode == 0, r.stderr
    _, digest = raw(dest, registry)
    assert r.stdout.strip() == created == digest  # the list pushed is the list created, byte for byte
    # A multi-platform build's index as an input gives all its images; so does one from a registry.
    both = build(tmp_path, "both", "linux/amd64,linux/arm/v7", text="both\n")
    r = kiln("manifest", "create", "--insecure", f"oci-layout://{tmp_path / 'three'}", f"oci-layout://{arm}",
             f"oci-layout://{both}")  # fmt: skip
    assert r.returncode == 0, r.stderr
    three = json.loads(skopeo("inspect", "--raw", f"oci:{tmp_path / 'three'}:latest"))
    assert sorted(f"{m['platform']['architecture']}{m['platform'].get('variant', '')}" for m in three["manifests"]) \
        == ["amd64", "arm64", "armv7"]


def test_docker_format_makes_a_manifest_list(tmp_path: Path, registry: Registry) -> None:
    amd = build(tmp_path, "amd", "linux/amd64", "--no-push", "--format", "docker")
    arm = build(tmp_path, "arm", "linux/arm64", "--no-push", "--format", "docker")
    dest = registry.ref("manifest/docker", "v1")
    r = kiln("manifest", "create", "--insecure", dest, f"oci-layout://{amd}", f"oci-layout://{arm}")
    assert r.returncode == 0, r.stderr
    index, _ = raw(dest, registry)
    assert index["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json"  # the default here
    assert arch_config(dest, "arm64", registry)["architecture"] == "arm64"
    r = kiln("manifest", "create", "--insecure", "--format", "oci", registry.ref("manifest/docker", "oci"),
             f"oci-layout://{amd}", f"oci-layout://{arm}")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert raw(registry.ref("manifest/docker", "oci"), registry)[0]["mediaType"] == \
        "application/vnd.oci.image.index.v1+json"


def _fails(r: subprocess.CompletedProcess[str], *words: str) -> None:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and r.stdout == ""
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("error: "), line
    for w in words:
        assert w in line, line


def test_errors_name_the_input_and_write_nothing(tmp_path: Path) -> None:
    amd = build(tmp_path, "amd", "linux/amd64")
    amd2 = build(tmp_path, "amd2", "linux/amd64", text="other\n")
    out = tmp_path / "out"
    _fails(kiln("manifest", "create", f"oci-layout://{out}", f"oci-layout://{amd}", f"oci-layout://{amd2}"),
           "two images for linux/amd64", str(amd), str(amd2))  # fmt: skip
    _fails(kiln("manifest", "create", f"oci-layout://{out}", f"oci-layout://{amd}", f"oci-layout://{tmp_path}/nope"),
           "nope")  # fmt: skip
    _fails(kiln("manifest", "create", f"docker-archive://{tmp_path}/x.tar", f"oci-layout://{amd}"),
           "LIST", "docker-archive")  # fmt: skip
    _fails(kiln("manifest", "create", "--format", "docker", f"oci-layout://{out}", f"oci-layout://{amd}"),
           "--format", "OCI image")  # fmt: skip
    _fails(kiln("manifest", "create", f"oci-layout://{out}", str(amd)), "IMAGE", "looks like a path")
    assert not out.exists() and not (tmp_path / "x.tar").exists()
