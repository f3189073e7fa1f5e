"""Layer blobs: compress a tar stream and digest it as the bytes pass, and open any blob as a tar stream.

A layer has two digests: the diff_id names the uncompressed tar (it goes into the image config), the digest
names the blob as stored and sent (it goes into the manifest). Both are computed in the same pass that
compresses, so a layer is never read twice.

gzip goes through ISA-L (isal), several times faster than zlib. Its output is deterministic for a given
isal build: the gzip header is fixed (no file name, mtime 0, OS "unknown"). ISA-L only has levels 0-3, so the
usual gzip levels 1-9 are mapped onto them (see ``isal_level``).
"""

from __future__ import annotations

import hashlib
import io
import sys
import time
import zlib
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, Literal, Protocol, cast

from isal import igzip, isal_zlib

from kiln.errors import ImageFormatError

Compression = Literal["gzip", "zstd", "none"]

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BZIP2_MAGIC = b"BZh"
XZ_MAGIC = b"\xfd7zXZ\x00"

# zstd's own default; levels up to 19 are useful for layers, 20-22 need a lot of memory.
ZSTD_DEFAULT_LEVEL = 3

# Compressors are fed in pieces of exactly this size (see CompressingWriter.write).
_FEED = 1 << 20

# isal's stubs declare its error as an instance; it is the exception class.
_ISAL_ERROR: type[Exception] = isal_zlib.error  # type: ignore[assignment]


def stream_errors() -> tuple[type[BaseException], ...]:
    """What a decompressor raises on a damaged stream. zstd, xz and bzip2 are imported only by streams that use
    them (zstandard alone costs ~8 ms of every start), so their errors are in the list once loaded: until then
    nothing can raise them."""
    loaded = [getattr(sys.modules[m], name) for m, name in (("zstandard", "ZstdError"), ("lzma", "LZMAError"))
              if m in sys.modules]  # fmt: skip
    return (EOFError, OSError, zlib.error, _ISAL_ERROR, *loaded)


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Writable(Protocol):
    def write(self, data: bytes | bytearray | memoryview, /) -> object: ...


@dataclass(frozen=True)
class LayerDigests:
    """The identity of one layer blob: diff_id of the tar, digest and size of the (compressed) blob."""

    diff_id: str
    digest: str
    size: int
    uncompressed_size: int


def isal_level(level: int | None) -> int:
    """Map a gzip level (0-9, None for the default) onto ISA-L's 0-3.

    0-3 -> 1 (fastest used), 4-7 -> 2 (ISA-L's default, where gzip's default 6 lands), 8-9 -> 3 (best).
    ISA-L's level 0 is never used: it codes with a fixed Huffman table, and on incompressible data (a large
    part of most layers) it was measured slower than level 1 and growing the data by a fifth.
    """
    if level is None:
        return int(isal_zlib.ISAL_DEFAULT_COMPRESSION)
    if not 0 <= level <= 9:
        raise ValueError(f"gzip level must be 0-9, got {level}")
    if level <= 3:
        return 1
    if level <= 7:
        return 2
    return 3


class _Counting:
    """The destination side: counts and hashes the bytes written to dst."""

    def __init__(self, dst: Writable, *, hashed: bool = True) -> None:
        self.dst = dst
        self.sha = hashlib.sha256()
        self.hashed = hashed
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if len(data):
            if self.hashed:
                self.sha.update(data)
            self.size += len(data)
            self.dst.write(data)


