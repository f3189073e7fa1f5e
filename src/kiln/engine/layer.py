"""Turning a step's Changes into a layer blob: tar → compress → blob store, in one streaming pass."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kiln.layers.compress import CompressingWriter
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
) -> BuiltLayer:
    started = time.monotonic()
    with store.writer() as blob:
        tar_out = CompressingWriter(blob, compression, level)  # type: ignore[arg-type]
        write_layer_tar(changes.root, changes.paths, changes.deletions, tar_out, timestamp=timestamp)
        digests = tar_out.close()
        compress_seconds = tar_out.compress_seconds
        digest = blob.commit()
    if digest != digests.digest:
        # The blob writer and the compressor hash the same bytes; disagreement means a bug, never a user error.
        raise AssertionError(f"layer digest disagreement: {digest} != {digests.digest}")
    return BuiltLayer(
        Descriptor(media_type, digest, digests.size),
        digests.diff_id,
        digests.uncompressed_size,
        time.monotonic() - started,
        compress_seconds,
    )
