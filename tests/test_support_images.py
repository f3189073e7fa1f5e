"""Base images and the inspection helpers, checked against hand-made layouts and the host's files."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from support.base_images import OciImage, apt_debian_mirror, busybox_image
from support.images import (
    FileInfo,
    assert_trees_equal,
    diff_json,
    diff_trees,
    flatten_layout,
    layer_entries,
    layer_file_sets,
    manifest_descriptor,
    read_config,
    read_layer_file,
    skopeo_inspect,
    verify_layout,
)
from support.procs import run
from support.registry import Registry

TESTS = Path(__file__).resolve().parent


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_busybox_rootfs(busybox_image: OciImage) -> None:
    tree = flatten_layout(busybox_image.layout, busybox_image.tag)
    busybox = tree["/bin/busybox"]
    assert (busybox.type, busybox.mode, busybox.uid, busybox.gid) == ("file", 0o755, 0, 0)
    assert busybox.sha256 == _sha256(Path("/bin/busybox"))
    assert tree["/bin/sh"] == FileInfo(type="symlink", mode=0o777, uid=0, gid=0, link="/bin/busybox")
    assert (tree["/tmp"].type, tree["/tmp"].mode) == ("dir", 0o1777)
    assert (tree["/home/app"].uid, tree["/home/app"].gid) == (1000, 1000)
    passwd_text = read_layer_file(busybox_image.layout, busybox_image.tag, "/etc/passwd").decode()
    passwd = [line.split(":") for line in passwd_text.splitlines()]
    assert {(p[0], p[2]) for p in passwd} == {("root", "0"), ("app", "1000"), ("nobody", "65534")}
    # Every applet busybox lists is a link to it.
    applets = subprocess.run(["/bin/busybox", "--list-full"], capture_output=True, check=True).stdout.split()
    for applet in applets:
        assert "/" + applet.decode() in tree


def test_busybox_config_through_skopeo(busybox_image: OciImage) -> None:
    inspected = skopeo_inspect(busybox_image.ref)
    assert inspected.config["config"]["Cmd"] == ["sh"]
    assert any(e.startswith("PATH=") and "/bin" in e for e in inspected.config["config"]["Env"])
    assert inspected.config["os"] == "linux" and inspected.config["architecture"] == "amd64"
    assert inspected.manifest_digest == manifest_descriptor(busybox_image.layout, busybox_image.tag)["digest"]
    assert inspected.config == read_config(busybox_image.layout, busybox_image.tag)


def _tar(members: list[tuple[str, bytes | None]]) -> bytes:
    """A tar with files (bytes) and directories (None), written by tarfile, not by kiln."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o640
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def two_layer_layout(tmp_path: Path) -> OciImage:
    layout = tmp_path / "layout"
    run(["umoci", "init", "--layout", layout])
    run(["umoci", "new", "--image", f"{layout}:t"])
    layers = [
        _tar([("a", None), ("a/f", b"f\n"), ("a/g", b"gg\n"), ("c", None), ("c/old", b"old")]),
        _tar([("a/.wh.f", b""), ("b", b"b\n"), ("c", None), ("c/.wh..wh..opq", b""), ("c/new", b"new")]),
    ]
    for i, data in enumerate(layers):
        (tmp_path / f"l{i}.tar").write_bytes(data)
        run(["umoci", "raw", "add-layer", "--image", f"{layout}:t", tmp_path / f"l{i}.tar"])
    return OciImage(layout, "t")


def test_layer_file_sets_lists_whiteouts(two_layer_layout: OciImage) -> None:
    sets = layer_file_sets(two_layer_layout.layout, two_layer_layout.tag)
    assert sets == [["a", "a/f", "a/g", "c", "c/old"], ["a/.wh.f", "b", "c", "c/.wh..wh..opq", "c/new"]]


def test_flatten_applies_whiteouts(two_layer_layout: OciImage) -> None:
    tree = flatten_layout(two_layer_layout.layout, two_layer_layout.tag)
    assert sorted(tree) == ["/a", "/a/g", "/b", "/c", "/c/new"]
    assert tree["/a/g"].sha256 == hashlib.sha256(b"gg\n").hexdigest()
    assert (tree["/a/g"].mode, tree["/a/g"].size) == (0o640, 3)


