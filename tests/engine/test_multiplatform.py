"""One build for several platforms: an index with one image per platform, in every output that can hold one;
stages built for the build platform (FROM --platform=$BUILDPLATFORM) built once and shared, unless what they
see differs per platform. These builds RUN only on the build platform, so no emulation is needed here;
foreign-architecture RUN steps are tested with qemu in tests/integration/test_integ_multiplatform.py."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from support.base_images import OciImage
from support.images import read_blob_json
from support.registry import Registry

PLATFORMS = "linux/amd64,linux/arm64"

# The builder stage runs on the build platform; what it writes differs on every run (a random token), so two
# images holding the same token prove the stage ran once.
SHARED = """\
FROM --platform=$BUILDPLATFORM busybox AS builder
RUN head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /token
FROM scratch
ARG TARGETPLATFORM
COPY --from=builder /token /token
COPY hello.txt /hello-$TARGETPLATFORM
"""


def _kiln(tmp_path: Path, dockerfile: str, busybox: OciImage, *extra: str) -> subprocess.CompletedProcess[str]:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / "hello.txt").write_text("hello\n")
    return subprocess.run(
        [sys.executable, "-m", "kiln", "build", "--context", str(ctx), "--kiln-dir", str(tmp_path / "kiln"),
         "--log-format", "json", "--build-context", f"busybox=oci-layout://{busybox.layout}:{busybox.tag}",
         *extra],
        capture_output=True, text=True, env={**os.environ}, timeout=600,
    )  # fmt: skip


def _skopeo_raw(ref: str, *flags: str) -> dict[str, Any]:
    out = subprocess.run(["skopeo", "inspect", "--raw", *flags, ref], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout))


def _file_in_image(layout: Path, manifest_digest: str, name: str) -> bytes | None:
    """A file's content from the layers of one manifest of a layout (read with tarfile, not kiln)."""
    import tarfile

    manifest = read_blob_json(layout, manifest_digest)
    found = None
    for layer in manifest["layers"]:
        path = layout / "blobs" / "sha256" / layer["digest"].split(":")[1]
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                if m.name.lstrip("./") == name.lstrip("/") and m.isfile():
                    f = tar.extractfile(m)
                    assert f is not None
                    found = f.read()
    return found


def test_two_platforms_make_an_index_and_share_the_build_platform_stage(
    tmp_path: Path, busybox_image: OciImage
) -> None:
    out = tmp_path / "layout"
    r = _kiln(tmp_path, SHARED, busybox_image, "--platform", PLATFORMS, "--oci-layout-path", str(out),
              "--no-push")  # fmt: skip
    assert r.returncode == 0, r.stderr
    index = _skopeo_raw(f"oci:{out}:latest")
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    entries = {f"{m['platform']['os']}/{m['platform']['architecture']}": m for m in index["manifests"]}
    assert sorted(entries) == ["linux/amd64", "linux/arm64"]
    tokens = set()
    for platform, entry in entries.items():
        manifest = read_blob_json(out, entry["digest"])
        config = read_blob_json(out, manifest["config"]["digest"])
        assert f"{config['os']}/{config['architecture']}" == platform
        assert _file_in_image(out, entry["digest"], f"hello-{platform}") == b"hello\n"
        token = _file_in_image(out, entry["digest"], "token")
        assert token is not None and len(token) == 32
        tokens.add(token)
    assert len(tokens) == 1, "the $BUILDPLATFORM stage ran once per platform instead of once"
    # skopeo picks each platform's manifest from the index as a runtime would.
    for arch in ("amd64", "arm64"):
        cfg = json.loads(subprocess.run(
            ["skopeo", "--override-arch", arch, "inspect", "--config", f"oci:{out}:latest"],
            capture_output=True, text=True, check=True).stdout)  # fmt: skip
        assert cfg["architecture"] == arch
    summary = [json.loads(line) for line in r.stderr.splitlines() if '"summary"' in line][-1]
    assert summary["digest"] == "sha256:" + hashlib.sha256(
        (out / "blobs" / "sha256" / summary["digest"].split(":")[1]).read_bytes()).hexdigest()
    assert sorted(p["platform"] for p in summary["platforms"]) == ["linux/amd64", "linux/arm64"]


def test_a_stage_that_reads_the_target_platform_is_built_per_platform(
    tmp_path: Path, busybox_image: OciImage
) -> None:
    dockerfile = """\
FROM --platform=$BUILDPLATFORM busybox AS builder
ARG TARGETARCH
RUN echo "$TARGETARCH" > /arch && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /token
FROM scratch
COPY --from=builder /arch /token /
"""
    out = tmp_path / "layout"
    r = _kiln(tmp_path, dockerfile, busybox_image, "--platform", PLATFORMS, "--oci-layout-path", str(out),
              "--no-push")  # fmt: skip
    assert r.returncode == 0, r.stderr
    index = _skopeo_raw(f"oci:{out}:latest")
    tokens = set()
    for entry in index["manifests"]:
        arch = entry["platform"]["architecture"]
        assert _file_in_image(out, entry["digest"], "arch") == f"{arch}\n".encode()
        tokens.add(_file_in_image(out, entry["digest"], "token"))
    assert len(tokens) == 2


