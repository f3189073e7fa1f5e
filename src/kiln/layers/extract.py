"""Extracting a layer tar onto a root, safely, in one of two shapes; and unpacking an archive (ADD).

mode "apply": the root is the whole filesystem so far (one directory); whiteouts delete from it. A whiteout
only removes what lower layers put there, never what this same layer adds (OCI image spec), whatever the
order of the entries: what this layer added is tracked, and an opaque directory or a whited-out directory
this layer re-creates keeps this layer's entries.

mode "overlay": the root is an empty directory for this layer alone, later stacked by overlayfs as a
lowerdir (given the layers below it, paths are resolved in the stack as apply mode resolves them in the whole
root: see ``lowers``); whiteouts are written in overlayfs' own terms: ``.wh.name`` becomes a character device 0/0 named
``name``, ``.wh..wh..opq`` sets trusted.overlay.opaque=y on its directory (and a directory this layer both
whites out and re-creates becomes opaque).

mode "archive": ADD's local archive, unpacked onto its destination as Docker and BuildKit unpack one (moby's
archive.Unpack, BuildKit's unpack with whiteout conversion off): an archive is not a layer, so ``.wh.*`` names
are plain files; a leading "/" of an entry name or hardlink target is dropped (the destination is the
archive's root); a symlink's ".." at that root stays there (a chroot's rule) rather than being refused. Names
whose own ".." climb out of the destination are still refused, as Docker refuses them.

Safety: entry names and hardlink targets that are absolute or climb out with ".." are refused, and every
parent path is resolved inside the root the way a chrooted process would see it (see kiln.rootfs.resolver), so nothing
outside the root is ever created, written, linked or removed. overlayfs' own xattrs in a layer are ignored,
so a layer cannot steer the overlay mount (redirects, metacopy).

Reading: layers are hostile input, so the tar stream is read by kiln's own reader (layers/tarreader.py), not
tarfile's, whose parser can be made to raise anything, recurse without end, loop on a lying size, take
quadratic time or hold any amount of memory. Headers are checked as Go's archive/tar (Docker's reader) checks
them, with its limits (extended headers and sparse maps up to 1 MiB); sparse files keep their holes. Numbers
no system call takes (ids, times, device numbers out of range) and NUL in names are refused. Any refusal is
one line naming the layer and the entry.

Skipping (kiln's in-place mode, which extracts onto a live root): an optional ``skip(path)`` names real paths
(relative to the root, symlinks on the way resolved) that are left exactly as they are: an entry landing
there is not written, a whiteout there removes nothing, an opaque directory keeps them. A directory that
holds skipped paths must itself be skipped, or a layer replacing it (with a file, a symlink) removes it whole.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import queue
import stat
import tarfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from kiln.errors import DigestMismatch, ImageFormatError, KilnError, RegistryError, UnsafePathError
from kiln.layers.compress import Readable, open_decompressed
from kiln.layers.paths import (
    AUFS_META_PREFIX,
    OPAQUE_MARKER,
    WHITEOUT_PREFIX,
    XATTR_PAX_PREFIX,
    is_layer_xattr,
    split_image_path,
)
from kiln.layers.tarreader import Member, TarReader
from kiln.rootfs import overlayattrs, owners
from kiln.rootfs.resolver import Parts, RootResolver, copy_xattrs, is_whiteout_device

ExtractMode = Literal["apply", "overlay", "archive"]
_CHUNK = 1 << 20
_AHEAD = 4
_PIECE = 1 << 16


class ExtractError(KilnError):
    """The file system refused a change while a layer was extracted (no space, no permission, ...)."""


@dataclass(frozen=True)
class ExtractStats:
    entries: int
    content_bytes: int
    whiteouts: int
    diff_id: str  # sha256 of the uncompressed tar, for checking against the image config


class _ReadAhead:
    """The decompressed tar, made and hashed (its diff_id) by a thread of its own a few chunks ahead of the
    extraction. Decompression and hashing release the GIL, so they run beside the extraction's Python work
    instead of before it (a quarter of a layer's time on two cores). At most _AHEAD chunks wait in memory."""

    def __init__(self, src: Readable) -> None:
        self.sha = hashlib.sha256()
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(_AHEAD)
        self._stopping = threading.Event()
        self._chunk = memoryview(b"")
        self._failed: BaseException | None = None
        self._eof = False
        self._thread = threading.Thread(target=self._produce, args=(src,), name="kiln-decompress", daemon=True)
        self._thread.start()

    def _produce(self, src: Readable) -> None:
        chunk = bytearray()
        try:
            stream = cast(io.BufferedIOBase, open_decompressed(src))
            try:
                while not self._stopping.is_set():
                    # Piece by piece, so that what came before a corrupt or truncated end is extracted (and the
                    # error names the entry it cut) rather than lost with the read that failed.
                    while len(chunk) < _CHUNK and (piece := stream.read1(min(_PIECE, _CHUNK - len(chunk)))):
                        chunk += piece
                    self.sha.update(chunk)
                    self._queue.put(bytes(chunk))
                    if not chunk:
                        return
                    chunk.clear()
            finally:
                stream.close()
        except BaseException as e:  # noqa: BLE001 - raised where the tar is read
            if chunk:
                self._queue.put(bytes(chunk))
            self._queue.put(e)

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            return b"".join(iter(lambda: self.read(_CHUNK), b""))
        if not self._chunk:
            if self._failed is not None:
                raise self._failed
            if self._eof:
                return b""
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._failed = item
                raise item
            if not item:
                self._eof = True
                return b""
            self._chunk = memoryview(item)
        out, self._chunk = self._chunk[:size], self._chunk[size:]
        return out.tobytes()

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    def close(self) -> None:
        """Stop the thread (it may be blocked handing over a chunk no one will take) and wait for it: the source
        is the caller's to close once this returns."""
        self._stopping.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()


def _mtime_ns(info: tarfile.TarInfo) -> int:
    return round(info.mtime * 1_000_000_000)


_MAX_ID = 2**32 - 2  # uid_t and gid_t; 2**32 - 1 is (uid_t)-1, "leave it as it is"
_MAX_DEV = 2**32 - 1
_MAX_SIZE = 2**63 - 1  # off_t
_MAX_MTIME = 2**63 // 1_000_000_000 - 1  # nanoseconds in an int64, as the kernel and Python keep them


def _check_member(info: tarfile.TarInfo) -> None:
    """Refuse what no file system call can take: numbers out of range, NUL in a name (ImageFormatError)."""
    if "\0" in info.name or "\0" in info.linkname:
        raise ImageFormatError("NUL in a name")
    for what, value, top in (("uid", info.uid, _MAX_ID), ("gid", info.gid, _MAX_ID)):
        if not 0 <= value <= top:
            raise ImageFormatError(f"{what} {value} out of range")
    if getattr(info, "segments", None) is not None and not 0 <= info.size <= _MAX_SIZE:
        raise ImageFormatError(f"sparse file size {info.size} out of range")  # (its real size: any number)
    if not -_MAX_MTIME <= info.mtime <= _MAX_MTIME:  # (False for NaN too)
        raise ImageFormatError(f"mtime {info.mtime} out of range")
    if (info.ischr() or info.isblk()) and not (0 <= info.devmajor <= _MAX_DEV and 0 <= info.devminor <= _MAX_DEV):
        raise ImageFormatError(f"device number {info.devmajor},{info.devminor} out of range")


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _walk_down(
    top: str,
    visit: Callable[[int, list[str]], list[str]],
    leave: Callable[[int, str], None],
    dir_fd: int | None = None,
) -> None:
    """Depth first through the directory ``top`` (relative to ``dir_fd`` if given), neither recursing nor
    re-resolving paths.

    ``visit(fd, path)`` is called once in each directory visited (``path``: its names below ``top``) and says
    which of its subdirectories to visit; ``leave(parent_fd, name)`` once each visited subdirectory is done.
    Directories are opened by name from their parent and left through ".." (only one is open at a time):
    layers can nest directories deeper than Python recurses, or than paths can be long. Only ever given real
    directories inside the root, which nothing else changes while a layer is extracted.
    """
    fd = os.open(top, _DIR_FLAGS & ~os.O_NOFOLLOW, dir_fd=dir_fd)  # a real directory, or the root
    path: list[str] = []
    try:
        stack = [visit(fd, path)]
        while stack:
            if stack[-1]:
                name = stack[-1].pop()
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
                path.append(name)
                stack.append(visit(fd, path))
                continue
            stack.pop()
            if stack:
                parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = parent
                leave(fd, path.pop())
    finally:
        os.close(fd)


def _clear(fd: int, path: list[str]) -> list[str]:
    """Remove what is in the directory ``fd`` but subdirectories, and name those."""
    subdirs = []
    with os.scandir(fd) as it:
        for entry in it:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
    return subdirs


def _remove_tree(top: str, dir_fd: int | None = None) -> None:
    """shutil.rmtree, for trees of any depth."""
    _walk_down(top, _clear, lambda fd, name: os.rmdir(name, dir_fd=fd), dir_fd)
    os.rmdir(top, dir_fd=dir_fd)


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove ``path`` (a directory tree of any depth, or anything else) without following symlinks.
    shutil.rmtree recurses, and a layer can nest directories deeper than Python does (RecursionError)."""
    path = os.fspath(path)
    st = _lstat(path)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        _remove_tree(path)
    else:
        os.unlink(path)


def _one_line(text: str, limit: int = 2000) -> str:
    """``text`` fit for a one-line error message: control characters, line separators and undecodable bytes
    escaped (they come from entry names), and the middle of a very long text left out."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if len(text) > limit:
        text = f"{text[: limit // 2]}...({len(text) - limit} characters)...{text[-limit // 2 :]}"
    return text


def _lstat(host: str) -> os.stat_result | None:
    try:
        return os.lstat(host)
    except FileNotFoundError:
        return None


SkipFn = Callable[[str], bool]


class _Extractor:
    def __init__(
        self, root: str, mode: ExtractMode, skip: SkipFn | None = None, lowers: Sequence[str] | None = None
    ) -> None:
        self.root = root
        self.mode = mode
        self.skip = skip
        # Overlay mode: whether what is below this layer is known (lowers given, empty for a bottom layer).
        self.stacked = mode == "overlay" and lowers is not None
        self.resolver = RootResolver(root, clamp=mode == "archive", lowers=(lowers or ()) if self.stacked else ())
        self.added: set[Parts] = set()  # real paths this layer created
        self.holds_added: set[Parts] = set()  # real directories with something this layer created below
        self.whited: set[Parts] = set()  # overlay mode: whiteout devices this layer created
        self.dir_mtimes: dict[Parts, int] = {}
        self.entries = 0
        self.content_bytes = 0
        self.whiteouts = 0

    # -- bookkeeping

    def mark_added(self, real: Parts) -> None:
        self.added.add(real)
        # Deepest first: once a directory is known, so are all above it (linear in the depth, not quadratic).
        for i in range(len(real) - 1, -1, -1):
            if real[:i] in self.holds_added:
                break
            self.holds_added.add(real[:i])

    def is_ours(self, real: Parts) -> bool:
        return real in self.added or real in self.holds_added

    def skipped(self, parent_parts: Parts, name: str) -> bool:
        """Whether ``parent/name`` lands on a skipped path, found without creating anything."""
        if self.skip is None:
            return False
        # The deepest existing directory on the way, resolved; what is still missing below it is taken as is.
        # (Found from the top down: each step then resolves one more name, whatever the depth.)
        real: Parts = ()
        depth = 0
        while depth < len(parent_parts):
            found = self.resolver.resolve_dir(parent_parts[: depth + 1], create=False)
            if found is None:
                break
            real, depth = found, depth + 1
        return self.skip("/".join((*real, *parent_parts[depth:], name)))

    def remove(self, host: str, st: os.stat_result, dir_fd: int | None = None) -> None:
        """Remove ``host`` (relative to ``dir_fd`` if given), which lstat gave ``st``."""
        if stat.S_ISDIR(st.st_mode):
            _remove_tree(host, dir_fd)
        else:
            os.unlink(host, dir_fd=dir_fd)
        # Only directories and symlinks take part in resolving paths; replacing files (most of a layer
        # over an older one) keeps the resolver's cache.
        if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
            self.resolver.invalidate()

    # -- entries

    def apply(self, reader: TarReader, info: Member) -> None:
        self.entries += 1
        _check_member(info)
        if info.name.startswith("/") and self.mode != "archive":
            raise UnsafePathError("absolute path in a layer")
        parts = split_image_path(info.name)
        if not parts:
            return  # the root itself: its metadata belongs to whoever made the root
        name = parts[-1]
        if name.startswith(WHITEOUT_PREFIX) and self.mode != "archive":
            self.whiteout(parts[:-1], name)
            return
        if self.skipped(parts[:-1], name):
            return
        parent = self.resolver.resolve_dir(parts[:-1], create=True)
        assert parent is not None
        real = (*parent, name)
        host = self.resolver.host(real)
        existing = _lstat(host)
        # Stacked: what the lowers show at this name, which the new entry hides.
        shadowed = self.resolver.lower_entry(real) if self.stacked and existing is None else None
        if info.isdir():
            replaced = existing is not None and not stat.S_ISDIR(existing.st_mode)
            if existing is not None and replaced:
                self.remove(host, existing)
                existing = None
            if existing is None:
                os.mkdir(host, 0o700)
            self.metadata(host, info)
            self.dir_mtimes[real] = _mtime_ns(info)
            # Overlay: over a whiteout, or over a non-directory this layer put where the lowers may have had a
            # directory (which that non-directory replaced), the new directory shows nothing of theirs.
            if real in self.whited or (self.mode == "overlay" and replaced):
                os.setxattr(host, overlayattrs.opaque(), b"y")
                self.resolver.invalidate()  # the lowers below it are hidden now
        elif info.islnk():
            self.hardlink(host, existing, info)
        else:
            if existing is not None:
                self.remove(host, existing)
            if info.issym():
                os.symlink(info.linkname, host)
                self.resolver.invalidate()
                self.metadata(host, info, symlink=True)
            elif info.ischr() or info.isblk():
                kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK
                try:
                    os.mknod(host, kind | 0o600, os.makedev(info.devmajor, info.devminor))
                except PermissionError as e:
                    if not overlayattrs.unprivileged():
                        raise
                    raise PermissionError(e.errno, f"a device node ({info.devmajor}, {info.devminor}) cannot be made "
                                                   "in a user namespace (a rootless build); build this image as root"
                                          ) from None
                self.metadata(host, info)
            elif info.isfifo():
                os.mkfifo(host, 0o600)
                self.metadata(host, info)
            else:  # regular files, and unknown types, which tar readers treat as regular files
                self.regular(reader, host, info)
        if shadowed is not None and (
            stat.S_ISLNK(shadowed[1].st_mode) or (stat.S_ISDIR(shadowed[1].st_mode) and not info.isdir())
        ):
            self.resolver.invalidate()  # a lower symlink or directory no longer leads where it did
        self.mark_added(real)

    def regular(self, reader: TarReader, host: str, info: Member) -> None:
        fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            # A sparse file's pieces of data go where they belong and the rest stays a hole, never written
            # (a small entry can describe a terabyte of holes).
            for offset, length in info.segments if info.segments is not None else [(0, info.size)]:
                if info.segments is not None:
                    os.lseek(fd, offset, os.SEEK_SET)
                while chunk := reader.read_data(min(length, _CHUNK)):
                    length -= len(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                    self.content_bytes += len(chunk)
            if info.segments is not None:
                os.ftruncate(fd, info.size)
            self.metadata(fd, info)
        finally:
            os.close(fd)

    def hardlink(self, host: str, existing: os.stat_result | None, info: tarfile.TarInfo) -> None:
        if info.linkname.startswith("/") and self.mode != "archive":
            raise UnsafePathError(f"hardlink to absolute path {info.linkname!r}")
        target = split_image_path(info.linkname)
        if not target:
            raise ImageFormatError("hardlink to the root directory")
        tparent = self.resolver.resolve_dir(target[:-1], create=False)
        thost = self.resolver.host((*tparent, target[-1])) if tparent is not None else None
        tst = _lstat(thost) if thost is not None else None
        if tst is not None and self.stacked and is_whiteout_device(tst):
            tst = None  # deleted by this layer
        elif thost is not None and tparent is not None and tst is None and self.stacked:
            # A link to a file of a lower layer: overlayfs would copy the file up, and so do we.
            lower = self.resolver.lower_entry((*tparent, target[-1]))
            if lower is not None and not stat.S_ISDIR(lower[1].st_mode):
                _copy_up(lower[0], lower[1], thost)
                tst = _lstat(thost)
        if thost is None or tst is None:
            raise ImageFormatError(f"hardlink target {info.linkname!r} does not exist")
        if stat.S_ISDIR(tst.st_mode):
            raise ImageFormatError(f"hardlink target {info.linkname!r} is a directory")
        if self.skip is not None and self.skip("/".join((*(tparent or ()), target[-1]))):
            return  # a link to a skipped file would bring that file (not the layer's) into the root
        if existing is None or (existing.st_dev, existing.st_ino) != (tst.st_dev, tst.st_ino):
            if existing is not None:
                self.remove(host, existing)
            os.link(thost, host, follow_symlinks=False)
        self.link_metadata(host, tst, info)

    def link_metadata(self, host: str, st: os.stat_result, info: tarfile.TarInfo) -> None:
        """A hardlink entry's own owner, mode, xattrs and mtime go to the inode it shares, as Docker's and
        containerd's appliers (Lchown, chmod, chtimes on the link) and buildah leave them. Only what differs
        is changed: chown, even to the same owner, drops security.capability and setuid bits that the
        target's own entry set (kiln's writer gives a link the inode's metadata but no xattrs)."""
        symlink = stat.S_ISLNK(st.st_mode)
        if (st.st_uid, st.st_gid) != (info.uid, info.gid):
            owners.chown(host, info.uid, info.gid)
            st = os.lstat(host)
        if not symlink and stat.S_IMODE(st.st_mode) != info.mode & 0o7777:
            os.chmod(host, info.mode & 0o7777)  # not a symlink: a real file inside the root
        for key, value in info.pax_headers.items():
            attr = key[len(XATTR_PAX_PREFIX) :]
            if key.startswith(XATTR_PAX_PREFIX) and is_layer_xattr(attr) and not symlink:
                os.setxattr(host, attr, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
        ns = _mtime_ns(info)
        os.utime(host, ns=(ns, ns), follow_symlinks=False)

    def metadata(self, target: str | int, info: tarfile.TarInfo, *, symlink: bool = False) -> None:
        # chown first: it clears setuid/setgid bits and security.capability.
        nofollow = isinstance(target, str)  # an fd is the file itself; os refuses the flag with one
        owners.chown(target, info.uid, info.gid, follow_symlinks=not nofollow)
        if not symlink:
            os.chmod(target, info.mode & 0o7777)
        for key, value in info.pax_headers.items():
            if not key.startswith(XATTR_PAX_PREFIX):
                continue
            attr = key[len(XATTR_PAX_PREFIX) :]
            if not is_layer_xattr(attr):
                continue
            try:
                os.setxattr(
                    target, attr, value.encode("utf-8", "surrogateescape"), follow_symlinks=not nofollow
                )
            except OSError as e:
                # Linux allows no user.* xattrs on symlinks; a layer made elsewhere may carry them.
                if not (symlink and e.errno in (errno.EPERM, errno.ENOTSUP)):
                    raise
        if not info.isdir():
            ns = _mtime_ns(info)
            os.utime(target, ns=(ns, ns), follow_symlinks=not nofollow)

    # -- whiteouts

    def whiteout(self, parent_parts: Parts, name: str) -> None:
        self.whiteouts += 1
        if name.startswith(AUFS_META_PREFIX) and name != OPAQUE_MARKER:
            return
        # Docker's and containerd's appliers make a whiteout's missing parents, as for any entry (not in place,
        # where nothing is made that the layer does not name).
        parent = self.resolver.resolve_dir(parent_parts, create=self.mode == "overlay" or self.skip is None)
        if parent is None:
            return  # nothing there to hide
        if self.skip is not None and self.skip("/".join(parent)):
            return
        if name == OPAQUE_MARKER:
            # What this layer did not add goes: the lowers' content in apply mode; in overlay mode what was
            # made here on the way to something else (a whiteout's parent, a directory copied up).
            self.prune_lower(parent)
            if self.mode == "overlay" and not parent and self.stacked:
                # overlayfs takes no opaque root: every name the lowers show there is whited out instead, and
                # this layer's own directories there become opaque.
                for lower_name in self.resolver.lower_names(()):
                    host = self.resolver.host((lower_name,))
                    st = _lstat(host)
                    if st is None:
                        os.mknod(host, stat.S_IFCHR, os.makedev(0, 0))
                    elif stat.S_ISDIR(st.st_mode):
                        os.setxattr(host, overlayattrs.opaque(), b"y")
            elif self.mode == "overlay":
                os.setxattr(self.resolver.host(parent), overlayattrs.opaque(), b"y")
            self.resolver.invalidate()
            return
        hidden = name[len(WHITEOUT_PREFIX) :]
        if not hidden or hidden in (".", "..") or "/" in hidden:
            raise ImageFormatError(f"bad whiteout name {name!r}")
        real = (*parent, hidden)
        if self.skip is not None and self.skip("/".join(real)):
            return
        host = self.resolver.host(real)
        st = _lstat(host)
        if self.is_ours(real):
            # Re-created by this layer: only what lower layers had under it goes.
            if st is not None and stat.S_ISDIR(st.st_mode):
                if self.mode == "overlay":
                    os.setxattr(host, overlayattrs.opaque(), b"y")
                    self.resolver.invalidate()
                else:
                    self.prune_lower(real)
            return
        if self.mode == "overlay":
            if st is not None and not is_whiteout_device(st):
                # Not this layer's content: a directory made on the way to a whiteout, or copied up. Gone too.
                self.remove(host, st)
                st = None
            # Stacked: only where the lowers show something (a whiteout over nothing is a name in readdir).
            if st is None and (not self.stacked or self.resolver.lower_entry(real) is not None):
                os.mknod(host, stat.S_IFCHR | 0o000, os.makedev(0, 0))
                self.whited.add(real)
        elif st is not None:
            self.remove(host, st)

    def prune_lower(self, directory: Parts) -> None:
        """Remove everything under ``directory`` that this layer did not add."""

        def visit(fd: int, path: list[str]) -> list[str]:
            ours = []
            for child in os.listdir(fd):
                real = (*directory, *path, child)
                st = os.lstat(child, dir_fd=fd)
                if self.skip is not None and self.skip("/".join(real)):
                    continue
                if not self.is_ours(real):
                    self.remove(child, st, dir_fd=fd)
                elif stat.S_ISDIR(st.st_mode):
                    ours.append(child)
            return ours

        _walk_down(self.resolver.host(directory), visit, lambda fd, name: None)

    def finish(self) -> None:
        # Directory mtimes last: creating their content changed them. Only where the directory still is
        # what it was (a later entry may have replaced a parent with a symlink). Directories copied up from
        # the lowers keep the lower's, unless the layer gave one.
        for real, ns in {**self.resolver.copied_up, **self.dir_mtimes}.items():
            try:
                if self.resolver.resolve_dir(real, create=False) != real:
                    continue
            except ImageFormatError:  # a later entry replaced it (or a parent) with a file
                continue
            os.utime(self.resolver.host(real), ns=(ns, ns), follow_symlinks=False)


def _copy_up(lower: str, st: os.stat_result, host: str) -> None:
    """Copy the non-directory ``lower`` (lstat ``st``; a file of a lower layer, in kiln's store) to ``host`` in
    the layer's directory with its owner, mode, xattrs and mtime, as overlayfs copies a file up."""
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(lower), host)
    elif stat.S_ISREG(st.st_mode):
        src = os.open(lower, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            dst = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                while chunk := os.read(src, _CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(dst, view) :]
            finally:
                os.close(dst)
        finally:
            os.close(src)
    else:  # devices, FIFOs, sockets
        os.mknod(host, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev)
    owners.chown(host, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(host, stat.S_IMODE(st.st_mode))
    copy_xattrs(lower, host)
    os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def member_names(src: Readable, *, label: str = "archive") -> list[str]:
    """The entry names of the tar in ``src`` (plain or compressed), in order, read as extract_layer reads them.

    For callers that need an archive's names besides extracting it: tarfile's reader is not safe on hostile
    archives (see TarReader). A malformed archive is a one-line ImageFormatError.
    """
    names = []
    reader = TarReader(open_decompressed(src))
    try:
        while (info := reader.next()) is not None:
            names.append(info.name)
    except (tarfile.TarError, EOFError) as e:
        raise ImageFormatError(_one_line(f"{label}: corrupt or truncated tar: {e}")) from e
    return names


def extract_layer(
    src: Readable,
    root: Path,
    *,
    mode: ExtractMode = "apply",
    label: str = "layer",
    skip: SkipFn | None = None,
    lowers: Sequence[Path] | None = None,
) -> ExtractStats:
    """Extract the layer tar in ``src`` (plain or gzip/zstd/bzip2/xz compressed) onto ``root`` (made if missing).

    We run as root: owners are set numerically, modes with setuid/setgid/sticky, xattrs including
    security.capability. ``label`` names the layer (or archive) in error messages. A malformed or truncated
    layer is ImageFormatError naming the entry being extracted; an entry that would land outside ``root``
    UnsafePathError (raised before anything outside is touched). ``skip``: see the module docstring.

    ``lowers`` (overlay mode): the directories of the layers this one will be stacked on, top first. Paths are
    then resolved in the view they make with this layer (symlinks of lower layers followed, their directories
    copied up, a hardlink to a lower layer's file copying it up), so the stacked result is the one apply mode
    gives on the whole root (see kiln.rootfs.resolver); ``[]`` for a bottom layer. Without them (None), a
    layer is read on its own.
    """
    if mode not in ("apply", "overlay", "archive"):
        raise ValueError(f"unknown extract mode {mode!r}")
    os.makedirs(root, exist_ok=True)
    extractor = _Extractor(os.fspath(root), mode, skip, None if lowers is None else [os.fspath(p) for p in lowers])
    stream = _ReadAhead(src)
    current = "(start of the archive)"
    try:
        reader = TarReader(stream)
        while (info := reader.next()) is not None:
            current = info.name
            extractor.apply(reader, info)
        current = "(end of the archive)"
        stream.drain()
        extractor.finish()
    # The blob's own failures (it did not download, or not to its digest) are the source's, not the tar's.
    except (DigestMismatch, RegistryError):
        raise
    # Messages are one line whatever the names in them (the command line prints one line per error).
    except UnsafePathError as e:
        raise UnsafePathError(_one_line(f"{label}: {current}: {e}")) from e
    except ImageFormatError as e:
        raise ImageFormatError(_one_line(f"{label}: {current}: {e}")) from e
    except (tarfile.TarError, EOFError) as e:
        raise ImageFormatError(_one_line(f"{label}: {current}: corrupt or truncated tar: {e}")) from e
    except OSError as e:
        raise ExtractError(_one_line(f"{label}: {current}: {e}")) from e
    finally:
        stream.close()
    return ExtractStats(
        entries=extractor.entries,
        content_bytes=extractor.content_bytes,
        whiteouts=extractor.whiteouts,
        diff_id="sha256:" + stream.sha.hexdigest(),
    )
