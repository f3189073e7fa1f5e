"""Helpers for layer tests: build trees with every kind of file, and describe trees metadata by metadata."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

# A real capability set (cap_net_raw=ep, VFS_CAP_REVISION_2), as `setcap cap_net_raw=ep` writes it.
CAP_NET_RAW = bytes.fromhex("0100000200200000000000000000000000000000")
# A value that is not UTF-8, to check binary xattr values survive the PAX records.
BINARY_VALUE = bytes(range(256))

LONG_NAME = "long-" + "x" * 180
UNICODE_NAME = "ünïcødé-文件-🙂"
MTIME = 1_600_000_000


@dataclass(frozen=True)
class Meta:
    kind: str
    mode: int
    uid: int
    gid: int
    mtime: int | None  # seconds; None where it is not compared (symlink parents etc.)
    content: str | None  # sha256 of a regular file
    link: str | None
    rdev: tuple[int, int] | None
    xattrs: tuple[tuple[str, bytes], ...]
    hardlink_group: str | None  # first path (sorted) sharing the inode


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "dir"),
        (stat.S_ISREG, "file"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISCHR, "chr"),
        (stat.S_ISBLK, "blk"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    raise AssertionError(f"unknown file type {mode:o}")


def _xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    names = sorted(os.listxattr(path, follow_symlinks=False))
    return tuple((n, os.getxattr(path, n, follow_symlinks=False)) for n in names if n != "security.selinux")


def describe(root: Path, *, dir_mtimes: bool = True) -> dict[str, Meta]:
    """Every path under root (not root itself) with its metadata, hardlinks grouped by first path."""
    found: dict[str, os.stat_result] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            found[os.path.relpath(full, root)] = os.lstat(full)
    groups: dict[tuple[int, int], str] = {}
    for rel in sorted(found):
        st = found[rel]
        if not stat.S_ISDIR(st.st_mode):
            groups.setdefault((st.st_dev, st.st_ino), rel)
    out = {}
    for rel, st in found.items():
        full = os.path.join(root, rel)
        kind = _kind(st.st_mode)
        content = None
        if kind == "file":
            content = hashlib.sha256(Path(full).read_bytes()).hexdigest()
        group = groups.get((st.st_dev, st.st_ino))
        out[rel] = Meta(
            kind=kind,
            mode=stat.S_IMODE(st.st_mode) if kind != "symlink" else 0,
            uid=st.st_uid,
            gid=st.st_gid,
            mtime=None if (kind == "dir" and not dir_mtimes) else int(st.st_mtime),
            content=content,
            link=os.readlink(full) if kind == "symlink" else None,
            rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in ("chr", "blk") else None,
            xattrs=_xattrs(full),
            hardlink_group=group if st.st_nlink > 1 else None,
        )
    return out


def make_full_tree(root: Path) -> list[str]:
    """A tree with every kind of file kiln must carry; returns every image path in it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "etc").mkdir(mode=0o755)
    (root / "etc/hostname").write_text("kiln\n")
    (root / "bin").mkdir()
    ping = root / "bin/ping"
    ping.write_bytes(b"\x7fELF" + os.urandom(3000))
    os.chown(ping, 0, 0)
    os.chmod(ping, 0o4755)
    os.setxattr(ping, "security.capability", CAP_NET_RAW)
    (root / "bin/sgid").write_text("g")
    os.chmod(root / "bin/sgid", 0o2711)
    os.link(ping, root / "bin/ping-hardlink")
    os.link(ping, root / "etc/ping-elsewhere")
    (root / "bin/sh").symlink_to("busybox")
    (root / "bin/abs").symlink_to("/etc/hostname")
    (root / "bin/dangling").symlink_to("../nowhere/at/all")
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    owned = root / "home/user"
    owned.mkdir(parents=True)
    (owned / "notes").write_text("mine")
    os.chown(owned / "notes", 1000, 1001)
    os.chown(owned, 1000, 1001)
    os.chmod(owned, 0o700)
    (owned / "attrs").write_text("xattrs")
    os.setxattr(owned / "attrs", "user.comment", b"hello")
    os.setxattr(owned / "attrs", "user.binary", BINARY_VALUE)
    os.setxattr(owned / "attrs", "trusted.kiln", b"t")
    os.chown(owned / "attrs", 1000, 1001)
    (root / "dev").mkdir()
    os.mknod(root / "dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chmod(root / "dev/null", 0o666)
    os.mknod(root / "dev/loop9", stat.S_IFBLK | 0o660, os.makedev(7, 9))
    os.chmod(root / "dev/loop9", 0o660)
    os.mkfifo(root / "dev/fifo", 0o600)
    (root / LONG_NAME).mkdir()
    (root / LONG_NAME / (LONG_NAME + ".txt")).write_text("long")
    (root / UNICODE_NAME).write_text("unicode")
    (root / "empty").write_bytes(b"")
    (root / "big").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    paths = [os.path.relpath(os.path.join(d, n), root) for d, ds, fs in os.walk(root) for n in ds + fs]
    # Fixed mtimes (after everything is written: creating children changes a directory's mtime).
    for p in sorted(paths, key=lambda p: -p.count("/")):
        os.utime(root / p, (MTIME, MTIME + zlib.crc32(p.encode()) % 1000), follow_symlinks=False)
    return sorted(paths)


def tar_entry(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    *,
    linkname: str = "",
    mode: int = 0o644,
    pax: dict[str, str] | None = None,
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = MTIME
    info.linkname = linkname
    if kind in (tarfile.REGTYPE, tarfile.AREGTYPE):
        info.size = len(data)
    if pax:
        info.pax_headers = pax
    return info, data


def make_tar(*entries: tuple[tarfile.TarInfo, bytes]) -> bytes:
    """A tar of hand-made entries, in the given order (for layers kiln's writer would never produce)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()