def test_diff_trees_is_readable() -> None:
    a = {"/x": FileInfo("file", 0o644, 0, 0, 1, "aa", mtime=1.0), "/gone": FileInfo("dir", 0o755, 0, 0)}
    b = {"/x": FileInfo("file", 0o755, 0, 0, 1, "aa", mtime=2.0), "/new": FileInfo("symlink", 0o777, 0, 0, link="/x")}
    assert diff_trees(a, b) == [
        "- /gone: dir 0755 0:0",
        "+ /new: symlink 0777 0:0 -> /x",
        "~ /x: mode 0644 != 0755",
    ]
    assert diff_trees(a, b, ignore_paths={"/gone", "/new"}, ignore_fields={"mode"}) == []
    with pytest.raises(AssertionError, match="~ /x: mode 0644 != 0755"):
        assert_trees_equal(a, b)
    assert diff_json({"a": 1}, {"a": 1}) == []
    assert '-  "a": 1' in diff_json({"a": 1}, {"a": 2})


def test_verify_layout_catches_a_corrupt_blob(busybox_image: OciImage, tmp_path: Path) -> None:
    copy = tmp_path / "layout"
    shutil.copytree(busybox_image.layout, copy)
    verify_layout(copy, busybox_image.tag)
    layer = json.loads((copy / "blobs/sha256" / manifest_descriptor(copy, "latest")["digest"][7:]).read_text())[
        "layers"
    ][0]["digest"]
    blob = copy / "blobs/sha256" / layer[7:]
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(AssertionError, match="does not match its digest"):
        verify_layout(copy, busybox_image.tag)


def test_base_image_cache_is_shared_and_rebuilt_when_broken(tmp_path: Path) -> None:
    # Two processes racing for an empty cache: the lock makes them agree on one valid layout.
    code = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r}); from pathlib import Path; "
        f"from support.base_images import busybox_image; print(busybox_image(Path({str(tmp_path)!r})).layout)"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].decode().strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0] == outs[1]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("busybox-")] == [Path(outs[0]).name]
    image = busybox_image(tmp_path)
    first_mtime = os.stat(image.layout / "index.json").st_mtime_ns
    assert busybox_image(tmp_path) == image
    assert os.stat(image.layout / "index.json").st_mtime_ns == first_mtime  # reused, not rebuilt
    (image.layout / "index.json").write_text("{}")
    rebuilt = busybox_image(tmp_path)
    verify_layout(rebuilt.layout, rebuilt.tag)


def test_base_image_cache_removes_only_its_own_older_layouts(tmp_path: Path) -> None:
    # Another image whose name starts with this one's (busybox-arm64 beside busybox) keeps its layout and lock
    # file when busybox's key changes; CI once deleted debian-bookworm-arm64's while refreshing debian-bookworm.
    older = tmp_path / "busybox-0123456789abcdef"
    other = tmp_path / "busybox-arm64-0123456789abcdef"
    other_lock = tmp_path / "busybox-arm64.lock"
    older.mkdir()
    other.mkdir()
    other_lock.touch()
    image = busybox_image(tmp_path)
    verify_layout(image.layout, image.tag)
    assert not older.exists()
    assert other.is_dir() and other_lock.is_file()


def test_mirror_override(monkeypatch: pytest.MonkeyPatch) -> None:
    assert apt_debian_mirror().startswith(("http://", "https://"))
    monkeypatch.setenv("KILN_DEBIAN_MIRROR", "http://mirror.invalid/debian")
    assert apt_debian_mirror() == "http://mirror.invalid/debian"


def test_debian_image(debian_image: OciImage, debian_ref: str, registry: Registry) -> None:
    tree = flatten_layout(debian_image.layout, debian_image.tag)
    assert tree["/usr/bin/dpkg"].type == "file"
    assert tree["/bin"].type == "symlink" and tree["/bin"].link == "usr/bin"  # merged /usr
    assert not [p for p, info in tree.items() if info.type in ("char", "block")]
    version = next(e for e in layer_entries(debian_image.layout, debian_image.tag)[0] if e.name == "etc/debian_version")
    assert version.size > 0
    assert read_config(debian_image.layout, debian_image.tag)["config"]["Cmd"] == ["bash"]
    pushed = skopeo_inspect(f"docker://{debian_ref}", registry.tool_flags())
    assert pushed.manifest_digest == manifest_descriptor(debian_image.layout, debian_image.tag)["digest"]
