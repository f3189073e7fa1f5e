"""Finding the images a build names (FROM, COPY --from, RUN --mount from=) and bringing their blobs home.

A name is looked up first among the named build contexts (``--build-context NAME=oci-layout://PATH[:TAG]``,
``docker-image://REF`` or ``docker-archive://PATH``), then in kaniko's --cache-dir (base images stored by
``kiln warm``), then in registries. Whatever the source, the image's blobs end up in kiln's own blob store, so
that everything built on it reads from one place.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kiln.errors import KilnError, UsageError
from kiln.oci.platform import Platform
from kiln.transports.address import ImageAddress, open_image
from kiln.transports.blobstore import BlobStore
from kiln.transports.image import Image
from kiln.transports.imagecache import ImageCache, current_digest
from kiln.transports.registry.settings import RegistrySettings, registry_options
from kiln.transports.registry.sources import BlobOrigin, KnowsBlobOrigins


@dataclass
class ImageResolver:
    blobs: BlobStore
    registry: RegistrySettings
    build_contexts: Mapping[str, str] = field(default_factory=dict)
    # Which registry repository each pulled blob came from, so a push to the same registry can mount it.
    origins: dict[str, BlobOrigin] = field(default_factory=dict)
    _cache: dict[tuple[str, Platform], Image] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, ref: str, platform: Platform) -> Image:
        with self._lock:
            if (ref, platform) not in self._cache:
                self._cache[ref, platform] = self._resolve(ref, platform)
            return self._cache[ref, platform]

    def _resolve(self, ref: str, platform: Platform) -> Image:
        spec = self.build_contexts.get(ref)
        if spec is not None:
            return self._from_spec(spec, f"--build-context {ref}", platform)
        return self._pull(ref, platform)

    def _from_spec(self, spec: str, flag: str, platform: Platform) -> Image:
        # A context of files never gets here: FROM starts from its files (engine/stage.py), COPY --from and RUN
        # --mount=from= read them (engine/buildenv.named_context).
        if "://" not in spec:
            raise UsageError(f"expected oci-layout://, docker-image:// or docker-archive://, got {spec!r}", flag)
        address = ImageAddress.parse(spec, flag)
        if address.transport == "registry":
            return self._pull(address.location, platform)
        return self._adopt(open_image(address, self.blobs, platform, registry_options(self.registry, pull=True)))

    def _adopt(self, image: Image) -> Image:
        """Copy (or hardlink) an image's blobs into kiln's store and read them from there."""
        for desc in image.layers:
            if not self.blobs.has(desc.digest):
                with image.blobs.open_blob(desc) as f:
                    self.blobs.ingest_file(f, desc.digest, desc.size, what=f"layer {desc.digest}")
        self.blobs.put_bytes(image.config_bytes)
        self.blobs.put_bytes(image.manifest_bytes)
        return Image(image.manifest, image.manifest_bytes, image.config, image.config_bytes, self.blobs)

    def _from_image_cache(self, ref: str, platform: Platform) -> Image | None:
        """The base image kiln warm (or kaniko's warmer) stored for ``ref`` in --cache-dir, if fresh. A tag kiln
        warm did not record is looked up as kaniko does: by the digest the registry says it names now."""
        assert self.registry.image_cache_dir is not None
        cache = ImageCache(Path(self.registry.image_cache_dir), self.registry.image_cache_ttl)
        cached = cache.get(ref, platform)
        if cached is None and cache.lookup_digest(ref, platform) is None:
            try:
                digest = current_digest(ref, platform, registry_options(self.registry, pull=True))
            except (KilnError, OSError):
                return None  # the pull that follows says what is wrong
            cached = cache.get_digest(digest, platform, ref)
        return cached

    def _pull(self, ref: str, platform: Platform) -> Image:
        if self.registry.image_cache_dir:
            cached = self._from_image_cache(ref, platform)
            if cached is not None:
                return self._adopt(cached)
        from kiln.transports.registry.pull import pull_image  # the HTTP client: only for builds that pull

        image = pull_image(ref, platform, self.blobs, registry_options(self.registry, pull=True))
        if isinstance(image.blobs, KnowsBlobOrigins):
            for desc in image.layers:
                origin = image.blobs.blob_origin(desc.digest)
                if origin is not None:
                    self.origins.setdefault(desc.digest, origin)
        return image
