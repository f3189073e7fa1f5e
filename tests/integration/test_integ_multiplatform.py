"""Multi-platform builds with RUN steps of a foreign architecture: arm64 binaries executed through qemu-user
(binfmt_misc, F flag) inside kiln's runc sandbox, one index for amd64 and arm64 pushed to a registry, checked
with skopeo and against buildah's build of the same Dockerfile."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from integ_helpers import KILN

from kiln.binfmt import Emulation
from support.base_images import OciImage
from support.buildah import Buildah
from support.registry import Registry

PLATFORMS = "linux/amd64,linux/arm64"
ELF_MACHINE = {"amd64": 0x3E, "arm64": 0xB7}
UNAME = {"amd64": "x86_64", "arm64": "aarch64"}


def _push_index(registry: Registry, repo: str, images: dict[str, OciImage]) -> str:
    """Push each platform's layout to the registry and an OCI index naming them (written here by hand, not by
    kiln) under `repo:multi`; returns that reference."""
    entries = []
    for arch, image in images.items():
        ref = registry.ref(repo, arch)
        subprocess.run(["skopeo", "copy", "--quiet", *registry.skopeo_flags("dest"),
                        f"oci:{image.layout}:{image.tag}", f"docker://{ref}"], check=True)  # fmt: skip
        raw = subprocess.run(["skopeo", "inspect", "--raw", *registry.tool_flags(), f"docker://{ref}"],
                             capture_output=True, check=True).stdout  # fmt: skip
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": len(raw),
                        "platform": {"os": "linux", "architecture": arch}})  # fmt: skip
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}
    request = urllib.request.Request(f"{registry.url}/v2/{repo}/manifests/multi", data=json.dumps(index).encode(),
                                     method="PUT",
                                     headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})  # fmt: skip
    with urllib.request.urlopen(request) as resp:
        assert resp.status == 201
    return registry.ref(repo, "multi")


def _files_for(registry: Registry, ref: str, arch: str, names: list[str], work: Path) -> dict[str, bytes]:
    """Files of one platform's image, read from layers skopeo copied out (--override-arch picks the platform)."""
    work.mkdir(parents=True, exist_ok=True)
    layout = work / f"copy-{arch}"
    subprocess.run(["skopeo", "--override-arch", arch, "copy", "--quiet", *registry.skopeo_flags("src"),
                    f"docker://{ref}", f"oci:{layout}:x"], check=True)  # fmt: skip
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_bytes())
    config = json.loads((layout / "blobs/sha256" / manifest["config"]["digest"][7:]).read_bytes())
    assert config["architecture"] == arch
    found: dict[str, bytes] = {}
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO((layout / "blobs/sha256" / layer["digest"][7:]).read_bytes())) as tar:
            for member in tar.getmembers():
                name = member.name.lstrip("./")
                if name in names and member.isfile():
                    f = tar.extractfile(member)
                    assert f is not None
                    found[name] = f.read()
    return found


def _elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF", "not an ELF file"
    order = "little" if data[5] == 1 else "big"
    return int.from_bytes(data[18:20], order)


def _kiln_build(tmp_path: Path, dockerfile: str, dest: str, *extra: str) -> subprocess.CompletedProcess[str]:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    return subprocess.run(
        [str(KILN), "build", "--context", str(ctx), "--kiln-dir", str(tmp_path / "kiln"), "--insecure",
         "--insecure-pull", "--destination", dest, "--platform", PLATFORMS, "--log-format", "text", *extra],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip


def _check_index(registry: Registry, dest: str, binary: str, tmp_path: Path) -> None:
    index = json.loads(subprocess.run(["skopeo", "inspect", "--raw", *registry.tool_flags(), f"docker://{dest}"],
                                      capture_output=True, check=True).stdout)  # fmt: skip
    assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"]
    for arch in ("amd64", "arm64"):
        files = _files_for(registry, dest, arch, ["uname", "binary-copy"], tmp_path / "check")
        assert files["uname"].decode().strip() == UNAME[arch], f"RUN of the {arch} image ran as {files['uname']!r}"
        assert _elf_machine(files["binary-copy"]) == ELF_MACHINE[arch], f"{binary} of the {arch} image"


def _diff_with_buildah(buildah: Buildah, registry: Registry, dockerfile: str, base: str, kiln_ref: str,
                       tmp_path: Path) -> None:  # fmt: skip
    """buildah builds the same Dockerfile for both platforms into a manifest list; per platform, kiln diff
    finds the same files."""
    ctx = tmp_path / "buildah-ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    name = f"kiln-multi-{tmp_path.name}"
    buildah("build", "--layers=false", "--format", "oci", "--platform", PLATFORMS, "--manifest", name,
            "--tls-verify=false", str(ctx))  # fmt: skip
    theirs = registry.ref("multi/buildah", "t" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:12])
    buildah("manifest", "push", "--all", "--tls-verify=false", name, f"docker://{theirs}")
    for arch in ("amd64", "arm64"):
        r = subprocess.run([str(KILN), "diff", "--insecure", "--platform", f"linux/{arch}", "--format", "json",
                            "--ignore-config", "Labels:io.buildah.version", theirs, kiln_ref],
                           capture_output=True, text=True)  # fmt: skip
        assert r.returncode in (0, 1), r.stderr
        left = [d for d in json.loads(r.stdout)["differences"] if not _buildah_leftover(d)]
        assert not left, f"linux/{arch}: buildah (a) and kiln (b) differ:\n{json.dumps(left, indent=1)}"


