"""Turning a step's Changes into a layer blob: tar → compress → blob store, in one streaming pass."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

from kiln.layers.compress import CompressingWriter, Writable
from kiln.layers.tarwriter import write_layer_tar
from kiln.oci.descriptor import Descriptor
from kiln.snapshot.changes import Changes
from kiln.transports.blobstore import BlobStore


@dataclass(frozen=True)
class BuiltLayer:
    descriptor: Descriptor
    diff_id: str
    uncompressed_size: int
    seconds: float
    compress_seconds: float  # of `seconds`, the time spent in the compressor; the rest is reading and tar


def write_layer_blob(
    changes: Changes,
    store: BlobStore,
    *,
    compression: str,
    level: int | None,
    media_type: str,
    timestamp: int | None,
    also: Writable | None = None,
) -> BuiltLayer:
    """`also`: where the compressed bytes go too as they are made (a registry upload); it must not raise."""
    started = time.monotonic()
    # The compressor hashes the blob as it makes it; the store need not hash it again.
    with store.writer(hashed=False) as blob:
        stored = cast(Writable, blob)
        tar_out = CompressingWriter(stored if also is None else _Both(stored, also), compression, level)  # type: ignore[arg-type]
        write_layer_tar(changes.root, changes.paths, changes.deletions, tar_out, timestamp=timestamp)
        digests = tar_out.close()
        compress_seconds = tar_out.compress_seconds
        blob.commit(digests.digest)
    return BuiltLayer(
        Descriptor(media_type, digests.digest, digests.size),
        digests.diff_id,
        digests.uncompressed_size,
        time.monotonic() - started,
        compress_seconds,
    )


class _Both:
    def __init__(self, first: Writable, second: Writable) -> None:
        self._first = first
        self._second = second

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._first.write(data)
        self._second.write(data)
        return len(data)