def test_two_platforms_pushed_to_a_registry(tmp_path: Path, busybox_image: OciImage, registry: Registry) -> None:
    dest = registry.ref("multi/shared", "v1")
    mark = registry.log_mark()
    r = _kiln(tmp_path, SHARED, busybox_image, "--platform", PLATFORMS, "--destination", dest, "--insecure",
              "--digest-file", str(tmp_path / "digest"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    tls = registry.tool_flags()
    index = _skopeo_raw(f"docker://{dest}", *tls)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"]
    digest = (tmp_path / "digest").read_text()
    raw = subprocess.run(["skopeo", "inspect", "--raw", *tls, f"docker://{dest}"], capture_output=True,
                         check=True).stdout  # fmt: skip
    assert digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    for arch in ("amd64", "arm64"):
        cfg = json.loads(subprocess.run(
            ["skopeo", "--override-arch", arch, "inspect", "--config", *tls, f"docker://{dest}"],
            capture_output=True, text=True, check=True).stdout)  # fmt: skip
        assert cfg["architecture"] == arch
    # The token layer is the same blob in both images (the same file from the one shared stage): sent once.
    layers = [[la["digest"] for la in json.loads(subprocess.run(
        ["skopeo", "inspect", "--raw", *tls, f"docker://{dest.rsplit(':', 1)[0]}@{m['digest']}"],
        capture_output=True, text=True, check=True).stdout)["layers"]] for m in index["manifests"]]  # fmt: skip
    [shared] = set(layers[0]) & set(layers[1])
    uploads = [path for method, path, status in registry.requests_since(mark)
               if method == "PUT" and "/blobs/uploads/" in path and status == 201]
    assert sum(shared.split(":")[1] in path for path in uploads) == 1
    # Each platform's manifest is there by digest, and its blobs can be copied out whole.
    copied = tmp_path / "copied"
    subprocess.run(["skopeo", "copy", "--all", *registry.skopeo_flags("src"), f"docker://{dest}", f"oci:{copied}:x"],
                   check=True,
                   capture_output=True)  # fmt: skip


def test_docker_format_makes_a_manifest_list(tmp_path: Path, busybox_image: OciImage, registry: Registry) -> None:
    # In a registry: skopeo's oci: transport reads only OCI media types in a layout's index.json.
    dest = registry.ref("multi/docker", "v1")
    r = _kiln(tmp_path, SHARED, busybox_image, "--platform", PLATFORMS, "--destination", dest, "--insecure",
              "--format", "docker")  # fmt: skip
    assert r.returncode == 0, r.stderr
    index = _skopeo_raw(f"docker://{dest}", *registry.tool_flags())
    assert index["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert {m["mediaType"] for m in index["manifests"]} == {
        "application/vnd.docker.distribution.manifest.v2+json"}
    cfg = json.loads(subprocess.run(
        ["skopeo", "--override-arch", "arm64", "inspect", "--config", *registry.tool_flags(), f"docker://{dest}"],
        capture_output=True, text=True, check=True).stdout)  # fmt: skip
    assert cfg["architecture"] == "arm64"


def test_several_platforms_cannot_go_to_a_docker_archive(tmp_path: Path, busybox_image: OciImage) -> None:
    r = _kiln(tmp_path, SHARED, busybox_image, "--platform", PLATFORMS, "--tar-path", str(tmp_path / "a.tar"),
              "--no-push")  # fmt: skip
    assert r.returncode != 0
    assert "--tar-path" in r.stderr and "one platform" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "a.tar").exists()


def test_one_platform_in_the_list_is_a_plain_image(tmp_path: Path, busybox_image: OciImage) -> None:
    out = tmp_path / "layout"
    r = _kiln(tmp_path, SHARED, busybox_image, "--platform", "linux/arm64,linux/arm64/v8", "--oci-layout-path",
              str(out), "--no-push")  # fmt: skip
    assert r.returncode == 0, r.stderr
    top = _skopeo_raw(f"oci:{out}:latest")
    assert top["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert read_blob_json(out, top["config"]["digest"])["architecture"] == "arm64"


def test_bad_platform_in_the_list_names_the_flag(tmp_path: Path, busybox_image: OciImage) -> None:
    r = _kiln(tmp_path, SHARED, busybox_image, "--platform", "linux/amd64,linux/arm64/v8/x", "--no-push")
    assert r.returncode != 0
    assert "--platform" in r.stderr and "Traceback" not in r.stderr


def test_dry_run_shows_the_plan_of_each_platform(tmp_path: Path, busybox_image: OciImage) -> None:
    r = _kiln(tmp_path, SHARED, busybox_image, "--platform", PLATFORMS, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "# platform linux/amd64" in r.stdout and "# platform linux/arm64" in r.stdout
    assert "hello-linux/arm64" in r.stdout and "hello-linux/amd64" in r.stdout
    r = _kiln(tmp_path, SHARED, busybox_image, "--platform", PLATFORMS, "--dry-run", "--dry-run-format", "json")
    assert r.returncode == 0, r.stderr
    assert sorted(json.loads(r.stdout)["platforms"]) == ["linux/amd64", "linux/arm64"]


def test_several_platforms_in_place_are_refused(tmp_path: Path, busybox_image: OciImage) -> None:
    r = _kiln(tmp_path, SHARED, busybox_image, "--platform", PLATFORMS, "--in-place", "--no-push")
    assert r.returncode != 0
    assert "--platform" in r.stderr and "one platform" in r.stderr and "Traceback" not in r.stderr


def test_each_index_entry_names_the_platform_it_was_built_for(tmp_path: Path, busybox_image: OciImage) -> None:
    """A base image for another platform (here amd64 busybox for arm64, with no index to choose from) is used
    with a warning naming the FROM line; the index still says which image is which platform's."""
    out = tmp_path / "layout"
    r = _kiln(tmp_path, "FROM busybox\nCOPY hello.txt /\n", busybox_image, "--platform", PLATFORMS,
              "--oci-layout-path", str(out), "--no-push")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "Dockerfile:1: base image busybox is for linux/amd64, not linux/arm64" in r.stderr
    index = _skopeo_raw(f"oci:{out}:latest")
    assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"]
