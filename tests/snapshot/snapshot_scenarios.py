"""One scenario of step changes, applied to a plain directory or through an overlay mount, with the changes
each snapshotter must report, computed by hand from the operations (not from any snapshotter's output)."""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

BASE_TIME_NS = 1_000_000_000 * 10**9  # 2001-09-09: every base entry's mtime, far from "now"

# security.capability v2, effective bit set, permitted = CAP_NET_BIND_SERVICE (bit 10): what setcap writes
# for "cap_net_bind_service=ep".
CAP_XATTR = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)


@dataclass
class Overlay:
    """A mounted overlay made by the make_overlay fixture."""

    lowers: list[Path]  # top first
    upper: Path
    work: Path
    merged: Path


def build_base(root: Path) -> None:
    """The tree a step starts from."""
    files = {
        "keep.txt": b"keep",
        "mod.txt": b"old",
        "chmod.txt": b"c",
        "chown.txt": b"o",
        "gone.txt": b"g",
        "gonedir/a": b"a",
        "gonedir/sub/b": b"b",
        "redo/x": b"x",
        "redo/sub/y": b"y",
        "f2d": b"file",
        "d2l/inner": b"i",
        "link-src": b"L",
        "cap": b"binary",
        "quiet/deep/q": b"q",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o644)
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in [*filenames, *dirnames]:
            os.utime(os.path.join(dirpath, name), ns=(BASE_TIME_NS, BASE_TIME_NS))
    os.utime(root, ns=(BASE_TIME_NS, BASE_TIME_NS))


def apply_step(root: Path) -> None:
    """What a RUN step does, through `root` (the merged overlay or the plain tree)."""
    (root / "new.txt").write_bytes(b"n")
    (root / "newdir").mkdir()
    (root / "newdir" / "n2").write_bytes(b"n2")
    (root / "mod.txt").write_bytes(b"new")
    os.chmod(root / "chmod.txt", 0o755)
    os.chown(root / "chown.txt", 1000, 1000)
    (root / "gone.txt").unlink()
    shutil.rmtree(root / "gonedir")
    shutil.rmtree(root / "redo")
    (root / "redo").mkdir()
    (root / "redo" / "new").write_bytes(b"new")
    (root / "redo" / "sub").mkdir()
    (root / "redo" / "sub" / "z").write_bytes(b"z")
    (root / "f2d").unlink()
    (root / "f2d").mkdir()
    (root / "f2d" / "inner").write_bytes(b"inner")
    shutil.rmtree(root / "d2l")
    os.symlink("keep.txt", root / "d2l")
    os.link(root / "link-src", root / "hard")
    os.setxattr(root / "cap", "security.capability", CAP_XATTR)
    # Something created and removed again, with its directory's mtime put back (what the sandbox does for
    # mount stubs): nothing changed.
    deep = root / "quiet" / "deep"
    (deep / "tmp").write_bytes(b"t")
    (deep / "tmp").unlink()
    os.utime(deep, ns=(BASE_TIME_NS, BASE_TIME_NS))
    # A sandbox mount stub, ignored by the default rules.
    (root / "proc").mkdir()


# Hand-computed from apply_step: every path whose content, type, mode, owner, xattrs or links changed,
# the new ones and their new descendants.
FULL_PATHS = (
    "cap",
    "chmod.txt",
    "chown.txt",
    "d2l",
    "f2d",
    "f2d/inner",
    "hard",
    "link-src",  # a second link to it: its link count changed (and overlay copied it up)
    "mod.txt",
    "new.txt",
    "newdir",
    "newdir/n2",
    "redo",
    "redo/new",
    "redo/sub",
    "redo/sub/z",
)
# Topmost deleted paths: d2l/inner is beneath d2l, which is now a symlink (and in paths); redo's old entries
# are hidden by the new (opaque) redo, redo/sub/y too although redo/sub exists again.
DELETIONS = ("gone.txt", "gonedir", "redo/sub/y", "redo/x")
# redo mode (kaniko's: mode, mtime, size, uid, gid) misses what moves only ctime or the link count: an xattr
# (cap) and a new link to an existing file (link-src); quiet/deep, whose mtime was put back, stays quiet.
REDO_PATHS = tuple(p for p in FULL_PATHS if p not in ("cap", "link-src"))
# time mode misses changes that move only ctime: chmod, chown, xattr, a new link.
TIME_PATHS = tuple(p for p in FULL_PATHS if p not in ("cap", "chmod.txt", "chown.txt", "link-src"))
