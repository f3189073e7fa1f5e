"""Extracting a layer tar onto a root, safely, in one of two shapes.

mode "apply": the root is the whole filesystem so far (one directory); whiteouts delete from it. A whiteout
only removes what lower layers put there, never what this same layer adds (OCI image spec), whatever the
order of the entries: what this layer added is tracked, and an opaque directory or a whited-out directory
this layer re-creates keeps this layer's entries.

mode "overlay": the root is an empty directory for this layer alone, later stacked by overlayfs as a
lowerdir; whiteouts are written in overlayfs' own terms: ``.wh.name`` becomes a character device 0/0 named
``name``, ``.wh..wh..opq`` sets trusted.overlay.opaque=y on its directory (and a directory this layer both
whites out and re-creates becomes opaque).

Safety: entry names and hardlink targets that are absolute or climb out with ".." are refused, and every
parent path is resolved inside the root the way a chrooted process would see it (see safepath), so nothing
outside the root is ever created, written, linked or removed. overlayfs' own xattrs in a layer are ignored,
so a layer cannot steer the overlay mount (redirects, metacopy).

Reading: layers are hostile input, so the tar stream is read by kiln's own reader (``_TarReader``), not
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

import errno
import hashlib
import os
import re
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kiln.errors import ImageFormatError, KilnError, UnsafePathError
from kiln.layers.compress import Readable, open_decompressed
from kiln.layers.paths import (
    AUFS_META_PREFIX,
    OPAQUE_MARKER,
    OVERLAY_OPAQUE_XATTR,
    WHITEOUT_PREFIX,
    XATTR_PAX_PREFIX,
    is_layer_xattr,
    split_image_path,
)
from kiln.layers.safepath import Parts, RootResolver

ExtractMode = Literal["apply", "overlay"]
_CHUNK = 1 << 20


class ExtractError(KilnError):
    """The file system refused a change while a layer was extracted (no space, no permission, ...)."""


@dataclass(frozen=True)
class ExtractStats:
    entries: int
    content_bytes: int
    whiteouts: int
    diff_id: str  # sha256 of the uncompressed tar, for checking against the image config


class _HashingReader:
    def __init__(self, inner: Readable) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self.sha.update(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


# What an archive's metadata may make the reader hold or walk through. Go's archive/tar (Docker's and
# containerd's reader) refuses PAX headers, GNU long names and sparse maps over 1 MiB too.
_MAX_SPECIAL = 1 << 20
_MAX_EXTENDED = 16  # extended headers (PAX, GNU long name or link) in a row before one entry
_BLOCK = tarfile.BLOCKSIZE
_ZEROS = bytes(_BLOCK)
_PAX_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
_LONG_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
# Types that never have data, whatever their size field says (as in tarfile and Go's archive/tar).
_HEADER_ONLY = (tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE)
_PAX_TIME = re.compile(r"-?[0-9]{1,19}(\.[0-9]*)?")
_PAX_NAME_KEYS = ("path", "linkpath", "uname", "gname")


class _Member(tarfile.TarInfo):
    """One entry, as the reader found it. ``segments``: a sparse file's (offset, length) pieces of data, in the
    order their bytes follow the header; everything else in the file (``size`` bytes) is a hole."""

    __slots__ = ("segments",)

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self.segments: list[tuple[int, int]] | None = None


def _bad(message: str) -> tarfile.ReadError:
    return tarfile.ReadError(f"bad header: {message}")


def _number(field: bytes) -> int:
    """A tar number field: octal digits, or base-256 (first byte 0x80, or 0xff for a negative number)."""
    if field[:1] in (b"\x80", b"\xff"):
        n = int.from_bytes(field[1:], "big")
        return n - 256 ** (len(field) - 1) if field[0] == 0xFF else n
    digits = field.split(b"\0", 1)[0].strip(b" ")
    if digits and not all(48 <= c <= 55 for c in digits):  # not str.isdigit: no 8, 9 or unicode digits
        raise _bad(f"number field {field!r}")
    return int(digits, 8) if digits else 0


def _pax_int(key: str, value: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise _bad(f"PAX {key} {value!r}")
    return int(value)


def _pax_records(data: bytes) -> list[tuple[str, str]]:
    """The records of a PAX header body ("<length> <key>=<value>\n" each), in order; anything else is an error.

    (Linear: tarfile's own parser can take quadratic time on a body of digits, CVE-2024-6232, and stops silently
    at the first record it does not understand.)
    """
    records = []
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos, pos + 21)
        digits = data[pos:space] if space > pos else b""
        if not digits.isdigit():
            raise _bad("PAX record length")
        end = pos + int(digits)
        if end <= space + 1 or end > len(data) or data[end - 1] != 0x0A:
            raise _bad("PAX record length")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq or not key or b"\0" in key:
            raise _bad(f"PAX record key {key!r}")
        name = key.decode("utf-8", "surrogateescape")
        if name in _PAX_NAME_KEYS and b"\0" in value:
            raise _bad(f"NUL in PAX {name}")
        records.append((name, value.decode("utf-8", "surrogateescape")))
        pos = end
    return records


def _check_sparse(segments: list[tuple[int, int]], size: int, stored: int) -> list[tuple[int, int]]:
    """The segments of a sparse file, if they make sense: in order, not overlapping, inside ``size``, and
    using exactly the ``stored`` bytes of data that follow the header (as Go's archive/tar checks)."""
    end = 0
    for offset, length in segments:
        if offset < 0 or length < 0 or offset < end or offset + length > size:
            raise _bad("invalid sparse map")
        end = offset + length
    if size < 0 or sum(length for _, length in segments) != stored:
        raise _bad("invalid sparse map")
    return segments


class _TarReader:
    """Reads a tar stream entry by entry, never seeking: ustar, GNU and PAX headers, GNU sparse files.

    Written for hostile input rather than using tarfile's reader, whose parser can be made to raise anything
    (ValueError, IndexError, RecursionError), to loop for ever on a lying size, to take quadratic time on a PAX
    header, or to hold an arbitrarily large header in memory. Here every malformed or truncated header is a
    tarfile.ReadError; extended headers are bounded (``_MAX_SPECIAL``, ``_MAX_EXTENDED``); data is read in
    pieces. Like tarfile, a corrupt header anywhere is an error (tarfile silently ends the archive at one after
    the first), and like Go's archive/tar, an archive that ends on a block boundary without its end-of-archive
    blocks is accepted and global PAX headers are read but ignored.
    """

    def __init__(self, stream: Readable) -> None:
        self.stream = stream
        self.started = False
        self.data_left = 0  # bytes of the current entry's data not read yet
        self.padding = 0  # and of the padding after it

    def _read(self, n: int) -> bytes:
        parts = []
        while n > 0:
            chunk = self.stream.read(min(n, _CHUNK))
            if not chunk:
                break
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def _exactly(self, n: int) -> bytes:
        data = self._read(n)
        if len(data) != n:
            raise tarfile.ReadError("unexpected end of data")
        return data

    def _skip(self, n: int) -> None:
        while n > 0:
            chunk = self.stream.read(min(n, _CHUNK))
            if not chunk:
                raise tarfile.ReadError("unexpected end of data")
            n -= len(chunk)

    def read_data(self, n: int) -> bytes:
        """Up to ``n`` bytes of the current entry's data; b"" once it is all read."""
        n = min(n, self.data_left)
        if n <= 0:
            return b""
        chunk = self.stream.read(n)
        if not chunk:
            raise tarfile.ReadError("unexpected end of data")
        self.data_left -= len(chunk)
        return chunk

    def _special(self, member: _Member) -> bytes:
        """The data of an extended header, whole (it is small: at most _MAX_SPECIAL)."""
        if not 0 <= member.size <= _MAX_SPECIAL:
            raise _bad(f"extended header of {member.size} bytes")
        data = self._exactly(member.size)
        self._skip(-member.size % _BLOCK)
        return data

    def next(self) -> _Member | None:
        """The next entry's header, after skipping what is left of the current entry's data; None at the end."""
        self._skip(self.data_left + self.padding)
        self.data_left = self.padding = 0
        pax: dict[str, str] = {}
        sparse_map: list[str] = []  # GNU sparse 0.0: repeated offset/numbytes records
        long_name: str | None = None
        long_link: str | None = None
        for _ in range(_MAX_EXTENDED + 1):
            block = self._read(_BLOCK)
            if not block:
                if not self.started:
                    raise tarfile.ReadError("empty file")
                if pax or long_name is not None or long_link is not None:
                    raise tarfile.ReadError("unexpected end of data")
                return None  # ends on a block boundary without the end-of-archive blocks: accepted, as Go does
            self.started = True
            if len(block) < _BLOCK:
                raise tarfile.ReadError("truncated header")
            if block == _ZEROS:
                if pax or long_name is not None or long_link is not None:
                    raise _bad("end of archive after an extended header")
                return None
            try:
                member = _Member.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError as e:
                raise _bad(str(e)) from None
            if member.type in _PAX_TYPES:
                records = _pax_records(self._special(member))
                if member.type == tarfile.XGLTYPE:
                    continue  # global headers: read, checked, ignored (as Docker does)
                for key, value in records:
                    if key in ("GNU.sparse.offset", "GNU.sparse.numbytes"):
                        _pax_int(key, value)
                        sparse_map.append(value)
                    else:
                        pax[key] = value
                continue
            if member.type in _LONG_TYPES:
                value = self._special(member).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                if member.type == tarfile.GNUTYPE_LONGNAME:
                    long_name = value
                else:
                    long_link = value
                continue
            break
        else:
            raise _bad("too many extended headers in a row")
        if sparse_map:
            pax["GNU.sparse.map"] = ",".join(sparse_map)
        self._merge(member, block, pax, long_name, long_link)
        return member

    def _merge(
        self, member: _Member, block: bytes, pax: dict[str, str], long_name: str | None, long_link: str | None
    ) -> None:
        """Apply the extended headers to ``member``, read a sparse map, and set up reading its data."""
        if long_name is not None:
            member.name = long_name.removesuffix("/") if member.isdir() else long_name
        if long_link is not None:
            member.linkname = long_link
        for key, value in pax.items():
            if key == "path":
                member.name = value.rstrip("/")
            elif key == "linkpath":
                member.linkname = value
            elif key == "size":
                member.size = _pax_int(key, value)
            elif key in ("uid", "gid"):
                setattr(member, key, _pax_int(key, value))
            elif key == "mtime":
                match = _PAX_TIME.fullmatch(value)
                if match is None:
                    raise _bad(f"PAX mtime {value!r}")
                member.mtime = float(value) if match.group(1) else int(value)
            elif key in ("uname", "gname"):
                setattr(member, key, value)
        member.pax_headers = pax
        stored = 0 if member.type in _HEADER_ONLY else member.size
        if stored < 0:
            raise _bad(f"negative size {stored}")
        self.data_left, self.padding = stored, -stored % _BLOCK
        if member.type == tarfile.GNUTYPE_SPARSE:
            member.segments, member.size = self._old_gnu_sparse(block)
        elif pax.get("GNU.sparse.major") == "1" and pax.get("GNU.sparse.minor") == "0":
            member.segments, member.size = self._sparse_1_0(pax)
        elif "GNU.sparse.map" in pax:
            member.segments, member.size = self._sparse_0_x(pax)
        if member.segments is not None:
            if pax.get("GNU.sparse.name"):
                member.name = pax["GNU.sparse.name"]
            if member.type in _HEADER_ONLY:
                raise _bad("a sparse map on an entry without data")
            member.segments = _check_sparse(member.segments, member.size, self.data_left)

    def _old_gnu_sparse(self, block: bytes) -> tuple[list[tuple[int, int]], int]:
        """Old GNU format (type S): 4 (offset, length) pairs in the header, 21 in each extension block."""

        def pairs(area: bytes, count: int) -> list[tuple[int, int]]:
            out = []
            for i in range(count):
                entry = area[24 * i : 24 * i + 24]
                if entry[0] == 0:  # an empty slot ends the list (GNU tar, BSD tar and Go agree)
                    break
                out.append((_number(entry[:12]), _number(entry[12:])))
            return out

        segments = pairs(block[386:482], 4)
        size = _number(block[483:495])
        extended = block[482] != 0
        blocks = 0
        while extended:
            blocks += 1
            if blocks * _BLOCK > _MAX_SPECIAL:
                raise _bad("sparse map over 1 MiB")
            ext = self._exactly(_BLOCK)
            segments += pairs(ext[:504], 21)
            extended = ext[504] != 0
        return segments, size

    def _sparse_0_x(self, pax: dict[str, str]) -> tuple[list[tuple[int, int]], int]:
        """GNU sparse 0.0 and 0.1 (PAX records): "offset,length,..." and the real size."""
        text = pax["GNU.sparse.map"]
        numbers = [_pax_int("GNU.sparse.map", n) for n in text.split(",")] if text else []
        if len(numbers) != 2 * _pax_int("GNU.sparse.numblocks", pax.get("GNU.sparse.numblocks", "")):
            raise _bad("invalid sparse map")
        size = _pax_int("GNU.sparse.size", pax.get("GNU.sparse.size", pax.get("GNU.sparse.realsize", "")))
        return list(zip(numbers[::2], numbers[1::2], strict=True)), size

    def _sparse_1_0(self, pax: dict[str, str]) -> tuple[list[tuple[int, int]], int]:
        """GNU sparse 1.0: the map is at the start of the data, decimal numbers one a line, padded to a block."""
        text = b""
        read = 0
        numbers: list[int] = []
        count: int | None = None
        while count is None or len(numbers) < 2 * count:
            if b"\n" not in text:
                read += _BLOCK
                if self.data_left < _BLOCK or read > _MAX_SPECIAL or len(text) > 19:
                    raise _bad("invalid sparse map")
                text += self._exactly(_BLOCK)
                self.data_left -= _BLOCK  # the map is part of the entry's data, padded to a block
                continue
            line, text = text.split(b"\n", 1)
            if not line.isdigit() or len(line) > 19:
                raise _bad("invalid sparse map")
            if count is None:
                count = int(line)
            else:
                numbers.append(int(line))
        size = _pax_int("GNU.sparse.realsize", pax.get("GNU.sparse.realsize", pax.get("GNU.sparse.size", "")))
        return list(zip(numbers[::2], numbers[1::2], strict=True)), size


def _mtime_ns(info: tarfile.TarInfo) -> int:
    return round(info.mtime * 1_000_000_000)


_MAX_ID = 2**32 - 2  # uid_t and gid_t; 2**32 - 1 is (uid_t)-1, "leave it as it is"
_MAX_DEV = 2**32 - 1
_MAX_MTIME = 2**63 // 1_000_000_000 - 1  # nanoseconds in an int64, as the kernel and Python keep them


def _check_member(info: tarfile.TarInfo) -> None:
    """Refuse what no file system call can take: numbers out of range, NUL in a name (ImageFormatError)."""
    if "\0" in info.name or "\0" in info.linkname:
        raise ImageFormatError("NUL in a name")
    for what, value, top in (("uid", info.uid, _MAX_ID), ("gid", info.gid, _MAX_ID)):
        if not 0 <= value <= top:
            raise ImageFormatError(f"{what} {value} out of range")
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
    def __init__(self, root: str, mode: ExtractMode, skip: SkipFn | None = None) -> None:
        self.root = root
        self.mode = mode
        self.skip = skip
        self.resolver = RootResolver(root)
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

    def apply(self, reader: _TarReader, info: _Member) -> None:
        self.entries += 1
        _check_member(info)
        if info.name.startswith("/"):
            raise UnsafePathError("absolute path in a layer")
        parts = split_image_path(info.name)
        if not parts:
            return  # the root itself: its metadata belongs to whoever made the root
        name = parts[-1]
        if name.startswith(WHITEOUT_PREFIX):
            self.whiteout(parts[:-1], name)
            return
        if self.skipped(parts[:-1], name):
            return
        parent = self.resolver.resolve_dir(parts[:-1], create=True)
        assert parent is not None
        real = (*parent, name)
        host = self.resolver.host(real)
        existing = _lstat(host)
        if info.isdir():
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                self.remove(host, existing)
                existing = None
            if existing is None:
                os.mkdir(host, 0o700)
            self.metadata(host, info)
            self.dir_mtimes[real] = _mtime_ns(info)
            if real in self.whited:
                os.setxattr(host, OVERLAY_OPAQUE_XATTR, b"y")
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
                os.mknod(host, kind | 0o600, os.makedev(info.devmajor, info.devminor))
                self.metadata(host, info)
            elif info.isfifo():
                os.mkfifo(host, 0o600)
                self.metadata(host, info)
            else:  # regular files, and unknown types, which tar readers treat as regular files
                self.regular(reader, host, info)
        self.mark_added(real)

    def regular(self, reader: _TarReader, host: str, info: _Member) -> None:
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
        if info.linkname.startswith("/"):
            raise UnsafePathError(f"hardlink to absolute path {info.linkname!r}")
        target = split_image_path(info.linkname)
        if not target:
            raise ImageFormatError("hardlink to the root directory")
        tparent = self.resolver.resolve_dir(target[:-1], create=False)
        thost = self.resolver.host((*tparent, target[-1])) if tparent is not None else None
        tst = _lstat(thost) if thost is not None else None
        if thost is None or tst is None:
            raise ImageFormatError(f"hardlink target {info.linkname!r} does not exist")
        if stat.S_ISDIR(tst.st_mode):
            raise ImageFormatError(f"hardlink target {info.linkname!r} is a directory")
        if self.skip is not None and self.skip("/".join((*(tparent or ()), target[-1]))):
            return  # a link to a skipped file would bring that file (not the layer's) into the root
        if existing is not None:
            if (existing.st_dev, existing.st_ino) == (tst.st_dev, tst.st_ino):
                return
            self.remove(host, existing)
        os.link(thost, host, follow_symlinks=False)

    def metadata(self, target: str | int, info: tarfile.TarInfo, *, symlink: bool = False) -> None:
        # chown first: it clears setuid/setgid bits and security.capability.
        nofollow = isinstance(target, str)  # an fd is the file itself; os refuses the flag with one
        os.chown(target, info.uid, info.gid, follow_symlinks=not nofollow)
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
        parent = self.resolver.resolve_dir(parent_parts, create=self.mode == "overlay")
        if parent is None:
            return  # nothing there to hide
        if self.skip is not None and self.skip("/".join(parent)):
            return
        if name == OPAQUE_MARKER:
            if self.mode == "overlay":
                os.setxattr(self.resolver.host(parent), OVERLAY_OPAQUE_XATTR, b"y")
            else:
                self.prune_lower(parent)
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
                    os.setxattr(host, OVERLAY_OPAQUE_XATTR, b"y")
                else:
                    self.prune_lower(real)
            return
        if self.mode == "overlay":
            if st is None:
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
        # what it was (a later entry may have replaced a parent with a symlink).
        for real, ns in self.dir_mtimes.items():
            if self.resolver.resolve_dir(real, create=False) != real:
                continue
            os.utime(self.resolver.host(real), ns=(ns, ns), follow_symlinks=False)


def member_names(src: Readable, *, label: str = "archive") -> list[str]:
    """The entry names of the tar in ``src`` (plain or compressed), in order, read as extract_layer reads them.

    For callers that need an archive's names besides extracting it: tarfile's reader is not safe on hostile
    archives (see _TarReader). A malformed archive is a one-line ImageFormatError.
    """
    names = []
    reader = _TarReader(open_decompressed(src))
    try:
        while (info := reader.next()) is not None:
            names.append(info.name)
    except (tarfile.TarError, EOFError) as e:
        raise ImageFormatError(_one_line(f"{label}: corrupt or truncated tar: {e}")) from e
    return names


def extract_layer(
    src: Readable, root: Path, *, mode: ExtractMode = "apply", label: str = "layer", skip: SkipFn | None = None
) -> ExtractStats:
    """Extract the layer tar in ``src`` (plain or gzip/zstd/bzip2/xz compressed) onto ``root`` (made if missing).

    We run as root: owners are set numerically, modes with setuid/setgid/sticky, xattrs including
    security.capability. ``label`` names the layer in error messages. A malformed or truncated layer is
    ImageFormatError naming the entry being extracted; an entry that would land outside ``root``
    UnsafePathError (raised before anything outside is touched). ``skip``: see the module docstring.
    """
    if mode not in ("apply", "overlay"):
        raise ValueError(f"unknown extract mode {mode!r}")
    os.makedirs(root, exist_ok=True)
    extractor = _Extractor(os.fspath(root), mode, skip)
    stream = _HashingReader(open_decompressed(src))
    current = "(start of the archive)"
    try:
        reader = _TarReader(stream)
        while (info := reader.next()) is not None:
            current = info.name
            extractor.apply(reader, info)
        current = "(end of the archive)"
        stream.drain()
        extractor.finish()
    # Messages are one line whatever the names in them (the command line prints one line per error).
    except UnsafePathError as e:
        raise UnsafePathError(_one_line(f"{label}: {current}: {e}")) from e
    except ImageFormatError as e:
        raise ImageFormatError(_one_line(f"{label}: {current}: {e}")) from e
    except (tarfile.TarError, EOFError) as e:
        raise ImageFormatError(_one_line(f"{label}: {current}: corrupt or truncated tar: {e}")) from e
    except OSError as e:
        raise ExtractError(_one_line(f"{label}: {current}: {e}")) from e
    return ExtractStats(
        entries=extractor.entries,
        content_bytes=extractor.content_bytes,
        whiteouts=extractor.whiteouts,
        diff_id="sha256:" + stream.sha.hexdigest(),
    )
