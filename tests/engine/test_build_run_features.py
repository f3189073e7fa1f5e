"""RUN --mount (bind, cache, tmpfs), --single-snapshot, and base images from a docker-archive build context.
Expected values are written from the Dockerfile reference, not taken from kiln's output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from support.base_images import OciImage


def _kiln(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kiln", *args], capture_output=True, text=True)


def _build(
    tmp_path: Path, dockerfile: str, busybox: OciImage, *extra: str
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    out = tmp_path / "out"
    r = _kiln(
        "build", "--context", str(ctx), "--kiln-dir", str(tmp_path / "kiln"), "--no-push",
        "--oci-layout-path", str(out),
        "--build-context", f"busybox=oci-layout://{busybox.layout}:{busybox.tag}", *extra,
    )  # fmt: skip
    return out, r


def _layers(layout: Path) -> list[list[str]]:
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs" / "sha256" / manifest_digest).read_text())
    names = []
    for layer in manifest["layers"]:
        with tarfile.open(layout / "blobs" / "sha256" / layer["digest"].split(":")[1]) as tar:
            names.append(sorted(m.name.rstrip("/") for m in tar.getmembers()))
    return names


def test_run_mounts_are_not_in_the_layer(tmp_path: Path, busybox_image: OciImage) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "input.txt").write_text("from the context\n")
    dockerfile = (
        "FROM busybox\n"
        "RUN --mount=type=bind,source=input.txt,target=/mnt/in cp /mnt/in /copied\n"
        "RUN --mount=type=cache,target=/cache echo one >> /cache/log && cat /cache/log > /cache-seen-1\n"
        "RUN --mount=type=cache,target=/cache echo two >> /cache/log && cat /cache/log > /cache-seen-2\n"
        "RUN --mount=type=tmpfs,target=/scratch echo gone > /scratch/x && ls /scratch > /tmpfs-seen\n"
    )
    out, r = _build(tmp_path, dockerfile, busybox_image)
    assert r.returncode == 0, r.stderr
    layers = _layers(out)[1:]  # above the base
    assert layers == [["copied"], ["cache-seen-1"], ["cache-seen-2"], ["tmpfs-seen"]]
    flat = tmp_path / "flat"
    subprocess.run(["umoci", "raw", "unpack", "--image", f"{out}:latest", str(flat)], check=True, capture_output=True)
    assert (flat / "copied").read_text() == "from the context\n"
    # The cache persists between steps of the build; the tmpfs is empty and private to its step.
    assert (flat / "cache-seen-2").read_text() == "one\ntwo\n"
    assert (flat / "tmpfs-seen").read_text() == "x\n"
    assert not (flat / "mnt" / "in").exists() and not (flat / "cache").exists() and not (flat / "scratch").exists()


def test_writable_bind_mount_does_not_change_the_context(tmp_path: Path, busybox_image: OciImage) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "data.txt").write_text("original\n")
    _, r = _build(
        tmp_path, "FROM busybox\nRUN --mount=type=bind,target=/src,rw echo changed > /src/data.txt\n", busybox_image
    )
    assert r.returncode == 0, r.stderr
    assert (ctx / "data.txt").read_text() == "original\n"


def test_single_snapshot_makes_one_layer_for_the_stage(tmp_path: Path, busybox_image: OciImage) -> None:
    dockerfile = "FROM busybox\nRUN echo a > /a\nCOPY Dockerfile /df\nRUN rm /a && echo b > /b\nENV X=1\n"
    out, r = _build(tmp_path, dockerfile, busybox_image, "--single-snapshot")
    assert r.returncode == 0, r.stderr
    layers = _layers(out)
    assert len(layers) == 2  # the base's, and one for the whole stage
    assert layers[1] == ["b", "df"]  # /a was created and removed within the stage: it is not there at all


def test_base_from_a_docker_archive_build_context(tmp_path: Path, busybox_image: OciImage) -> None:
    archive = tmp_path / "busybox.tar"
    subprocess.run(
        ["skopeo", "copy", "--quiet", busybox_image.ref, f"docker-archive:{archive}:local/busybox:1"],
        check=True, capture_output=True,
    )  # fmt: skip
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM base\nRUN busybox echo hi > /hi\n")
    r = _kiln(
        "build", "--context", str(ctx), "--kiln-dir", str(tmp_path / "kiln"), "--no-push",
        "--oci-layout-path", str(tmp_path / "out"), "--build-context", f"base=docker-archive://{archive}",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert _layers(tmp_path / "out")[-1] == ["hi"]


def test_manifest_format_follows_base_and_flag(tmp_path: Path, busybox_image: OciImage) -> None:
    # The busybox test base is an OCI image: by default the result is OCI; --format docker gives schema 2.
    out, r = _build(tmp_path, "FROM busybox\nRUN echo x > /x\n", busybox_image)
    assert r.returncode == 0, r.stderr
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    out2 = tmp_path / "docker-out"
    r = _kiln(
        "build", "--context", str(tmp_path / "ctx"), "--kiln-dir", str(tmp_path / "kiln"), "--no-push",
        "--oci-layout-path", str(out2), "--format", "docker",
        "--build-context", f"busybox=oci-layout://{busybox_image.layout}:{busybox_image.tag}",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    desc = json.loads((out2 / "index.json").read_text())["manifests"][0]
    manifest = json.loads((out2 / "blobs" / "sha256" / desc["digest"].split(":")[1]).read_text())
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    assert {layer["mediaType"] for layer in manifest["layers"]} == {"application/vnd.docker.image.rootfs.diff.tar.gzip"}


def test_add_zstd_archive_and_cleanup(tmp_path: Path, busybox_image: OciImage) -> None:
    import io

    import zstandard

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("inner/file.txt")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"zstd!\n"))
    (ctx / "bundle.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(raw.getvalue()))
    out, r = _build(tmp_path, "FROM busybox\nADD bundle.tar.zst /opt/\n", busybox_image, "--cleanup")
    assert r.returncode == 0, r.stderr
    assert _layers(out)[-1] == ["opt", "opt/inner", "opt/inner/file.txt"]
    # --cleanup removes the unpacked layers this build made (the blobs stay as the cache of pulled and built
    # layers); the store's directories themselves stay, for other builds.
    assert os.listdir(tmp_path / "kiln" / "layers" / "sha256") == []
    assert (tmp_path / "kiln" / "blobs").is_dir()