class CompressingWriter:
    """A write-only file object: write the uncompressed tar into it, compressed bytes go to ``dst``.

    ``close()`` finishes the stream and returns the digests; it does not close ``dst``.
    """

    def __init__(self, dst: Writable, compression: Compression, level: int | None = None) -> None:
        # Uncompressed, the blob is the tar: its digest is the diff_id, no need to hash twice.
        self._out = _Counting(dst, hashed=compression != "none")
        self._sha = hashlib.sha256()
        self._size = 0
        self._compression = compression
        self._result: LayerDigests | None = None
        self._pending = bytearray()
        # Time spent inside the compressor, so a build can report tar and compression as separate phases.
        self.compress_seconds = 0.0
        self._gzip = None
        self._zstd = None
        if compression == "gzip":
            # wbits 31: gzip container. isal writes a fixed header (mtime 0, no name, OS 255).
            self._gzip = isal_zlib.compressobj(isal_level(level), isal_zlib.DEFLATED, 31)
        elif compression == "zstd":
            # Single-threaded: multi-threaded zstd output differs from single-threaded output.
            import zstandard

            self._zstd = zstandard.ZstdCompressor(
                level=ZSTD_DEFAULT_LEVEL if level is None else level
            ).compressobj()
        elif compression != "none":
            raise ValueError(f"unknown compression {compression!r}")

    @property
    def closed(self) -> bool:
        return self._result is not None

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        """Bytes of uncompressed data written so far."""
        return self._size

    def write(self, b: bytes | bytearray | memoryview) -> int:
        if self._result is not None:
            raise ValueError("write to a closed CompressingWriter")
        view = memoryview(b).cast("B")
        n = len(view)
        if not n:
            return 0
        self._sha.update(view)
        self._size += n
        if self._gzip is None and self._zstd is None:
            self._out.write(view)
            return n
        # The compressors' output depends on where their input is cut, so they are fed in fixed-size
        # pieces: the blob then depends on the tar's bytes alone, not on how the caller wrote them.
        if self._pending:
            take = min(n, _FEED - len(self._pending))
            self._pending += view[:take]
            view = view[take:]
            if len(self._pending) == _FEED:
                self._feed(self._pending)
                self._pending.clear()
        while len(view) >= _FEED:
            self._feed(view[:_FEED])
            view = view[_FEED:]
        if len(view):
            self._pending += view
        return n

    def _feed(self, data: bytes | bytearray | memoryview) -> None:
        started = time.perf_counter()
        if self._gzip is not None:
            out = self._gzip.compress(data)
        elif self._zstd is not None:
            out = self._zstd.compress(data)
        else:
            return
        self.compress_seconds += time.perf_counter() - started
        self._out.write(out)

    def flush(self) -> None:
        """Nothing to do: compressed bytes are handed to dst as the compressor produces them."""

    def close(self) -> LayerDigests:
        if self._result is not None:
            return self._result
        if self._pending:
            self._feed(self._pending)
            self._pending.clear()
        if self._gzip is not None:
            self._out.write(self._gzip.flush())
        elif self._zstd is not None:
            self._out.write(self._zstd.flush())
        diff_id = "sha256:" + self._sha.hexdigest()
        self._result = LayerDigests(
            diff_id=diff_id,
            digest="sha256:" + self._out.sha.hexdigest() if self._out.hashed else diff_id,
            size=self._out.size,
            uncompressed_size=self._size,
        )
        return self._result

    @property
    def digests(self) -> LayerDigests:
        if self._result is None:
            raise ValueError("digests are known only after close()")
        return self._result

    def __enter__(self) -> CompressingWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()


class _Prefixed(io.RawIOBase):
    """A reader that gives back the bytes already sniffed, then the rest of the source."""

    def __init__(self, prefix: bytes, src: Readable) -> None:
        self._prefix = prefix
        self._src = src

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview | bytearray) -> int:  # type: ignore[override]
        view = memoryview(buf).cast("B")
        if self._prefix:
            n = min(len(view), len(self._prefix))
            view[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._src.read(len(view))
        view[: len(data)] = data
        return len(data)


class _Checked(io.RawIOBase):
    """Turns a decompressor's own exceptions into ImageFormatError, so callers handle one type."""

    def __init__(self, inner: BinaryIO | io.RawIOBase | io.BufferedIOBase, kind: str) -> None:
        self._inner = inner
        self._kind = kind

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview | bytearray) -> int:  # type: ignore[override]
        view = memoryview(buf).cast("B")
        try:
            data = self._inner.read(len(view))
        except stream_errors() as e:
            raise ImageFormatError(f"corrupt or truncated {self._kind} stream: {e}") from e
        assert data is not None
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            super().close()


def sniff_compression(head: bytes) -> str:
    """The compression a blob starts with: gzip, zstd, bzip2, xz or none."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(BZIP2_MAGIC):
        return "bzip2"
    if head.startswith(XZ_MAGIC):
        return "xz"
    return "none"


def _read_exactly(src: Readable, n: int) -> bytes:
    parts = []
    while n > 0:
        chunk = src.read(n)
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def open_decompressed(src: Readable) -> BinaryIO:
    """A readable stream of the tar inside ``src``, whatever its compression (sniffed from magic bytes).

    Decompression errors surface as ImageFormatError when read. Closing the result does not close ``src``.
    """
    head = _read_exactly(src, 6)
    raw = io.BufferedReader(_Prefixed(head, src), buffer_size=1 << 16)
    kind = sniff_compression(head)
    inner: BinaryIO | io.RawIOBase | io.BufferedIOBase
    if kind == "gzip":
        inner = igzip.IGzipFile(fileobj=raw, mode="rb")  # type: ignore[no-untyped-call]
    elif kind == "zstd":
        import zstandard

        inner = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=False)
    elif kind == "bzip2":
        import bz2

        inner = bz2.BZ2File(raw, mode="rb")  # noqa: SIM115 (returned open)
    elif kind == "xz":
        import lzma

        inner = lzma.LZMAFile(raw, mode="rb")  # noqa: SIM115 (returned open)
    else:
        return cast(BinaryIO, raw)
    return cast(BinaryIO, io.BufferedReader(_Checked(inner, kind), buffer_size=1 << 16))