# What buildah 1.28 adds to every image whose RUN ran on a base without them (tests/conformance/harness.py).
BUILDAH_RUN_LEFTOVERS = {
    "/etc/hostname": "file 0755 0:0 size=0",
    "/etc/hosts": "file 0755 0:0 size=0",
    "/etc/resolv.conf": "file 0755 0:0 size=0",
    "/run": "dir 0755 0:0",
}


def _buildah_leftover(d: dict[str, Any]) -> bool:
    where, what = str(d["where"]), str(d.get("a"))
    return (d["section"] == "files" and d["change"] == "only-a" and where in BUILDAH_RUN_LEFTOVERS
            and what.startswith(BUILDAH_RUN_LEFTOVERS[where]))


BUSYBOX_DOCKERFILE = """\
FROM {base}
RUN uname -m > /uname && cp /bin/busybox /binary-copy
"""


def test_busybox_for_amd64_and_arm64_runs_each_architecture(
    tmp_path: Path, registry: Registry, busybox_image: OciImage, busybox_arm64_image: OciImage,
    arm64_emulation: Emulation, buildah: Buildah,
) -> None:  # fmt: skip
    base = _push_index(registry, "multi/busybox-base", {"amd64": busybox_image, "arm64": busybox_arm64_image})
    dockerfile = BUSYBOX_DOCKERFILE.format(base=base)
    dest = registry.ref("multi/busybox", "v1")
    r = _kiln_build(tmp_path, dockerfile, dest)
    assert r.returncode == 0, r.stderr
    assert "[linux/arm64 stage-0 1/1]" in r.stderr  # progress names each stage's platform
    _check_index(registry, dest, "/bin/busybox", tmp_path)
    _diff_with_buildah(buildah, registry, dockerfile, base, dest, tmp_path)


@pytest.mark.slow
def test_debian_for_amd64_and_arm64_runs_each_architecture(
    tmp_path: Path, registry: Registry, debian_image: OciImage, debian_arm64_image: OciImage, buildah: Buildah,
) -> None:  # fmt: skip
    base = _push_index(registry, "multi/debian-base", {"amd64": debian_image, "arm64": debian_arm64_image})
    dockerfile = f"""\
FROM {base}
RUN uname -m > /uname && dpkg --print-architecture > /dpkg-arch && cp /bin/ls /binary-copy
RUN echo "built on $(uname -m)" > /etc/motd
"""
    dest = registry.ref("multi/debian", "v1")
    r = _kiln_build(tmp_path, dockerfile, dest)
    assert r.returncode == 0, r.stderr
    _check_index(registry, dest, "/bin/ls", tmp_path)
    for arch in ("amd64", "arm64"):
        files = _files_for(registry, dest, arch, ["dpkg-arch"], tmp_path / f"dpkg-{arch}")
        assert files["dpkg-arch"].decode().strip() == arch
    _diff_with_buildah(buildah, registry, dockerfile, base, dest, tmp_path)


def test_a_foreign_run_without_an_interpreter_fails_before_the_build(
    tmp_path: Path, registry: Registry, busybox_image: OciImage
) -> None:
    """No emulation for s390x here (the suite registers only aarch64): the build stops before pulling anything,
    naming the platform and the way to register it."""
    dockerfile = "FROM scratch\nRUN true\n"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    r = subprocess.run([str(KILN), "build", "--context", str(ctx), "--kiln-dir", str(tmp_path / "kiln"),
                        "--platform", "linux/amd64,linux/s390x", "--no-push"],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode != 0
    assert "linux/s390x" in r.stderr and "kiln binfmt --install s390x" in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
