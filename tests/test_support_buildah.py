"""buildah on private storage: runs the busybox base, builds with RUN, cleans up its mounts."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from support.base_images import OciImage
from support.buildah import Buildah
from support.images import flatten_layout, layer_file_sets, read_config
from support.mounts import mounts_under
from support.registry import Registry

pytestmark = pytest.mark.root


def test_busybox_runs_in_buildah(buildah: Buildah, busybox_image: OciImage) -> None:
    container = buildah("from", "--quiet", buildah.oci_ref(busybox_image)).stdout.decode().strip()
    try:
        out = buildah("run", container, "--", "busybox", "echo", "hi").stdout
        assert out == b"hi\n"
        ids = buildah("run", "--user", "app", container, "--", "id", "-u").stdout
        assert ids == b"1000\n"
    finally:
        buildah("rm", container)
    # Storage is the session's own, not the host's /var/lib/containers.
    assert str(buildah.root).startswith(str(buildah.directory))


def test_build_with_run_from_oci_layout(buildah: Buildah, busybox_image: OciImage, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {buildah.oci_ref(busybox_image)}\n"
        "RUN echo built > /built && rm /etc/group && mkdir -p /d && chmod 0700 /d\n"
        "ENV HELLO=world\n"
    )
    image = buildah.build(context, context / "Dockerfile", tmp_path / "out")
    tree = flatten_layout(image.layout, image.tag)
    assert tree["/built"].sha256 == hashlib.sha256(b"built\n").hexdigest()
    assert "/etc/group" not in tree
    assert (tree["/d"].type, tree["/d"].mode) == ("dir", 0o700)
    assert tree["/bin/busybox"].mode == 0o755
    sets = layer_file_sets(image.layout, image.tag)
    assert len(sets) == 2  # base layer + one for the RUN (layers=False squashes only the new steps)
    assert "etc/.wh.group" in sets[1] and "built" in sets[1]
    config = read_config(image.layout, image.tag)["config"]
    assert "HELLO=world" in config["Env"] and config["Cmd"] == ["sh"]


def test_build_from_test_registry(
    buildah: Buildah, registry: Registry, busybox_ref: str, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {busybox_ref}\nARG WHO\nRUN echo $WHO > /who\n")
    image = buildah.build(tmp_path, tmp_path / "Dockerfile", tmp_path / "out", build_args={"WHO": "kiln"})
    tree = flatten_layout(image.layout, image.tag)
    assert tree["/who"].sha256 == hashlib.sha256(b"kiln\n").hexdigest()


def test_cleanup_unmounts_and_removes(busybox_image: OciImage, tmp_path: Path) -> None:
    b = Buildah(tmp_path / "b")
    container = b("from", "--quiet", b.oci_ref(busybox_image)).stdout.decode().strip()
    mountpoint = Path(b("mount", container).stdout.decode().strip())
    assert (mountpoint / "bin/busybox").is_file()
    assert mounts_under(b.directory)
    b.cleanup()
    assert not mounts_under(tmp_path)
    assert not b.directory.exists()
