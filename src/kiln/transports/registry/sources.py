"""Where a blob came from: a pulled blob's registry and repository, so a push to a sibling repository can mount it.

A mount asks the registry to link a blob it already holds instead of receiving the bytes again; it needs the
repository the blob is known in, which only the pull that fetched it knows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable

from kiln.oci.descriptor import Descriptor
from kiln.transports.blobstore import BlobStore


@dataclass(frozen=True)
class BlobOrigin:
    registry: str  # canonical: docker.io for Docker Hub
    repository: str


@runtime_checkable
class KnowsBlobOrigins(Protocol):
    """A BlobReader that can tell which registry repository a blob was fetched from."""

    def blob_origin(self, digest: str) -> BlobOrigin | None: ...


class StoreBlobs:
    """A BlobReader over a BlobStore, remembering the repository each blob was pulled from."""

    def __init__(self, store: BlobStore, origins: Mapping[str, BlobOrigin] | None = None) -> None:
        self.store = store
        self.origins = dict(origins or {})

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        return self.store.open(desc.digest)

    def blob_origin(self, digest: str) -> BlobOrigin | None:
        return self.origins.get(digest)

    def __repr__(self) -> str:
        return f"StoreBlobs({self.store.root}, {len(self.origins)} origins)"
