"""write_layer_tar against real trees, read back by Python's tarfile and by GNU tar as an independent reader."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import stat
import subprocess
import tarfile
import tracemalloc
from pathlib import Path

import pytest
from layertree import BINARY_VALUE, CAP_NET_RAW, LONG_NAME, MTIME, UNICODE_NAME, describe, make_full_tree

from kiln.errors import SnapshotError
from kiln.layers import write_layer_tar

pytestmark = pytest.mark.root

GNU_ENV = {**os.environ, "LC_ALL": "C.UTF-8", "TZ": "UTC"}


def write(root: Path, paths: list[str], deletions: list[str] | None = None, **kw: object) -> bytes:
    buf = io.BytesIO()
    write_layer_tar(root, paths, deletions or [], buf, **kw)  # type: ignore[arg-type]
    return buf.getvalue()


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding="utf-8") as tf:
        return tf.getmembers()


def gnu_list(tar_path: Path) -> list[str]:
    out = subprocess.run(
        ["tar", "--numeric-owner", "--quoting-style=literal", "--full-time", "-tvf", str(tar_path)],
        check=True, capture_output=True, env=GNU_ENV,
    ).stdout.decode()
    return out.splitlines()


def test_gnu_tar_lists_every_kind_of_entry(tmp_path: Path) -> None:
    root = tmp_path / "root"
    paths = make_full_tree(root)
    tar = tmp_path / "layer.tar"
    tar.write_bytes(write(root, paths))
    lines = {line.split(None, 5)[-1].split(" -> ")[0].split(" link to ")[0]: line for line in gnu_list(tar)}

    def line(name: str) -> list[str]:
        return lines[name].split()

    assert line("bin/ping")[:3] == ["-rwsr-xr-x", "0/0", "3004"]
    assert line("bin/sgid")[0] == "-rwx--s--x"
    assert line("tmp/")[0] == "drwxrwxrwt"
    assert line("home/user/")[:2] == ["drwx------", "1000/1001"]
    assert line("home/user/notes")[1] == "1000/1001"
    # One regular entry, the other names hardlinks to it (the first path in order).
    assert lines["bin/ping-hardlink"].startswith("h") and lines["bin/ping-hardlink"].endswith("link to bin/ping")
    assert lines["etc/ping-elsewhere"].endswith("link to bin/ping")
    assert lines["bin/sh"].startswith("l") and lines["bin/sh"].endswith("-> busybox")
    assert lines["bin/abs"].endswith("-> /etc/hostname")
    assert line("dev/null")[:3] == ["crw-rw-rw-", "0/0", "1,3"]
    assert line("dev/loop9")[:3] == ["brw-rw----", "0/0", "7,9"]
    assert line("dev/fifo")[0] == "prw-------"
    assert f"{LONG_NAME}/{LONG_NAME}.txt" in lines
    assert UNICODE_NAME in lines
    # --full-time shows the file's own mtime, to the second.
    assert line("etc/hostname")[3:5] == ["2020-09-13", _utc_time(Path(root / "etc/hostname"))]
    assert len(lines) == len(paths)


def _utc_time(p: Path) -> str:
    import time

    return time.strftime("%H:%M:%S", time.gmtime(int(p.lstat().st_mtime)))


def test_headers_are_pax_without_names_or_atime(tmp_path: Path) -> None:
    root = tmp_path / "root"
    paths = make_full_tree(root)
    data = write(root, paths)
    ms = members(data)
    assert [m.name for m in ms] == sorted((m.name for m in ms), key=lambda n: n.split("/"))
    for m in ms:
        assert m.uname == "" and m.gname == ""
        assert "atime" not in m.pax_headers and "ctime" not in m.pax_headers
        assert not m.name.startswith(("/", "./"))
    by_name = {m.name: m for m in ms}
    assert by_name["bin/ping"].pax_headers["SCHILY.xattr.security.capability"].encode(
        "utf-8", "surrogateescape") == CAP_NET_RAW
    attrs = by_name["home/user/attrs"].pax_headers
    assert attrs["SCHILY.xattr.user.binary"].encode("utf-8", "surrogateescape") == BINARY_VALUE
    assert attrs["SCHILY.xattr.trusted.kiln"] == "t"
    # The archive ends with two zero blocks and is a whole number of blocks.
    assert len(data) % 512 == 0 and data[-1024:] == bytes(1024)


def test_gnu_tar_extracts_our_tar_identically(tmp_path: Path) -> None:
    root = tmp_path / "root"
    paths = make_full_tree(root)
    tar = tmp_path / "layer.tar"
    tar.write_bytes(write(root, paths))
    out = tmp_path / "gnu"
    out.mkdir()
    subprocess.run(
        ["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", str(tar), "-C", str(out)],
        check=True, env=GNU_ENV,
    )
    assert describe(out) == describe(root)


def test_same_tree_gives_same_bytes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    paths = make_full_tree(root)
    first = write(root, list(reversed(paths)))
    second = write(root, paths)
    assert first == second
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(root), str(copy)], check=True)
    assert write(copy, paths) == first


def test_timestamp_clamps_mtimes_as_buildkits_rewrite_timestamp(tmp_path: Path) -> None:
    root = tmp_path / "root"
    paths = make_full_tree(root)
    a = write(root, paths, ["etc/gone"], timestamp=1234567890)  # the tree was written now: after the epoch
    assert {m.mtime for m in members(a)} == {1234567890}
    for p in paths:
        os.utime(root / p, (5, 999_999), follow_symlinks=False)  # before the epoch: kept
    b = write(root, paths, ["etc/gone"], timestamp=1234567890)
    times = {m.name: m.mtime for m in members(b)}
    assert times.pop("etc/.wh.gone") == 1234567890  # made by kiln: the epoch
    assert set(times.values()) == {999_999}, times


def test_timestamp_zero_pins_every_mtime(tmp_path: Path) -> None:
    root = tmp_path / "root"
    paths = make_full_tree(root)
    assert {m.mtime for m in members(write(root, paths, ["etc/gone"], timestamp=0))} == {0}


def test_parents_written_with_their_own_metadata(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a/b").mkdir(parents=True)
    (root / "a/b/c").write_text("c")
    os.chown(root / "a", 5, 6)
    os.chmod(root / "a", 0o710)
    os.utime(root / "a", (MTIME, MTIME))
    ms = members(write(root, ["a/b/c"]))
    assert [m.name for m in ms] == ["a", "a/b", "a/b/c"]
    a = ms[0]
    assert (a.isdir(), a.mode, a.uid, a.gid, a.mtime) == (True, 0o710, 5, 6, MTIME)
    assert [m.name for m in members(write(root, ["a/b/c"], include_parents=False))] == ["a/b/c"]
    # A directory path is the directory entry alone.
    assert [m.name for m in members(write(root, ["a/b"], include_parents=False))] == ["a/b"]


def test_deletions_become_whiteouts_and_nested_ones_are_dropped(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d/-early").write_text("new")
    ms = members(write(root, ["d/-early"], ["x", "x/y", "x/y/z", "d/z", "/d/w/"]))
    names = [m.name for m in ms]
    # Whiteouts come first in their directory, so in-order extractors never delete what the layer adds.
    assert names == [".wh.x", "d", "d/.wh.w", "d/.wh.z", "d/-early"]
    wh = ms[0]
    assert (wh.isreg(), wh.size, wh.mode, wh.uid, wh.gid) == (True, 0, 0, 0, 0)


def test_deleted_and_recreated_name_has_both_entries(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    names = [m.name for m in members(write(root, ["a"], ["a", "a/old"]))]
    assert names == [".wh.a", "a"]


def test_overlay_whiteouts_overlay_xattrs_and_sockets_stay_out(tmp_path: Path) -> None:
    root = tmp_path / "upper"
    (root / "d").mkdir(parents=True)
    os.mknod(root / "d/gone", stat.S_IFCHR, os.makedev(0, 0))
    os.setxattr(root / "d", "trusted.overlay.opaque", b"y")
    (root / "d/f").write_text("f")
    os.setxattr(root / "d/f", "trusted.overlay.origin", b"\x00\x01")
    os.setxattr(root / "d/f", "user.overlay.redirect", b"/x")
    os.setxattr(root / "d/f", "user.kept", b"k")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "d/sock"))
        ms = members(write(root, ["d", "d/gone", "d/f", "d/sock"], ["d/gone"]))
    finally:
        sock.close()
    assert [m.name for m in ms] == ["d", "d/.wh.gone", "d/f"]
    assert not any(k.startswith("SCHILY") for k in ms[0].pax_headers)
    assert list(ms[2].pax_headers) == ["SCHILY.xattr.user.kept"]


def test_hardlink_to_a_file_outside_the_layer_is_a_regular_entry(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a").write_text("shared")
    os.link(root / "a", root / "b")
    os.link(root / "a", root / "c")
    ms = members(write(root, ["c", "b"]))
    assert [(m.name, m.type, m.linkname) for m in ms] == [("b", tarfile.REGTYPE, ""), ("c", tarfile.LNKTYPE, "b")]
    assert ms[0].size == 6


def test_paths_through_symlinks_or_missing_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "lib").symlink_to("/etc")
    with pytest.raises(SnapshotError, match="not a directory"):
        write(root, ["lib/passwd"])
    with pytest.raises(SnapshotError, match="missing"):
        write(root, ["nothing-here"])


def test_large_file_is_streamed_not_held(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    size = 64 * 1024 * 1024
    with open(root / "big", "wb") as f:
        for _ in range(size // (1 << 20)):
            f.write(os.urandom(1 << 20))
    sha = hashlib.sha256()

    class Sink:
        def write(self, b: bytes | bytearray | memoryview) -> int:
            sha.update(b)
            return len(b)

    tracemalloc.start()
    try:
        stats = write_layer_tar(root, ["big"], [], Sink())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.content_bytes == size and stats.entries == 1
    assert peak < 8 * 1024 * 1024
    # The same bytes as writing into memory.
    assert sha.digest() == hashlib.sha256(write(root, ["big"])).digest()
