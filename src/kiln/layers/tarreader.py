"""Reading a tar stream as a layer or an archive must be read when it may be hostile: one pass, in order, with
Go's archive/tar checks (Docker's and containerd's reader) and limits, never buffering more than 1 MiB of
metadata, in time linear in the input.

Python's tarfile is not used to read: on hostile input it hangs (quadratic PAX parsing, CVE-2024-6232; a huge
size skipped forever), recurses, or raises errors of every type. Members are tarfile.TarInfo objects, so the
extractor handles them as it would tarfile's.
"""

from __future__ import annotations

import re
import tarfile

from kiln.layers.compress import Readable

CHUNK = 1 << 20

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


class Member(tarfile.TarInfo):
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


class TarReader:
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
            chunk = self.stream.read(min(n, CHUNK))
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
            chunk = self.stream.read(min(n, CHUNK))
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

    def _special(self, member: Member) -> bytes:
        """The data of an extended header, whole (it is small: at most _MAX_SPECIAL)."""
        if not 0 <= member.size <= _MAX_SPECIAL:
            raise _bad(f"extended header of {member.size} bytes")
        data = self._exactly(member.size)
        self._skip(-member.size % _BLOCK)
        return data

    def next(self) -> Member | None:
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
                member = Member.frombuf(block, "utf-8", "surrogateescape")
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
        self, member: Member, block: bytes, pax: dict[str, str], long_name: str | None, long_link: str | None
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
