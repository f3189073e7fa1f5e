from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import stat
import tarfile
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from kiln.errors import DigestMismatch, ImageFormatError
from kiln.oci.config import chain_id, chain_ids
from kiln.store.layerstore import LayerStore, materialize_flat
from kiln.store.overlaymount import mount_overlay, unmount
from support.images import layer_tar

pytestmark = pytest.mark.root  # overlay-mode extraction makes 0/0 devices and trusted.* xattrs

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def make_tar(entries: list[tuple[str, bytes | None]]) -> bytes:
    """A layer tar: (name, data) files, (name/, None) directories."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in entries:
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime = 1_000_000_000
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tf.addfile(info)
            else:
                info.size = len(data)
                info.mode = 0o644
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def diff_id_of(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def test_chain_ids_by_hand() -> None:
    c2 = "sha256:" + hashlib.sha256(f"{D1} {D2}".encode()).hexdigest()
    c3 = "sha256:" + hashlib.sha256(f"{c2} {D3}".encode()).hexdigest()
    assert chain_ids([D1, D2, D3]) == [D1, c2, c3]
    assert chain_id(None, D1) == D1
    assert chain_id(c2, D3) == c3
    assert chain_ids([]) == []


def test_chain_id_rejects_non_digests(tmp_path: Path) -> None:
    with pytest.raises(ImageFormatError):
        chain_id(None, "sha256:../../etc")
    with pytest.raises(ImageFormatError):
        LayerStore(tmp_path).path("sha256:../" + "a" * 61)


def test_ensure_layer_extracts_in_overlay_mode_once(tmp_path: Path) -> None:
    blob = make_tar([("etc/", None), ("etc/os-release", b"ID=kiln\n"), ("etc/.wh.gone", b""),
                     ("var/", None), ("var/.wh..wh..opq", b"")])  # fmt: skip
    calls = []

    def open_blob() -> BinaryIO:
        calls.append(1)
        return io.BytesIO(blob)

    store = LayerStore(tmp_path / "store")
    cid = chain_ids([D1, diff_id_of(blob)])[1]
    assert not store.has(cid)
    path = store.ensure_layer(cid, open_blob, diff_id=diff_id_of(blob))
    assert path == tmp_path / "store" / "sha256" / cid.removeprefix("sha256:")
    assert store.has(cid) and store.path(cid) == path
    assert (path / "etc" / "os-release").read_bytes() == b"ID=kiln\n"
    st = os.lstat(path / "etc" / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(path / "var", "trusted.overlay.opaque") == b"y"
    assert store.ensure_layer(cid, open_blob) == path
    assert len(calls) == 1
    assert os.listdir(tmp_path / "store" / "tmp") == []


def test_diff_id_mismatch_stores_nothing(tmp_path: Path) -> None:
    blob = make_tar([("a", b"a")])
    store = LayerStore(tmp_path)
    with pytest.raises(DigestMismatch):
        store.ensure_layer(D1, lambda: io.BytesIO(blob), diff_id=D1)
    assert not store.has(D1)
    assert os.listdir(tmp_path / "tmp") == []


def _slow_blob_opener(blob_path: str, counter: str) -> BinaryIO:
    with open(counter, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(0.5)  # wide enough a window that the other process certainly asks meanwhile
    return open(blob_path, "rb")


def _race(store_root: str, cid: str, blob_path: str, counter: str, start: float, out: str) -> None:
    from functools import partial

    time.sleep(max(0.0, start - time.time()))
    path = LayerStore(Path(store_root)).ensure_layer(cid, partial(_slow_blob_opener, blob_path, counter))
    Path(out).write_text(str(path))


def test_concurrent_processes_extract_once(tmp_path: Path) -> None:
    blob = make_tar([("bin/", None), ("bin/sh", b"#!" * 1000)])
    blob_path = tmp_path / "blob.tar"
    blob_path.write_bytes(blob)
    counter = tmp_path / "extractions"
    ctx = multiprocessing.get_context("spawn")
    start = time.time() + 1.5  # after both have started up
    procs = [
        ctx.Process(target=_race, args=(str(tmp_path / "store"), D1, str(blob_path), str(counter), start,
                                        str(tmp_path / f"out{i}")))
        for i in range(2)
    ]  # fmt: skip
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    outs = {(tmp_path / f"out{i}").read_text() for i in range(2)}
    assert outs == {str(tmp_path / "store" / "sha256" / ("1" * 64))}
    assert len(counter.read_text().splitlines()) == 1
    assert (tmp_path / "store" / "sha256" / ("1" * 64) / "bin" / "sh").read_bytes() == b"#!" * 1000


def test_adopt_moves_without_copying(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "store")
    upper = store.scratch_dir()
    (upper / "new").write_bytes(b"n")
    ino = os.stat(upper / "new").st_ino
    path = store.adopt(D2, upper)
    assert not upper.exists()
    assert os.stat(path / "new").st_ino == ino
    assert store.has(D2)
    # Someone else stored it first: the second upper is discarded, the first kept.
    other = store.scratch_dir()
    (other / "other").write_bytes(b"o")
    assert store.adopt(D2, other) == path
    assert not other.exists()
    assert os.listdir(path) == ["new"]


def test_remove(tmp_path: Path) -> None:
    store = LayerStore(tmp_path)
    store.ensure_layer(D3, lambda: io.BytesIO(make_tar([("x", b"x")])))
    assert store.has(D3)
    store.remove(D3)
    assert not store.has(D3)
    assert os.listdir(tmp_path / "tmp") == []
    store.remove(D3)  # absent: nothing to do


def test_materialize_flat_applies_whiteouts(tmp_path: Path) -> None:
    l1 = make_tar([("etc/", None), ("etc/a", b"a"), ("etc/b", b"b"), ("opt/", None), ("opt/x", b"x")])
    l2 = make_tar([("etc/", None), ("etc/.wh.a", b""), ("opt/", None), ("opt/.wh..wh..opq", b""), ("opt/y", b"y")])
    dest = tmp_path / "rootfs"
    materialize_flat([lambda: io.BytesIO(l1), lambda: io.BytesIO(l2)], dest)
    assert sorted(os.listdir(dest / "etc")) == ["b"]
    assert sorted(os.listdir(dest / "opt")) == ["y"]


def test_store_layers_stack_as_overlay(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "store")
    l1 = make_tar([("etc/", None), ("etc/a", b"a"), ("etc/b", b"b"), ("opt/", None), ("opt/x", b"x")])
    l2 = make_tar([("etc/", None), ("etc/.wh.a", b""), ("opt/", None), ("opt/.wh..wh..opq", b""), ("opt/y", b"y")])
    paths = store.chain([diff_id_of(l1), diff_id_of(l2)], [lambda: io.BytesIO(l1), lambda: io.BytesIO(l2)])
    upper, work, merged = store.scratch_dir(), store.scratch_dir(), tmp_path / "merged"
    merged.mkdir()
    mount_overlay(list(reversed(paths)), upper, work, merged)
    try:
        assert sorted(os.listdir(merged / "etc")) == ["b"]
        assert sorted(os.listdir(merged / "opt")) == ["y"]
    finally:
        unmount(merged)


def _symlink_tar(entries: list[tuple[str, str, str | bytes | None]]) -> bytes:
    return layer_tar(entries, mtime=1_000_000_000, file_mode=0o755)


def test_store_layers_stack_as_the_flat_root_does(tmp_path: Path) -> None:
    """Issue 12 item 8: the store's layers, stacked, show the tree materialize_flat makes of the same layers: a
    file below a lower layer's directory symlink lands through it, a hardlink to a lower file works."""
    base = _symlink_tar([("dir", "run", None), ("dir", "var", None), ("symlink", "var/run", "/run"),
                         ("dir", "bin", None), ("file", "bin/busybox", b"elf")])  # fmt: skip
    app = _symlink_tar([("dir", "var", None), ("file", "var/run/app.pid", b"42\n"),
                        ("hardlink", "bin/sh", "bin/busybox")])  # fmt: skip
    store = LayerStore(tmp_path / "store")
    paths = store.chain([diff_id_of(base), diff_id_of(app)], [lambda: io.BytesIO(base), lambda: io.BytesIO(app)])
    flat = tmp_path / "flat"
    materialize_flat([lambda: io.BytesIO(base), lambda: io.BytesIO(app)], flat)
    upper, work, merged = store.scratch_dir(), store.scratch_dir(), tmp_path / "merged"
    merged.mkdir()
    mount_overlay(list(reversed(paths)), upper, work, merged)
    try:
        for root in (flat, merged):
            assert os.readlink(root / "var/run") == "/run", root
            assert (root / "run/app.pid").read_bytes() == b"42\n", root
            assert os.lstat(root / "bin/sh").st_ino == os.lstat(root / "bin/busybox").st_ino, root
    finally:
        unmount(merged)


