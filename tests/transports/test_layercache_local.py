"""The local layer cache's entries as files: a hit refreshes the entry's mtime (what `kiln prune --filter until=`
reads as its last use), while its age for --cache-ttl stays the time it was written."""

from __future__ import annotations

import os
from pathlib import Path

from kiln.transports.blobstore import BlobStore
from kiln.transports.layercache import LocalLayerCache

_KEY = "sha256:" + "ab" * 32


def test_a_hit_is_a_use_but_not_a_rewrite(tmp_path: Path) -> None:
    source = BlobStore(tmp_path / "src")
    digest = source.put_bytes(b"layer bytes")
    cache = LocalLayerCache(tmp_path / "cache", ttl=3600)
    cache.put_layer(_KEY, source, digest, digest, len(b"layer bytes"), "application/vnd.oci.image.layer.v1.tar")
    entry_file = tmp_path / "cache" / f"{_KEY.partition(':')[2]}.json"
    long_ago = 1_000_000_000
    os.utime(entry_file, (long_ago, long_ago))
    entry = cache.get(_KEY)
    assert entry is not None and entry.digest == digest
    assert os.stat(entry_file).st_mtime > long_ago + 10**8  # refreshed by the hit
    # The TTL still counts from when the entry was written: an hour later it is a miss, whatever its mtime.
    assert cache.get(_KEY, now=entry.created + 3601) is None
