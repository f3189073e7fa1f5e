"""How fast kiln compresses layers on this machine: MB/s of uncompressed tar through CompressingWriter.

Run: .venv/bin/python bench/gzip_throughput.py [MiB]   (default 256 MiB of mixed data)

The input mixes incompressible bytes, text-like repetition and zeros, roughly like a real rootfs. For each
gzip level (kiln's 1-9, mapped onto ISA-L's 0-3) and zstd, prints throughput and ratio; stdlib zlib level 6
is shown for comparison. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import os
import sys
import time
import zlib
from collections.abc import Callable

from kiln.layers import CompressingWriter
from kiln.layers.compress import isal_level

CHUNK = 1 << 20


class Discard:
    def write(self, b: bytes | bytearray | memoryview) -> int:
        return len(b)


def make_chunks(total_mib: int) -> list[bytes]:
    text = (b"usr/lib/x86_64-linux-gnu/libexample.so.1 kiln layer benchmark line\n" * 20000)[:CHUNK]
    random = os.urandom(CHUNK)
    zeros = bytes(CHUNK)
    # 40% incompressible, 40% text-like, 20% zeros.
    pattern = [random, text, random, text, zeros]
    return [pattern[i % len(pattern)] for i in range(total_mib)]


def measure(name: str, chunks: list[bytes], run: Callable[[list[bytes]], int]) -> None:
    start = time.perf_counter()
    out_size = run(chunks)
    elapsed = time.perf_counter() - start
    total = len(chunks) * CHUNK
    print(f"{name:28s} {total / elapsed / 1e6:8.1f} MB/s   ratio {out_size / total:.3f}")


def kiln(compression: str, level: int | None) -> Callable[[list[bytes]], int]:
    def run(chunks: list[bytes]) -> int:
        w = CompressingWriter(Discard(), compression, level)  # type: ignore[arg-type]
        for c in chunks:
            w.write(c)
        return w.close().size

    return run


def stdlib_zlib(chunks: list[bytes]) -> int:
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return sum(len(c.compress(x)) for x in chunks) + len(c.flush())


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    chunks = make_chunks(mib)
    print(f"{mib} MiB, {os.cpu_count()} CPUs; includes sha256 of input and output (as kiln always does)")
    for level in (1, 3, 6, 9):
        measure(f"kiln gzip -{level} (isal {isal_level(level)})", chunks, kiln("gzip", level))
    measure("kiln zstd -3", chunks, kiln("zstd", None))
    measure("kiln none (sha256 only)", chunks, kiln("none", None))
    measure("stdlib zlib -6 (no digest)", chunks, stdlib_zlib)


if __name__ == "__main__":
    main()
