"""An image's file system as one tree: its layers applied in order onto a directory, then described path by path.

Layers go through kiln.layers.extract in "apply" mode, so whiteouts and opaque directories delete what they
should. The walk works relative to directory file descriptors (os.fwalk), so paths longer than PATH_MAX and
names that are not UTF-8 are described like any other.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from kiln.layers.extract import extract_layer
from kiln.transports.image import Image

_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    """One path of a flattened image, as the comparison sees it."""

    type: str  # file, dir, symlink, char, block, fifo, socket
    mode: int  # permission bits with setuid/setgid/sticky
    uid: int
    gid: int
    size: int = 0  # regular files only
    sha256: str | None = None  # regular files only
    link: str | None = None  # symlink target
    rdev: tuple[int, int] | None = None  # char and block devices
    xattrs: tuple[tuple[str, str], ...] = ()  # name, value as hex
    hardlinks: tuple[str, ...] = ()  # every path sharing this inode (itself included), when more than one
    mtime_ns: int = 0


def flatten_image(image: Image, root: Path, label: str = "image") -> None:
    """Apply every layer of ``image`` onto the empty directory ``root``."""
    for i, desc in enumerate(image.layers):
        with image.blobs.open_blob(desc) as blob:
            extract_layer(blob, root, mode="apply", label=f"{label} layer {i + 1} ({desc.digest[:19]})")


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "dir"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISCHR, "char"),
        (stat.S_ISBLK, "block"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "unknown"


def _hash_file(name: str, dir_fd: int) -> str:
    h = hashlib.sha256()
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        while chunk := os.read(fd, _CHUNK):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def _xattrs(name: str, dir_fd: int) -> tuple[tuple[str, str], ...]:
    # listxattr/getxattr take no dir_fd; the directory's /proc/self/fd entry keeps the path short.
    path = f"/proc/self/fd/{dir_fd}/{name}"
    try:
        names = sorted(os.listxattr(path, follow_symlinks=False))
        return tuple((n, os.getxattr(path, n, follow_symlinks=False).hex()) for n in names)
    except OSError:
        return ()


def scan_tree(root: Path) -> dict[str, FileEntry]:
    """Every path below ``root`` (as "/a/b"; the root itself left out), with hardlink groups filled in."""
    tree: dict[str, FileEntry] = {}
    inodes: dict[tuple[int, int], list[str]] = defaultdict(list)
    top = os.fspath(root)
    for dirpath, dirnames, filenames, dir_fd in os.fwalk(top):
        rel_dir = os.path.relpath(dirpath, top)
        prefix = "/" if rel_dir == "." else "/" + rel_dir + "/"
        for name in dirnames + filenames:
            st = os.lstat(name, dir_fd=dir_fd)
            kind = _kind(st.st_mode)
            path = prefix + name
            tree[path] = FileEntry(
                type=kind,
                mode=stat.S_IMODE(st.st_mode),
                uid=st.st_uid,
                gid=st.st_gid,
                size=st.st_size if kind == "file" else 0,
                sha256=_hash_file(name, dir_fd) if kind == "file" else None,
                link=os.readlink(name, dir_fd=dir_fd) if kind == "symlink" else None,
                rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in ("char", "block") else None,
                xattrs=_xattrs(name, dir_fd),
                mtime_ns=st.st_mtime_ns,
            )
            if kind != "dir" and st.st_nlink > 1:
                inodes[(st.st_dev, st.st_ino)].append(path)
    for paths in inodes.values():
        if len(paths) > 1:
            group = tuple(sorted(paths))
            for p in paths:
                tree[p] = replace(tree[p], hardlinks=group)
    return tree