def _deep_layer(depth: int) -> bytes:
    """One file below ``depth`` directories named "d": 2 * depth bytes of path."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("/".join(["d"] * depth) + "/f")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    return buf.getvalue()


def test_a_layer_deeper_than_path_max_is_one_error_and_leaves_nothing(tmp_path: Path) -> None:
    """Issue 12 item 13: ENAMETOOLONG, then a RecursionError while removing the half-made layer, and
    tmp/extract-* left behind. Now: one line, nothing left."""
    from kiln.layers import ExtractError

    blob = _deep_layer(2100)  # 4200 bytes of path
    store = LayerStore(tmp_path)
    with pytest.raises(ExtractError) as info:
        store.ensure_layer(diff_id_of(blob), lambda: io.BytesIO(blob), diff_id=diff_id_of(blob), lowers=[])
    assert "path too long" in str(info.value) and len(str(info.value).splitlines()) == 1
    assert os.listdir(tmp_path / "tmp") == []
    assert not store.has(diff_id_of(blob))


def test_removing_a_work_dir_deeper_than_python_recurses(tmp_path: Path) -> None:
    from kiln.store.mountinfo import remove_tree

    top = tmp_path / "work"
    fd = os.open(tmp_path, os.O_RDONLY)
    os.mkdir("work", dir_fd=fd)
    for _ in range(3000):  # deeper than sys.getrecursionlimit(), by relative steps (paths would be too long)
        nxt = os.open("work" if _ == 0 else "d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nxt
        os.mkdir("d", dir_fd=fd)
    os.close(fd)
    remove_tree(top)
    assert not top.exists()
