"""Writing a layer tar from a directory: deterministic PAX, hardlinks, xattrs, explicit whiteouts.

The same tree and the same lists give the same bytes: entries are sorted, no user or group names, no
atime/ctime, and ``timestamp`` (SOURCE_DATE_EPOCH, or 0 for --reproducible) clamps every mtime: a later one
becomes the timestamp, an earlier one stays (BuildKit's rewrite-timestamp). Headers come from Python's
tarfile (PAX format); the framing (content, padding, end of archive) is written here so file contents stream
straight from disk without the tarfile module's small copy buffers.

What is skipped, on purpose:
- sockets (they cannot be archived meaningfully);
- overlayfs whiteouts (character devices 0/0) found under ``root``: an overlay upper dir holds them for
  deleted paths, and the caller passes those paths in ``deletions`` instead. If one is passed in ``paths``
  it is silently left out rather than archived as a device;
- overlayfs' own xattrs (trusted.overlay.*, user.overlay.*) and the host's security.selinux label.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kiln.errors import SnapshotError
from kiln.layers.compress import Writable
from kiln.layers.paths import WHITEOUT_PREFIX, XATTR_PAX_PREFIX, is_layer_xattr, sort_key, split_image_path

BLOCK = 512
_CHUNK = 1 << 20
_FLUSH_AT = 1 << 20


@dataclass(frozen=True)
class LayerTarStats:
    entries: int
    content_bytes: int


class _BufferedOut:
    """Gathers headers and small files into large writes (the sink hashes and compresses per call)."""

    def __init__(self, out: Writable) -> None:
        self._out = out
        self._buf = bytearray()

    def write(self, data: bytes | memoryview) -> None:
        if len(data) >= _FLUSH_AT:
            self.flush()
            self._out.write(data)
            return
        self._buf += data
        if len(self._buf) >= _FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._out.write(bytes(self._buf))
            self._buf.clear()


def _prune_deletions(deletions: Iterable[str]) -> list[tuple[str, ...]]:
    """Deleted paths, without those under another deleted path (their parent's whiteout covers them)."""
    found = {parts for d in deletions if (parts := split_image_path(d))}
    return [d for d in found if not any(d[:i] in found for i in range(1, len(d)))]


def _mtime(st: os.stat_result, timestamp: int | None) -> int:
    mtime = st.st_mtime_ns // 1_000_000_000
    return mtime if timestamp is None else max(0, min(mtime, timestamp))


def _xattrs(target: str | int) -> dict[str, str]:
    """The layer's xattrs of a file as PAX records (values carried as surrogate-escaped UTF-8)."""
    nofollow = isinstance(target, str)  # an fd is the file itself; os refuses the flag with one
    try:
        names = os.listxattr(target, follow_symlinks=not nofollow)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    records = {}
    for name in sorted(names):
        if not is_layer_xattr(name):
            continue
        try:
            value = os.getxattr(target, name, follow_symlinks=not nofollow)
        except OSError as e:
            if e.errno == errno.ENODATA:  # removed since listxattr
                continue
            raise
        records[XATTR_PAX_PREFIX + name] = value.decode("utf-8", "surrogateescape")
    return records


class _LayerWriter:
    def __init__(self, root: str, out: Writable, timestamp: int | None) -> None:
        self.root = root
        self.out = _BufferedOut(out)
        self.timestamp = timestamp
        self.entries = 0
        self.content_bytes = 0
        self.first_link: dict[tuple[int, int], str] = {}
        self.real_dirs: set[tuple[str, ...]] = {()}
        self.chunk = bytearray(_CHUNK)

    def host_path(self, parts: tuple[str, ...]) -> str:
        return os.path.join(self.root, *parts) if parts else self.root

    def check_parents(self, parts: tuple[str, ...]) -> None:
        """Every parent of ``parts`` must be a real directory: a symlink there would lead outside the tree."""
        for i in range(1, len(parts)):
            parent = parts[:i]
            if parent in self.real_dirs:
                continue
            try:
                st = os.lstat(self.host_path(parent))
            except FileNotFoundError:
                raise SnapshotError(f"{'/'.join(parts)}: parent directory is missing under {self.root}") from None
            if not stat.S_ISDIR(st.st_mode):
                raise SnapshotError(f"{'/'.join(parts)}: parent {'/'.join(parent)} is not a directory")
            self.real_dirs.add(parent)

    def header(self, info: tarfile.TarInfo) -> None:
        self.out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        self.entries += 1

    def whiteout(self, parts: tuple[str, ...]) -> None:
        info = tarfile.TarInfo("/".join(parts))
        info.type = tarfile.REGTYPE
        info.mode = 0
        info.mtime = self.timestamp or 0
        self.header(info)

    def entry(self, parts: tuple[str, ...]) -> None:
        name = "/".join(parts)
        path = self.host_path(parts)
        self.check_parents(parts)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise SnapshotError(f"{name}: listed for the layer but missing under {self.root}") from None
        fmt = stat.S_IFMT(st.st_mode)
        if fmt == stat.S_IFSOCK or (fmt == stat.S_IFCHR and st.st_rdev == 0):
            return
        if fmt == stat.S_IFDIR:
            self.real_dirs.add(parts)
        elif st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self.first_link.get(key)
            if first is not None:
                self.hardlink(name, first, st, path)
                return
            self.first_link[key] = name
        if fmt == stat.S_IFREG:
            self.regular(name, path)
            return
        info = self.info(name, st, _xattrs(path))
        if fmt == stat.S_IFDIR:
            info.type = tarfile.DIRTYPE
        elif fmt == stat.S_IFLNK:
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(path)
        elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
            info.type = tarfile.CHRTYPE if fmt == stat.S_IFCHR else tarfile.BLKTYPE
            info.devmajor = os.major(st.st_rdev)
            info.devminor = os.minor(st.st_rdev)
        elif fmt == stat.S_IFIFO:
            info.type = tarfile.FIFOTYPE
        else:
            return
        self.header(info)

    def info(self, name: str, st: os.stat_result, xattrs: dict[str, str]) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid = st.st_uid
        info.gid = st.st_gid
        info.mtime = _mtime(st, self.timestamp)
        info.pax_headers = xattrs
        return info

    def hardlink(self, name: str, target: str, st: os.stat_result, path: str) -> None:
        info = self.info(name, st, {})
        info.type = tarfile.LNKTYPE
        info.linkname = target
        self.header(info)

    def regular(self, name: str, path: str) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError as e:
            raise SnapshotError(f"{name}: cannot read: {e.strerror}") from e
        try:
            st = os.fstat(fd)
            info = self.info(name, st, _xattrs(fd))
            info.type = tarfile.REGTYPE
            info.size = st.st_size
            self.header(info)
            left = st.st_size
            view = memoryview(self.chunk)
            while left:
                n = os.readv(fd, [view[: min(left, _CHUNK)]])
                if n == 0:
                    raise SnapshotError(f"{name}: file shrank while it was being archived")
                self.out.write(view[:n])
                left -= n
            self.content_bytes += st.st_size
            pad = -st.st_size % BLOCK
            if pad:
                self.out.write(bytes(pad))
        finally:
            os.close(fd)

    def finish(self) -> None:
        self.out.write(bytes(2 * BLOCK))
        self.out.flush()


def write_layer_tar(
    root: Path,
    paths: Iterable[str],
    deletions: Iterable[str],
    out: Writable,
    *,
    timestamp: int | None = None,
    include_parents: bool = True,
) -> LayerTarStats:
    """Write a layer tar of ``paths`` (their current state under ``root``) and whiteouts for ``deletions``.

    ``paths`` are image paths ("usr/bin/x"); a directory path stands for the directory entry only. With
    ``include_parents`` every parent directory of a path or whiteout is written too, with its metadata read
    from ``root``. Each deletion becomes ``dir/.wh.name``; deletions under another deletion are dropped.
    Files sharing an inode become one regular entry and hardlinks to it (the first in order is the target).
    A path whose parent under ``root`` is not a real directory, or that is missing, is SnapshotError.
    """
    wanted: dict[tuple[str, ...], bool] = {}  # parts -> is a whiteout

    def add(parts: tuple[str, ...], whiteout: bool) -> None:
        if include_parents:
            for i in range(1, len(parts)):
                wanted.setdefault(parts[:i], False)
        wanted[parts] = whiteout

    for p in paths:
        parts = split_image_path(p)
        if parts:
            add(parts, False)
    for d in _prune_deletions(deletions):
        add(d[:-1] + (WHITEOUT_PREFIX + d[-1],), True)

    writer = _LayerWriter(os.fspath(root), out, timestamp)
    for parts in sorted(wanted, key=sort_key):
        if wanted[parts]:
            writer.whiteout(parts)
        else:
            writer.entry(parts)
    writer.finish()
    return LayerTarStats(entries=writer.entries, content_bytes=writer.content_bytes)
