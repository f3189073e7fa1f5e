"""Hostile layer tars for kiln's extractor: hypothesis strategies, and the property each one must satisfy.

An archive is drawn as a spec (``HostileTar``: operations, an ending, a cut, a compression) and rendered to bytes
once the sandbox's host paths are known, so that links can aim at real host paths beside the root (``HostPath``)
and failures print as readable specs rather than bytes. ``hostile_archives(host)`` draws the rendered bytes.

What the operations cover:

- names: ``..`` (leading, inner, trailing), absolute, ``//``, ``./``, trailing slashes, empty components, control
  characters, line separators, invalid UTF-8, NUL (in PAX records), 255/256-byte components, paths deeper than
  Python's recursion limit; names stored in ustar, ustar prefix, PAX ``path`` and GNU ``L`` records;
- symlinks: absolute (host paths beside the root, outside the test directory, ``/``), relative, climbing with
  ``../../..``, chains, loops, a symlink to a directory followed by members written through it, a symlink replaced
  by a directory and the other way round;
- hardlinks: to host paths, to climbing paths, to symlinks, to directories, to later and to missing members, to
  themselves;
- character and block devices (odd and out-of-range numbers), FIFOs, unknown type flags;
- duplicate and conflicting entries (file then directory of one name, directory then file, ...);
- whiteouts (``.wh.name``, ``.wh..wh..opq``, ``.wh..``, aufs metadata) at the root, under symlinks, in deep trees;
- PAX headers: huge (a few hundred KB), malformed (bad lengths, digits runs, missing ``=``), global, chained,
  with out-of-range numbers (``nan``, ``inf``, negative ids), xattrs (overlayfs', capabilities, NUL in the key),
  ``hdrcharset``; GNU long names and links, chained;
- sparse entries: old GNU (type ``S``, extension blocks, truncated), PAX 0.0, 0.1 and 1.0, with overlapping,
  negative, huge and garbage maps and huge holes;
- size lies (the header says more, or less, or a negative or base-256 size), junk blocks, bad checksums, missing
  end blocks, archives cut anywhere, gzip and zstd compression.

``Bomb`` is a small compressed stream whose uncompressed content is large (at most ~200 MB): file content, the
data of an entry the extractor skips, a PAX header, a GNU long name, trailing data after the end of the archive.

The property (``check_extraction``): extraction either succeeds or raises a KilnError whose message is one line;
nothing outside the root changes (the sandbox beside the root, a sentinel directory elsewhere under /tmp,
/etc/passwd); the root stays a directory; no device node appears outside the root (the extractor creates device
nodes as root on purpose: images carry them); and it does not hang.
"""

from __future__ import annotations

import bz2
import dataclasses
import hashlib
import io
import os
import signal
import stat
import tarfile
import tempfile
import traceback
import tracemalloc
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import zstandard
from hypothesis import strategies as st

from kiln.errors import KilnError
from kiln.layers import extract_layer

BLOCK = 512
MTIME = 1_600_000_000
MiB = 1 << 20

# --- rendering ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostPath:
    """A host path known only when the sandbox exists: ``key`` (see Host.paths) plus ``suffix``.

    ``up=None`` renders it absolute; ``up=k`` relative, climbing from the root with enough ``..`` to reach the
    host's ``/`` from k directories below the root.
    """

    key: str
    suffix: str = ""
    up: int | None = None


Name = str | HostPath


@dataclass(frozen=True)
class Host:
    """Absolute host paths that archives may aim at, and how many directories the root is below ``/``."""

    paths: Mapping[str, str]
    root_depth: int

    def path(self, name: Name) -> str:
        if isinstance(name, str):
            return name
        path = self.paths[name.key] + ("/" + name.suffix if name.suffix else "")
        if name.up is None:
            return path
        return "../" * (self.root_depth + name.up) + path.lstrip("/")

    def encode(self, name: Name) -> bytes:
        return self.path(name).encode("utf-8", "surrogateescape")


HOST_KEYS = ("outside", "victim", "outside_dir", "outside_link", "sentinel", "sentinel_victim", "box", "root")


def _num(n: int, width: int) -> bytes:
    """A tar number field: octal when it fits, else base-256 (as GNU tar writes it; negative too)."""
    if 0 <= n < 8 ** (width - 1):
        return b"%0*o\0" % (width - 1, n)
    span = 256 ** (width - 1)
    if n >= 0:
        return b"\x80" + (n % span).to_bytes(width - 1, "big")
    return b"\xff" + ((span + n) % span).to_bytes(width - 1, "big")


def header(
    name: bytes,
    typeflag: bytes = tarfile.REGTYPE,
    *,
    size: int = 0,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: int = MTIME,
    link: bytes = b"",
    dev: tuple[int, int] = (0, 0),
    prefix: bytes = b"",
    gnu: bytes | None = None,
    bad_checksum: bool = False,
) -> bytes:
    """One 512-byte header. ``gnu``: the old GNU format's bytes 345-500 (sparse structs etc.), magic "ustar  "."""
    buf = bytearray(BLOCK)

    def put(offset: int, width: int, value: bytes) -> None:
        value = value[:width]
        buf[offset : offset + len(value)] = value

    put(0, 100, name)
    put(100, 8, _num(mode, 8))
    put(108, 8, _num(uid, 8))
    put(116, 8, _num(gid, 8))
    put(124, 12, _num(size, 12))
    put(136, 12, _num(mtime, 12))
    put(148, 8, b" " * 8)
    put(156, 1, typeflag or b"\0")
    put(157, 100, link)
    put(265, 32, b"root")
    put(297, 32, b"root")
    put(329, 8, _num(dev[0], 8))
    put(337, 8, _num(dev[1], 8))
    if gnu is not None:
        put(257, 8, b"ustar  \0")
        put(345, 155, gnu)
    else:
        put(257, 8, b"ustar\x0000")
        put(345, 155, prefix)
    checksum = sum(buf) + (1 if bad_checksum else 0)
    put(148, 8, b"%06o\0 " % checksum)
    return bytes(buf)


def padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % BLOCK)


def pax_record(key: bytes, value: bytes) -> bytes:
    """One well-formed PAX record: "<length> <key>=<value>\\n", the length counting itself."""
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def pax_block(records: bytes, typeflag: bytes = tarfile.XHDTYPE, size_lie: int = 0) -> bytes:
    return header(b"PaxHeaders/x", typeflag, size=len(records) + size_lie) + padded(records)


def gnu_long(typeflag: bytes, value: bytes, size_lie: int = 0) -> bytes:
    return header(b"././@LongLink", typeflag, size=len(value) + size_lie) + padded(value)


def _brief(value: object) -> str:
    """repr, with long strings shown as what they repeat or cut short (PAX values of 300 KB...)."""
    if isinstance(value, (str, bytes)) and len(value) > 64:
        for unit in range(1, 5):
            piece = value[:unit]
            if piece * (len(value) // unit) + value[: len(value) % unit] == value:  # type: ignore[operator]
                return f"{piece!r}*{len(value) // unit}" + (
                    f"+{value[: len(value) % unit]!r}" if len(value) % unit else ""
                )
        return f"{value[:40]!r}...<{len(value)}>"
    if isinstance(value, tuple):
        return "(" + ", ".join(_brief(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


class _Spec:
    """Readable reprs for specs (in hypothesis' reports too): long values abbreviated, defaults left out."""

    def __repr__(self) -> str:
        args = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.default is not dataclasses.MISSING and value == f.default:
                continue
            args.append(f"{f.name}={_brief(value)}")
        return f"{type(self).__name__}({', '.join(args)})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


_FLAGS = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "chr": tarfile.CHRTYPE,
    "blk": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


@dataclass(frozen=True, repr=False)
class Member(_Spec):
    """One entry. ``long``: how a name or link over 100 bytes is stored (pax, gnu, prefix or cut at 100)."""

    kind: str
    name: Name
    link: Name = ""
    data: bytes = b""
    size_lie: int = 0  # the header's size is len(data) + size_lie; len(data) bytes follow
    typeflag: bytes | None = None  # overrides the kind's flag
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = MTIME
    dev: tuple[int, int] = (0, 0)
    long: str = "pax"
    pax: tuple[tuple[bytes, bytes], ...] = ()  # extra PAX records for this member

    def render(self, host: Host) -> bytes:
        name, link = host.encode(self.name), host.encode(self.link)
        records = list(self.pax)
        before = b""
        prefix = b""
        if len(name) > 100:
            if self.long == "pax":
                records.insert(0, (b"path", name))
            elif self.long == "gnu":
                before += gnu_long(tarfile.GNUTYPE_LONGNAME, name + b"\0")
            elif self.long == "prefix":
                cut = name.rfind(b"/", 0, 156)
                if cut > 0 and len(name) - cut - 1 <= 100:
                    prefix, name = name[:cut], name[cut + 1 :]
        if len(link) > 100:
            if self.long == "pax":
                records.append((b"linkpath", link))
            elif self.long == "gnu":
                before += gnu_long(tarfile.GNUTYPE_LONGLINK, link + b"\0")
        if records:
            before = pax_block(b"".join(pax_record(k, v) for k, v in records)) + before
        flag = self.typeflag if self.typeflag is not None else _FLAGS[self.kind]
        head = header(
            name,
            flag,
            size=len(self.data) + self.size_lie,
            mode=self.mode,
            uid=self.uid,
            gid=self.gid,
            mtime=self.mtime,
            link=link,
            dev=self.dev,
            prefix=prefix,
        )
        return before + head + padded(self.data)


@dataclass(frozen=True, repr=False)
class Extended(_Spec):
    """A PAX (x, g, X) or GNU long name/link (L, K) header with a raw body, for the following member."""

    typeflag: bytes
    body: bytes
    size_lie: int = 0

    def render(self, host: Host) -> bytes:
        return header(b"././@Ext", self.typeflag, size=len(self.body) + self.size_lie) + padded(self.body)


@dataclass(frozen=True, repr=False)
class OldSparse(_Spec):
    """An old GNU sparse file (type S): four structs in the header, 21 per extension block.

    ``more_blocks``: extension blocks announced beyond the structs (the archive may end inside them).
    """

    name: Name
    structs: tuple[tuple[int, int], ...]
    realsize: int
    data: bytes
    size_lie: int = 0
    more_blocks: int = 0

    def render(self, host: Host) -> bytes:
        structs = list(self.structs)

        def area(chunk: list[tuple[int, int]], extended: bool, count: int) -> bytes:
            out = b"".join(_num(o, 12) + _num(n, 12) for o, n in chunk)
            return out.ljust(24 * count, b"\0") + (b"\1" if extended else b"\0")

        head_structs, rest = structs[:4], structs[4:]
        blocks = [rest[i : i + 21] for i in range(0, len(rest), 21)] + [[]] * self.more_blocks
        gnu = b"\0" * 41 + area(head_structs, bool(blocks), 4) + _num(self.realsize, 12)
        out = [header(host.encode(self.name), tarfile.GNUTYPE_SPARSE, size=len(self.data) + self.size_lie, gnu=gnu)]
        for i, chunk in enumerate(blocks):
            out.append(area(chunk, i + 1 < len(blocks), 21).ljust(BLOCK, b"\0"))
        return b"".join(out) + padded(self.data)


@dataclass(frozen=True, repr=False)
class PaxSparse(_Spec):
    """A GNU sparse file in PAX terms: format "0.0", "0.1" or "1.0"; ``map_text`` overrides the encoded map."""

    fmt: str
    name: Name
    structs: tuple[tuple[int, int], ...]
    realsize: int
    data: bytes
    map_text: bytes | None = None
    size_lie: int = 0

    def render(self, host: Host) -> bytes:
        name = host.encode(self.name)
        flat = [str(x).encode() for pair in self.structs for x in pair]
        records: list[tuple[bytes, bytes]] = []
        data = self.data
        member_name = name
        count = (b"GNU.sparse.numblocks", b"%d" % len(self.structs))
        if self.fmt == "0.0":
            records += [(b"GNU.sparse.size", b"%d" % self.realsize), count]
            for o, n in self.structs:
                records += [(b"GNU.sparse.offset", b"%d" % o), (b"GNU.sparse.numbytes", b"%d" % n)]
        elif self.fmt == "0.1":
            text = self.map_text if self.map_text is not None else b",".join(flat)
            records += [(b"GNU.sparse.size", b"%d" % self.realsize), count, (b"GNU.sparse.map", text)]
        else:
            records += [(b"GNU.sparse.major", b"1"), (b"GNU.sparse.minor", b"0"), (b"GNU.sparse.name", name)]
            records.append((b"GNU.sparse.realsize", b"%d" % self.realsize))
            text = b"\n".join([b"%d" % len(self.structs), *flat]) + b"\n"
            if self.map_text is not None:
                text = self.map_text
            data = padded(text) + data
            member_name = b"GNUSparseFile.0/" + name[-80:]
        if len(member_name) > 100:
            records.insert(0, (b"path", member_name))
        body = b"".join(pax_record(k, v) for k, v in records)
        return pax_block(body) + header(member_name[:100], size=len(data) + self.size_lie) + padded(data)


@dataclass(frozen=True, repr=False)
class Raw(_Spec):
    """Bytes as they are: junk blocks, zero blocks, a header with a bad checksum."""

    data: bytes

    def render(self, host: Host) -> bytes:
        return self.data


Op = Member | Extended | OldSparse | PaxSparse | Raw


@dataclass(frozen=True, repr=False)
class HostileTar(_Spec):
    ops: tuple[Op, ...]
    ending: str = "zeros"  # zeros (two zero blocks), one (one zero block), none, junk
    cut_permille: int | None = None  # keep only this share of the bytes
    compression: str = "none"

    def render(self, host: Host) -> bytes:
        data = b"".join(op.render(host) for op in self.ops)
        data += {"zeros": b"\0" * 1024, "one": b"\0" * BLOCK, "none": b"", "junk": b"junk" * 128}[self.ending]
        if self.cut_permille is not None:
            data = data[: len(data) * self.cut_permille // 1000]
        return compress(data, self.compression)


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        c = zlib.compressobj(6, zlib.DEFLATED, 31)
        return c.compress(data) + c.flush()
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    if compression == "bzip2":
        return bz2.compress(data)
    return data


# --- strategies --------------------------------------------------------------------------------------------

SIMPLE = ("a", "b", "d", "s", "victim", "outside", "etc", "root", "box", "dir")
DOTS = ("..", ".", "")
WHITEOUTS = (".wh.a", ".wh.b", ".wh.d", ".wh.s", ".wh.victim", ".wh..wh..opq", ".wh..", ".wh.", ".wh...",
             ".wh..wh.plnk", ".wh..wh..opq/x")  # fmt: skip
WEIRD = ("a\nb", "tab\tx", "cr\rx", "line\u2028sep", "\x1c", "é文🙂", "\udcff\udcfe", " ", "-", "a" * 255, "b" * 256,
         "nul\x00x", "\\", "*", "~")  # fmt: skip

components = st.one_of(
    st.sampled_from(SIMPLE), st.sampled_from(DOTS), st.sampled_from(WHITEOUTS), st.sampled_from(WEIRD)
)


@st.composite
def paths(draw: st.DrawFn) -> str:
    """An entry name: a few components, with odd prefixes and suffixes, or a very deep or long path."""
    kind = draw(st.integers(0, 39))
    if kind == 0:
        depth = draw(st.sampled_from([60, 1050]))  # (deep trees are slow to make and remove: rare, not deeper)
        return "d/" * depth + draw(st.sampled_from(["f", "", ".wh.x"]))
    if kind == 1:
        return "/".join(["x" * draw(st.integers(1, 255))] * draw(st.integers(1, 40)))
    comps = draw(st.lists(components, min_size=1, max_size=4))
    prefix = draw(st.sampled_from(["", "", "", "/", "./", "//", "../", "../../", "./../", "/../", "a/../"]))
    suffix = draw(st.sampled_from(["", "", "", "/", "//", "/.", "/.."]))
    return prefix + "/".join(comps) + suffix


host_paths = st.builds(
    HostPath,
    key=st.sampled_from(HOST_KEYS),
    suffix=st.sampled_from(["", "", "victim", "dir", "dir/inner", "link", "new", "outside/victim"]),
    up=st.one_of(st.none(), st.integers(0, 3)),
)

link_targets: st.SearchStrategy[Name] = st.one_of(
    paths(),
    host_paths,
    st.sampled_from(
        [
            "/",
            "/etc",
            "/etc/passwd",
            "/tmp",
            "/dev/null",
            "..",
            "../..",
            "../../..",
            "",
            ".",
            "a/../..",
            "/../../../",
            "s",
            "d",
            "a/b",
            "victim",
        ]
    ),  # fmt: skip
    st.builds(
        lambda k, s: "../" * k + s,
        st.integers(1, 40),
        st.sampled_from(["", "outside", "outside/victim", "outside/dir", "root", "box/outside", "tmp", "etc/passwd"]),
    ),
)

size_lies = st.one_of(
    st.just(0),
    st.sampled_from([1, 511, 512, 4096, 1_000_000, 8**11, 2**40, 2**63, 2**70, 2**90, -1, -512, -(2**40)]),
)
ids = st.one_of(st.just(0), st.sampled_from([1000, 65534, 2**21, 2**32 - 2, 2**32 - 1, 2**32, 2**63, -1, -2]))
mtimes = st.one_of(st.just(MTIME), st.sampled_from([0, -1, 2**33, 2**62, 2**80, -(2**62)]))
devs = st.tuples(
    st.sampled_from([0, 1, 7, 8, 4095, 4096, 2**21 - 1, 2**32, -1]),
    st.sampled_from([0, 3, 9, 2**20, 2**32, -1]),
)
modes = st.sampled_from([0o644, 0o755, 0o4755, 0o7777, 0o000, 0o1777, 0o170777, -1])


def _long_value(size: int, fill: bytes) -> bytes:
    return (fill * (size // len(fill) + 1))[:size]


pax_values = st.one_of(
    st.sampled_from([b"", b"0", b"-1", b"-2", b"nan", b"inf", b"-inf", b"1e300", b"1e-300", b"2e9", b"99999999999",
                     b"18446744073709551616", b"abc", b"1.5", b"0x10", b"\xff\xfe", b"a\x00b", b"a\nb", b"1" * 5000]),
    st.builds(_long_value, st.sampled_from([1000, 70_000, 300_000]), st.sampled_from([b"1", b"a", b"/", b"../"])),
)  # fmt: skip
pax_keys = st.sampled_from([
    b"path", b"linkpath", b"size", b"uid", b"gid", b"mtime", b"atime", b"uname", b"comment", b"hdrcharset",
    b"SCHILY.xattr.user.x", b"SCHILY.xattr.trusted.overlay.opaque", b"SCHILY.xattr.trusted.overlay.redirect",
    b"SCHILY.xattr.security.capability", b"SCHILY.xattr.security.selinux", b"SCHILY.xattr.", b"SCHILY.xattr.a\x00b",
    b"SCHILY.xattr.system.posix_acl_access", b"SCHILY.xattr.user." + b"k" * 300, b"GNU.sparse.size",
    b"GNU.sparse.realsize", b"GNU.sparse.map", b"GNU.sparse.name", b"GNU.sparse.major", b"LIBARCHIVE.xattr.user.x",
])  # fmt: skip
pax_records = st.lists(st.tuples(pax_keys, pax_values), max_size=3).map(tuple)

raw_pax_bodies = st.one_of(
    st.sampled_from([
        b"0 a=b\n", b"5 a=b\n", b"99999999999999999999 path=x\n", b"1" * 5000 + b" path=x\n", b"12 path\n",
        b"10 path=x", b"11 path=x\n\n", b"8 =x\n", b"13 path=a\x00b\n", b"12 path=a/b\nXYZ", b"\0" * 600,
        b"23 hdrcharset=\xff\xfe\xfd\n", b"22 hdrcharset=BINARY\n14 path=\xff\n", b"30 GNU.sparse.size=nope\n",
        b"31 GNU.sparse.map=1,x,3\n",
    ]),
    st.builds(_long_value, st.sampled_from([10_000, 100_000, 300_000]), st.sampled_from([b"1", b"9 ", b"1 a", b"="])),
)  # fmt: skip

members = st.builds(
    Member,
    kind=st.sampled_from(list(_FLAGS)),
    name=paths(),
    link=link_targets,
    data=st.one_of(st.just(b""), st.binary(max_size=700)),
    size_lie=size_lies,
    typeflag=st.one_of(st.none(), st.none(), st.sampled_from([b"7", b"V", b"M", b"N", b"Z", b"\0", b"A", b"S", b"g"])),
    mode=modes,
    uid=ids,
    gid=ids,
    mtime=mtimes,
    dev=devs,
    long=st.sampled_from(["pax", "pax", "gnu", "prefix", "cut"]),
    pax=pax_records,
)

extended = st.one_of(
    st.builds(Extended, typeflag=st.sampled_from([b"x", b"g", b"X"]), body=raw_pax_bodies, size_lie=size_lies),
    st.builds(
        Extended,
        typeflag=st.sampled_from([b"x", b"g"]),
        body=st.lists(st.tuples(pax_keys, pax_values), min_size=1, max_size=3).map(
            lambda rs: b"".join(pax_record(k, v) for k, v in rs)
        ),
    ),
    st.builds(
        Extended,
        typeflag=st.sampled_from([b"L", b"K"]),
        body=st.one_of(
            st.sampled_from([b"../escape\0", b"/abs\0", b"a\nb\0", b"", b"x" * 300 + b"\0"]),
            st.builds(_long_value, st.sampled_from([4000, 300_000]), st.sampled_from([b"a/", b"../"])),
        ),
        size_lie=size_lies,
    ),
)

sparse_structs = st.one_of(
    st.sampled_from(
        [
            (),
            ((0, 10),),
            ((0, 5), (100, 5)),
            ((100, 5), (0, 5)),
            ((0, 10), (5, 10)),
            ((-1, 5),),
            ((0, -5),),
            ((2**40, 5),),
            ((0, 2**40),),
            ((2**62, 2**62),),
            ((0, 0),) * 30,
        ]
    ),  # fmt: skip
    st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 600)), max_size=30).map(tuple),
)
sparse_sizes = st.sampled_from([0, 10, 105, 1000, 5000, 2**20, 2**40, 2**62, -1, 2**70])
sparse_ops = st.one_of(
    st.builds(
        OldSparse,
        name=paths(),
        structs=sparse_structs,
        realsize=sparse_sizes,
        data=st.binary(max_size=600),
        size_lie=size_lies,
        more_blocks=st.sampled_from([0, 0, 1, 3, 5000]),
    ),
    st.builds(
        PaxSparse,
        fmt=st.sampled_from(["0.0", "0.1", "1.0"]),
        name=paths(),
        structs=sparse_structs,
        realsize=sparse_sizes,
        data=st.binary(max_size=600),
        map_text=st.one_of(
            st.none(),
            st.none(),
            st.sampled_from(
                [
                    b"",
                    b"x",
                    b"1\n",
                    b"2\n0\n",
                    b"1,2,3",
                    b"-1\n0\n5\n",
                    b"999999999\n",
                    b"1\n0\nabc\n",
                    b"1\n0\n" + b"9" * 5000 + b"\n",
                    b"3\n" + b"0\n" * 6,
                ]
            ),  # fmt: skip
            st.builds(_long_value, st.sampled_from([4000, 300_000]), st.sampled_from([b"0\n", b"1", b"0,"])),
        ),
        size_lie=size_lies,
    ),
)

junk = st.one_of(
    st.builds(Raw, st.binary(min_size=BLOCK, max_size=BLOCK)),
    st.sampled_from([
        Raw(b"\0" * BLOCK),
        Raw(header(b"bad-checksum", bad_checksum=True)),
        Raw(b"\xff" * BLOCK),
        Raw(header(b"truncated-header")[:300]),
    ]),
)  # fmt: skip


def _file(name: Name, data: bytes = b"x") -> Member:
    return Member("file", name, data=data)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Op, ...]:
    """Sequences that set a trap and then spring it (a symlink out, then a write through it, ...)."""
    kind = draw(st.sampled_from([0, 0, 1, 1, 2, 2, 3, 3, 5, 5, 6, 6, 6, 7, 7, 4]))  # 4 (deep trees) is slow: rarer
    target = draw(link_targets)
    name = draw(st.sampled_from(["s", "a/s", "d", ".", "a/b/c"]))
    if kind == 0:  # a symlink to a directory, then members written through it
        through = draw(st.lists(st.sampled_from(["x", "victim", "dir/inner", ".wh.victim", ".wh..wh..opq", "dir",
                                                 "new/deeper/f", "link", ".."]), min_size=1, max_size=4))  # fmt: skip
        ops: list[Op] = [Member("symlink", name, link=target)]
        for t in through:
            k = draw(st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo"]))
            ops.append(Member(k, f"{name}/{t}", link=draw(link_targets), data=b"through " + t.encode()))
        return tuple(ops)
    if kind == 1:  # a chain of symlinks ending outside, then a write through the first
        n = draw(st.integers(2, 45))
        ops = [Member("symlink", f"c{i}", link=f"c{i + 1}") for i in range(n)]
        ops.append(Member("symlink", f"c{n}", link=target))
        ops.append(_file("c0/victim", b"chain"))
        return tuple(draw(st.permutations(ops[:-1]))) + (ops[-1],)
    if kind == 2:  # replacing: symlink <-> dir <-> file of one name, with content under it
        kinds = draw(st.lists(st.sampled_from(["symlink", "dir", "file", "hardlink", "fifo"]), min_size=2, max_size=4))
        ops = []
        for k in kinds:
            ops.append(Member(k, name, link=target))
            if draw(st.booleans()):
                ops.append(_file(f"{name}/victim", b"replaced"))
        return tuple(ops)
    if kind == 3:  # hardlinks: to later members, missing ones, symlinks, directories, themselves, outside
        link = draw(st.sampled_from(["later", "missing", "sym", "dir", "self", "sym/victim", "../outside/victim"]))
        ops = [Member("symlink", "sym", link=target), Member("dir", "dir")]
        ops.append(Member("hardlink", "h", link="self" if link == "self" else link))
        if link == "self":
            ops[-1] = Member("hardlink", "self", link="self")
        ops.append(_file("later", b"later"))
        return tuple(ops)
    if kind == 4:  # a tree deeper than Python's recursion limit, then removed or made opaque
        depth = draw(st.sampled_from([100, 1050]))
        deep = "d/" * depth + "f"
        end = draw(st.sampled_from(["file", "whiteout", "opaque", "symlink"]))
        ops = [_file(deep)]
        if end == "file":
            ops.append(_file("d"))
        elif end == "whiteout":
            ops.append(Member("file", ".wh.d"))
        elif end == "opaque":
            ops.append(Member("file", ".wh..wh..opq"))
        else:
            ops.append(Member("symlink", "d", link=target))
        return tuple(ops)
    if kind == 5:  # whiteouts in odd places
        where = draw(st.sampled_from(["", "s/", "a/s/", "../", "d/../../", "/", "s/../"]))
        wh = draw(st.sampled_from([".wh..wh..opq", ".wh.victim", ".wh..", ".wh.dir", ".wh.outside", ".wh.root"]))
        return (Member("symlink", "s", link=target), Member("dir", "d"), Member("file", where + wh))
    if kind == 6:  # chained extended headers before one member
        n = draw(st.sampled_from([2, 3, 20, 400, 1200]))
        flag = draw(st.sampled_from([b"x", b"g", b"L"]))
        body = pax_record(b"comment", b"c") if flag != b"L" else b"chained\0"
        return (*[Extended(flag, body)] * n, _file("after-chain"))
    # 7: the same name many times, all kinds
    kinds = draw(st.lists(st.sampled_from(list(_FLAGS)), min_size=2, max_size=6))
    return tuple(Member(k, "dup", link=target, data=b"dup") for k in kinds)


ops = st.one_of(members, members, members, scenarios().map(lambda o: o), extended, sparse_ops, junk)


@st.composite
def hostile_tars(draw: st.DrawFn) -> HostileTar:
    """A HostileTar spec (render it with a Host to get the archive's bytes)."""
    drawn = draw(st.lists(ops, min_size=0, max_size=8))
    flat: list[Op] = []
    for op in drawn:
        flat.extend(op if isinstance(op, tuple) else (op,))
    ending = draw(st.sampled_from(["zeros", "zeros", "zeros", "one", "none", "junk"]))
    cut = draw(st.one_of(st.none(), st.none(), st.none(), st.integers(0, 999)))
    compression = draw(st.sampled_from(["none", "none", "none", "gzip", "zstd"]))
    return HostileTar(tuple(flat), ending, cut, compression)


def hostile_archives(host: Host) -> st.SearchStrategy[bytes]:
    """Hostile archives as bytes, their absolute links aimed at ``host``'s paths."""
    return hostile_tars().map(lambda spec: spec.render(host))


# --- bombs -------------------------------------------------------------------------------------------------

BOMB_KINDS = ("file", "skipped", "pax", "gnu-longname", "trailing", "unknown-type", "sparse-holes")


@dataclass(frozen=True, repr=False)
class Bomb(_Spec):
    """A small compressed archive that expands to about ``size`` bytes (``kind``: where those bytes are)."""

    kind: str
    size: int
    compression: str = "gzip"

    def chunks(self) -> Iterator[bytes]:
        """The uncompressed archive, in pieces (never whole in memory)."""
        fill = b"\0" if self.kind in ("file", "skipped", "trailing", "unknown-type") else b"a"
        if self.kind == "sparse-holes":
            # A file of ``size`` bytes that is all hole but its last byte: nothing to compress at all.
            gnu = b"\0" * 41 + _num(self.size - 1, 12) + _num(1, 12) + b"\0" * 72 + b"\0" + _num(self.size, 12)
            yield header(b"holes", tarfile.GNUTYPE_SPARSE, size=1, gnu=gnu) + padded(b"z") + b"\0" * 1024
            return
        if self.kind == "trailing":
            yield header(b"small", size=5) + padded(b"small") + b"\0" * 1024
        elif self.kind == "pax":
            head = b"%d comment=" % (self.size + len(str(self.size)) + 10)
            yield header(b"PaxHeaders/x", tarfile.XHDTYPE, size=self.size) + head
            yield from _fill(fill, self.size - len(head) - 1)
            yield b"\n" + b"\0" * (-self.size % BLOCK)
            yield header(b"after-pax", size=0) + b"\0" * 1024
            return
        elif self.kind == "gnu-longname":
            yield header(b"././@LongLink", tarfile.GNUTYPE_LONGNAME, size=self.size)
        else:
            name, flag = {"file": (b"big", tarfile.REGTYPE), "skipped": (b".wh.big", tarfile.REGTYPE),
                          "unknown-type": (b"odd", b"Z")}[self.kind]  # fmt: skip
            yield header(name, flag, size=self.size)
        yield from _fill(fill, self.size)
        if self.kind == "gnu-longname":
            yield b"\0" * (-self.size % BLOCK) + header(b"short", size=0) + b"\0" * 1024
        elif self.kind != "trailing":
            yield b"\0" * (-self.size % BLOCK) + b"\0" * 1024

    def render(self) -> bytes:
        if self.compression == "zstd":
            zc = zstandard.ZstdCompressor(level=3).compressobj()
            return b"".join(zc.compress(c) for c in self.chunks()) + zc.flush()
        gz = zlib.compressobj(6, zlib.DEFLATED, 31)
        return b"".join(gz.compress(c) for c in self.chunks()) + gz.flush()


def _fill(byte: bytes, size: int) -> Iterator[bytes]:
    piece = byte * MiB
    while size > 0:
        yield piece[: min(size, MiB)]
        size -= MiB


bombs = st.builds(
    Bomb,
    kind=st.sampled_from(BOMB_KINDS),
    size=st.sampled_from([2 * MiB, 30 * MiB, 200 * MiB]),
    compression=st.sampled_from(["gzip", "gzip", "zstd"]),
)


# --- the property ------------------------------------------------------------------------------------------


class Hang(BaseException):
    """Raised by the watchdog inside a stuck extraction (a BaseException: nothing in kiln may swallow it)."""


@dataclass(frozen=True)
class Meta:
    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    nlink: int
    mtime_ns: int
    ctime_ns: int
    rdev: int
    content: str | None
    link: str | None
    xattrs: tuple[tuple[str, bytes], ...]


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "dir"), (stat.S_ISREG, "file"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISCHR, "chr"), (stat.S_ISBLK, "blk"), (stat.S_ISFIFO, "fifo")):  # fmt: skip
        if test(mode):
            return name
    return "other"


def meta(path: str) -> Meta:
    st_ = os.lstat(path)
    kind = _kind(st_.st_mode)
    content = None
    if kind == "file":
        with open(path, "rb") as f:  # regular files only: a FIFO or a device is never opened
            content = hashlib.file_digest(f, "sha256").hexdigest()
    try:
        names = sorted(os.listxattr(path, follow_symlinks=False))
        xattrs = tuple((n, os.getxattr(path, n, follow_symlinks=False)) for n in names)
    except OSError:
        xattrs = ()
    return Meta(
        kind,
        st_.st_mode,
        st_.st_uid,
        st_.st_gid,
        st_.st_size,
        st_.st_nlink,
        st_.st_mtime_ns,
        st_.st_ctime_ns,
        st_.st_rdev if kind in ("chr", "blk") else 0,
        content,
        os.readlink(path) if kind == "symlink" else None,
        xattrs,
    )


def walk(top: str, skip: str | None = None) -> Iterator[str]:
    """Every path under top (top included, ``skip`` and what is under it excluded), without recursion."""
    stack = [top]
    while stack:
        path = stack.pop()
        if path == skip:
            continue
        yield path
        if os.path.isdir(path) and not os.path.islink(path):
            with os.scandir(path) as it:
                stack.extend(e.path for e in it)


def snapshot(top: str, skip: str | None = None) -> dict[str, Meta]:
    return {os.path.relpath(p, top): meta(p) for p in walk(top, skip)}


def remove_tree(top: str) -> None:
    """rm -rf, for trees of any depth: no recursion, one directory open at a time, no long paths."""
    if not os.path.lexists(top):
        return
    if not stat.S_ISDIR(os.lstat(top).st_mode):
        os.unlink(top)
        return
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(top, flags)
    names: list[str] = []
    stack: list[list[str]] = []
    try:
        while True:
            if len(stack) == len(names):  # a directory just entered: remove its files, list its subdirectories
                subdirs = []
                with os.scandir(fd) as it:
                    for entry in it:
                        if entry.is_dir(follow_symlinks=False):
                            subdirs.append(entry.name)
                        else:
                            os.unlink(entry.name, dir_fd=fd)
                stack.append(subdirs)
            if stack[-1]:
                name = stack[-1].pop()
                child = os.open(name, flags, dir_fd=fd)
                os.close(fd)
                fd = child
                names.append(name)
                continue
            stack.pop()
            if not names:
                break
            parent = os.open("..", flags, dir_fd=fd)
            os.close(fd)
            fd = parent
            os.rmdir(names.pop(), dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(top)


def _sentinel_tree(top: Path, text: str) -> None:
    top.mkdir(parents=True, exist_ok=True)
    (top / "victim").write_text(text)
    (top / "dir").mkdir()
    (top / "dir/inner").write_text(text + " inner")
    (top / "link").symlink_to("victim")
    os.chmod(top / "victim", 0o640)


@dataclass
class Sandbox:
    """base/box/root (extracted onto), base/box/outside (a sentinel tree beside it), and ``sentinel``: a
    directory elsewhere under /tmp (made by ``sentinel_dir``)."""

    base: Path
    sentinel: Path
    dirty: bool = False
    box: Path = field(init=False)
    root: Path = field(init=False)
    outside: Path = field(init=False)

    def __post_init__(self) -> None:
        self.box = self.base / "box"
        self.root = self.box / "root"
        self.outside = self.box / "outside"

    @property
    def host(self) -> Host:
        paths = {
            "outside": str(self.outside), "victim": str(self.outside / "victim"),
            "outside_dir": str(self.outside / "dir"), "outside_link": str(self.outside / "link"),
            "sentinel": str(self.sentinel),
            "sentinel_victim": str(self.sentinel / "victim"), "box": str(self.box), "root": str(self.root),
        }  # fmt: skip
        return Host(paths, len(self.root.parts) - 1)

    def reset(self, mode: str) -> None:
        """A fresh root (in apply mode holding a lower layer's files for whiteouts to remove); the sentinels
        are made again only when an extraction changed them (``dirty``)."""
        if self.dirty or not self.outside.exists():
            remove_tree(str(self.box))
            _sentinel_tree(self.outside, "precious")
            remove_tree(str(self.sentinel))
            _sentinel_tree(self.sentinel, "sentinel")
            self.dirty = False
        else:
            remove_tree(str(self.root))
        self.root.mkdir()
        if mode == "apply":
            (self.root / "etc").mkdir()
            (self.root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
            (self.root / "a/b").mkdir(parents=True)
            (self.root / "a/b/f").write_text("lower")
            (self.root / "d").mkdir()
            (self.root / "d/victim").write_text("lower victim")
            (self.root / "s").symlink_to("/etc")
            (self.root / "rel").symlink_to("a/b")

    def outside_state(self) -> dict[str, object]:
        state: dict[str, object] = {
            "box": snapshot(str(self.box), skip=str(self.root)),
            "sentinel": snapshot(str(self.sentinel)),
        }
        passwd = os.lstat("/etc/passwd")
        state["/etc/passwd"] = (passwd.st_nlink, passwd.st_size, passwd.st_mtime_ns, passwd.st_ino)
        return state


def sentinel_dir() -> Path:
    """A fresh directory under /tmp (outside any test directory) holding a sentinel tree; remove it after."""
    path = Path(tempfile.mkdtemp(prefix="kiln-sentinel-", dir="/tmp"))
    _sentinel_tree(path, "sentinel")
    return path


class _Watchdog:
    """Raises Hang in the main thread after ``seconds`` (SIGALRM; the previous timer is put back)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def _fire(self, signum: int, frame: FrameType | None) -> None:
        raise Hang(f"still extracting after {self.seconds} s")

    def __enter__(self) -> None:
        self._old = signal.signal(signal.SIGALRM, self._fire)
        self._prev = signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._old)
        if self._prev[0]:
            signal.setitimer(signal.ITIMER_REAL, *self._prev)


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    last = frames[-1] if frames else None
    return f"{os.path.basename(last.filename)}:{last.lineno} in {last.name}" if last else "?"


def _diff(before: dict[str, object], after: dict[str, object]) -> str:
    out = []
    for part in before:
        b, a = before[part], after[part]
        if isinstance(b, dict) and isinstance(a, dict):
            for key in sorted(set(b) | set(a)):
                if b.get(key) != a.get(key):
                    out.append(f"{part}:{key}: {b.get(key)} -> {a.get(key)}")
        elif b != a:
            out.append(f"{part}: {b} -> {a}")
    return "; ".join(out[:5])


def check_extraction(
    blob: bytes,
    sandbox: Sandbox,
    mode: str,
    *,
    timeout: float = 20.0,
    max_memory: int | None = None,
    errors: list[KilnError] | None = None,
) -> list[str]:
    """Extract ``blob`` in ``mode`` onto a fresh sandbox root; what broke the property (empty: nothing).

    ``max_memory``: the most the extraction may allocate at once (Python allocations, traced), if checked.
    ``errors``: where to put the KilnError the extraction raised, if any.
    """
    sandbox.reset(mode)
    before = sandbox.outside_state()
    findings = []
    if max_memory is not None:
        tracemalloc.start()
    try:
        with _Watchdog(timeout):
            extract_layer(io.BytesIO(blob), sandbox.root, mode=mode)  # type: ignore[arg-type]
    except Hang as e:
        findings.append(f"hang: {e}")
    except KilnError as e:
        if errors is not None:
            errors.append(e)
        lines = str(e).splitlines()
        if len(lines) != 1:
            findings.append(f"{type(e).__name__} message of {len(lines)} lines: {str(e)[:300]!r}")
    except RecursionError as e:
        findings.append(f"RecursionError at {_where(e)}")
    except Exception as e:  # anything but a kiln error is a finding
        findings.append(f"{type(e).__name__} at {_where(e)}: {str(e)[:300]!r}")
    finally:
        if max_memory is not None:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            if peak > max_memory:
                findings.append(f"memory: {peak / MiB:.0f} MiB allocated at once (at most {max_memory / MiB:.0f})")
    after = sandbox.outside_state()
    if after != before:
        sandbox.dirty = True
        findings.append(f"outside changed: {_diff(before, after)}")
    if not (sandbox.root.is_dir() and not sandbox.root.is_symlink()):
        findings.append("the root is no longer a directory")
    for path in walk(str(sandbox.box), skip=str(sandbox.root)):
        if _kind(os.lstat(path).st_mode) in ("chr", "blk"):
            findings.append(f"device node outside the root: {path}")
    return findings


def hostile_case(spec: HostileTar, sandbox: Sandbox, *, timeout: float = 20.0) -> list[str]:
    """The property for one spec, in both modes."""
    blob = spec.render(sandbox.host)
    findings = []
    for mode in ("apply", "overlay"):
        findings += [f"[{mode}] {f}" for f in check_extraction(blob, sandbox, mode, timeout=timeout)]
    remove_tree(str(sandbox.root))
    return findings


def bomb_case(bomb: Bomb, sandbox: Sandbox, *, timeout: float = 60.0, max_memory: int = 48 * MiB) -> list[str]:
    """The property for one bomb (apply mode: the same code reads the stream in both), memory checked."""
    blob = bomb.render()
    findings = check_extraction(blob, sandbox, "apply", timeout=timeout, max_memory=max_memory)
    remove_tree(str(sandbox.root))
    return findings
