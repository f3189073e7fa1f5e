"""Copying file trees into a rootfs the way COPY does: metadata kept, hardlinks kept, owners and modes overridable.

Everything written is reported back as image paths, because COPY and ADD declare what they wrote: those paths go
into the step's layer whether or not their bytes changed.

The rootfs is image-controlled: a symlink in it may point anywhere on the host. So nothing here lets the host
kernel follow one: destination directories are resolved inside the root (as the container would see them) and
made real, and every path written or declared lies below real directories of the root.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from kiln.errors import UnsafePathError
from kiln.layers.paths import is_layer_xattr
from kiln.rootfs import owners
from kiln.rootfs.paths import resolve_in_root

# A chmod: given the source's mode (permission bits and type), the new permission bits.
ModeFn = Callable[[int], int]


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int


@dataclass
class CopyAttrs:
    """What the instruction says about the copies: owner override, mode override, whether to keep xattrs."""

    owner: Owner | None = None
    chmod: ModeFn | None = None
    keep_xattrs: bool = True


@dataclass
class WriteLog:
    """The image paths written, and the hardlink groups seen, across one COPY/ADD."""

    root: Path
    written: set[str] = field(default_factory=set)
    links: dict[tuple[int, int], Path] = field(default_factory=dict)

    def add(self, host_path: Path) -> None:
        rel = os.path.relpath(host_path, self.root)
        if rel == ".." or rel.startswith("../"):
            # A path computed without resolving it in the root: declaring it would read the host into the layer.
            raise UnsafePathError(f"{host_path}: written outside the root {self.root}")
        self.written.add(rel)


def _copy_xattrs(src: Path, dst: Path) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if not is_layer_xattr(name):
            continue
        with contextlib.suppress(OSError):
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _apply_meta(src_st: os.stat_result, dst: Path, attrs: CopyAttrs, is_link: bool) -> None:
    uid, gid = (attrs.owner.uid, attrs.owner.gid) if attrs.owner else (src_st.st_uid, src_st.st_gid)
    owners.chown(dst, uid, gid)
    if not is_link:
        perm = stat.S_IMODE(src_st.st_mode)
        if attrs.chmod is not None:
            perm = attrs.chmod(src_st.st_mode)
        # chown clears setuid/setgid bits, so the mode is set after it.
        os.chmod(dst, perm)
    os.utime(dst, ns=(src_st.st_mtime_ns, src_st.st_mtime_ns), follow_symlinks=False)


def copy_entry(src: Path, dst: Path, attrs: CopyAttrs, log: WriteLog, src_st: os.stat_result | None = None) -> None:
    """Copy one filesystem object (not a directory's contents) from src to dst, replacing what is at dst."""
    st = src_st or os.lstat(src)
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
            _remove(dst)
        if not dst.exists():
            os.mkdir(dst, 0o700)
        if attrs.keep_xattrs:
            _copy_xattrs(src, dst)
        _apply_meta(st, dst, attrs, False)
        log.add(dst)
        return
    if dst.is_dir() and not dst.is_symlink():
        # BuildKit refuses ("cannot replace to directory ... with file"): a copy never deletes a directory's
        # contents, which earlier entries of this very copy may have written.
        image_path = "/" + os.path.relpath(dst, log.root)
        raise IsADirectoryError(errno.EISDIR, "cannot replace a directory with a non-directory", image_path)
    if os.path.lexists(dst):
        _remove(dst)
    key = (st.st_dev, st.st_ino)
    if st.st_nlink > 1 and not stat.S_ISDIR(mode):
        first = log.links.get(key)
        if first is not None:
            os.link(first, dst, follow_symlinks=False)
            log.add(dst)
            return
        log.links[key] = dst
    if stat.S_ISLNK(mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(mode):
        with _open_regular(src) as fin, open(dst, "xb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        os.mknod(dst, mode, st.st_rdev)
    else:
        return  # sockets and the like do not belong in images
    if attrs.keep_xattrs and not stat.S_ISLNK(mode):
        _copy_xattrs(src, dst)
    _apply_meta(st, dst, attrs, stat.S_ISLNK(mode))
    log.add(dst)


def _open_regular(src: Path) -> BinaryIO:
    """``src``, which was a regular file when it was stat'ed, opened for reading. Opened without blocking and
    checked again: swapped for a FIFO in between, it would otherwise block the build forever."""
    fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "no longer a regular file", str(src))
    return os.fdopen(fd, "rb")


def copy_tree_contents(
    src_dir: Path,
    dst_dir: Path,
    attrs: CopyAttrs,
    log: WriteLog,
    entries: Iterator[str] | None = None,
) -> None:
    """Copy what is inside src_dir into dst_dir (which exists). ``entries`` restricts and orders the relative
    paths to copy (parents before children), e.g. to honour .dockerignore; by default everything is copied."""
    if entries is None:
        entries = walk_sorted(src_dir)
    dir_times: list[tuple[Path, os.stat_result]] = []
    copied_dirs = {""}  # relative paths of the directories this copy made real, dst_dir's own ("") included
    for rel in entries:
        src = src_dir / rel
        parent, _, name = rel.rpartition("/")
        if parent in copied_dirs:
            dst = dst_dir / rel
        else:
            # Its parent was filtered out (--exclude): what is there now may be the image's symlink.
            dst = make_dirs(log.root, dst_dir / parent, attrs.owner, log, new_dir_mode(attrs.chmod)) / name
        st = os.lstat(src)
        copy_entry(src, dst, attrs, log, st)
        if stat.S_ISDIR(st.st_mode):
            dir_times.append((dst, st))
            copied_dirs.add(rel)
    # Writing into a directory changes its mtime: restore them deepest first, once their contents are in.
    for dst, st in reversed(dir_times):
        os.utime(dst, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)


def walk_sorted(top: Path) -> Iterator[str]:
    """Every path below `top`, relative to it, parents before children, names sorted (symlinks not followed)."""
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        base = os.path.relpath(dirpath, top)
        for name in sorted(dirnames + filenames):
            yield name if base == "." else f"{base}/{name}"


def new_dir_mode(chmod: ModeFn | None) -> int:
    """The mode of a directory a COPY creates (the destination, its missing parents): 0755, or what --chmod
    makes of it. BuildKit >= 0.21 (tonistiigi/fsutil#228, moby/buildkit#4945) creates them with the --chmod
    mode; a symbolic --chmod is applied to 0755 as to any directory."""
    return 0o755 if chmod is None else chmod(stat.S_IFDIR | 0o755)


def make_dirs(root: Path, host_dir: Path, owner: Owner | None, log: WriteLog, mode: int = 0o755) -> Path:
    """mkdir -p inside the rootfs; the directories created (not those that existed) are owned by ``owner``
    (root by default) with ``mode`` (0755 unless the caller's --chmod says otherwise), and declared as
    written. Symlinks on the way are followed inside the root, never on the host; the real directory is
    returned, and callers write below it, not ``host_dir``."""
    real = resolve_in_root(root, os.path.relpath(host_dir, root))
    missing: list[Path] = []
    p = real
    while not os.path.lexists(p):
        missing.append(p)
        if p == root:
            break
        p = p.parent
    for d in reversed(missing):
        os.mkdir(d, 0o700)
        if owner is not None:
            owners.chown(d, owner.uid, owner.gid, follow_symlinks=True)
        # After chown, which may clear setgid; and whatever the umask.
        os.chmod(d, mode)
        log.add(d)
    return real
