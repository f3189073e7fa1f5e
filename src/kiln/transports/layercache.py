"""Where the layer cache keeps its entries (the keys are the engine's: engine/cache.py).

A local store (kaniko's spelling: ``--cache-repo=oci:PATH``; without a repository to use, one under --kiln-dir)
is a directory: ``<key hex>.json`` entries and a blobs/ store of its own. It is self-contained,
rather than pointing into kiln's blob store, so one cache directory can be shared between machines or CI jobs
(mounted, copied, restored as a CI cache) without kiln's other state; on the same filesystem, blobs are hard
links and cost nothing. Entries are written atomically, so concurrent builds sharing a cache never see half an
entry; an unreadable entry or a missing or corrupt blob is a miss, never an error.

A registry store (--cache-repo, or, as kaniko does, ``<destination repository>/cache`` when pushing) keeps the
entry for key K as the image ``REPO:<K hex>``, with the step's layer as its only layer (none for a step that made
no layer) and the layer's diff_id and the entry's age in its config. A registry that cannot be reached or
refuses costs speed and a warning, never the build.
"""

from __future__ import annotations

import calendar
import contextlib
import io
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from kiln.atomic import write_atomically
from kiln.errors import ImageFormatError, KilnError, RegistryError, UsageError
from kiln.oci import mediatypes as mt
from kiln.oci.config import ImageConfig
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import DigestingHash, sha256_digest
from kiln.oci.manifest import Manifest
from kiln.transports.blobstore import CHUNK, BlobStore
from kiln.transports.image import assemble_image
from kiln.transports.registry.reference import Reference
from kiln.transports.registry.sources import BlobOrigin

if TYPE_CHECKING:
    from kiln.transports.registry.options import RegistryOptions

DEFAULT_TTL = 336 * 3600.0  # kaniko's --cache-ttl default: two weeks


@dataclass(frozen=True)
class CacheEntry:
    """A cached step: its layer (digest, diff_id, size, media type), or no layer at all (``empty``)."""

    created: float
    empty: bool = False
    digest: str = ""
    diff_id: str = ""
    size: int = 0
    media_type: str = ""
    # Where a registry entry was found (REPO@manifest digest): not part of what the entry says.
    source: str = field(default="", compare=False)
    # The registry repository holding the layer blob, so a push to the same registry can mount it.
    origin: BlobOrigin | None = field(default=None, compare=False)

    def to_json(self) -> bytes:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created))
        if self.empty:
            doc: dict[str, Any] = {"empty": True, "created": created}
        else:
            doc = {
                "digest": self.digest,
                "diff_id": self.diff_id,
                "size": self.size,
                "media_type": self.media_type,
                "created": created,
            }
        return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> CacheEntry | None:
        try:
            doc = json.loads(data)
            created = float(calendar.timegm(time.strptime(doc["created"], "%Y-%m-%dT%H:%M:%SZ")))
            if doc.get("empty") is True:
                return cls(created, empty=True)
            entry = cls(
                created,
                digest=str(doc["digest"]),
                diff_id=str(doc["diff_id"]),
                size=int(doc["size"]),
                media_type=str(doc["media_type"]),
            )
        except (ValueError, KeyError, TypeError, OverflowError):
            return None
        if not entry.digest.startswith("sha256:") or not entry.diff_id.startswith("sha256:"):
            return None
        return entry


class LayerCacheStore(Protocol):
    """Where cache entries live: a local directory (LocalLayerCache) or a registry repository (RegistryLayerCache).

    None of these raise for a cache that is unreadable or corrupt: that is a miss."""

    def get(self, key: str, now: float | None = None) -> CacheEntry | None: ...

    def fetch(self, entry: CacheEntry, into: BlobStore) -> bool: ...

    def put_layer(
        self, key: str, source: BlobStore, digest: str, diff_id: str, size: int, media_type: str
    ) -> None: ...

    def put_empty(self, key: str) -> None: ...


class LocalLayerCache:
    """``<root>/<key hex>.json`` entries and ``<root>/blobs``; entries older than ``ttl`` seconds are misses."""

    def __init__(self, root: Path, ttl: float = DEFAULT_TTL) -> None:
        self.root = root
        self.ttl = ttl
        self.blobs = BlobStore(root / "blobs")
        root.mkdir(parents=True, exist_ok=True)

    def _entry_path(self, key: str) -> Path:
        return self.root / f"{key.partition(':')[2] or key}.json"

    def get(self, key: str, now: float | None = None) -> CacheEntry | None:
        try:
            data = self._entry_path(key).read_bytes()
        except OSError:
            return None
        entry = CacheEntry.from_json(data)
        if entry is None:
            return None
        if (now if now is not None else time.time()) - entry.created > self.ttl:
            return None
        # A hit is a use: `kiln prune --filter until=` ages entries by their file's mtime (the TTL by `created`).
        with contextlib.suppress(OSError):
            os.utime(self._entry_path(key))
        return entry

    def fetch(self, entry: CacheEntry, into: BlobStore) -> bool:
        """Bring an entry's layer blob into ``into``, verified; False (a miss) when it is missing or corrupt."""
        if entry.empty:
            return True
        path = self.blobs.path(entry.digest)
        try:
            if path.stat().st_size != entry.size or not _digest_matches(path, entry.digest):
                # Remove it, so that the next build's put stores a good copy instead of keeping this one.
                with contextlib.suppress(OSError):
                    path.unlink()
                return False
            into.link_or_copy_from(self.blobs, entry.digest)
        except (OSError, KilnError):
            return False
        return True

    def put_layer(self, key: str, source: BlobStore, digest: str, diff_id: str, size: int, media_type: str) -> None:
        self.blobs.link_or_copy_from(source, digest)
        self._write(key, CacheEntry(time.time(), digest=digest, diff_id=diff_id, size=size, media_type=media_type))

    def put_empty(self, key: str) -> None:
        self._write(key, CacheEntry(time.time(), empty=True))

    def _write(self, key: str, entry: CacheEntry) -> None:
        write_atomically(self._entry_path(key), entry.to_json())


def _digest_matches(path: Path, digest: str) -> bool:
    h = DigestingHash()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.digest == digest


# -- the registry store ----------------------------------------------------------------------------------------

_MAX_CONFIG = 4 << 20  # an entry's config is a few hundred bytes; refuse to buffer something absurd
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$", re.IGNORECASE)


def _format_time(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def parse_created(text: str | None) -> float | None:
    """An RFC 3339 time (an image config's ``created``, fractions and offsets allowed) in epoch seconds."""
    m = _RFC3339.match(text or "")
    if m is None:
        return None
    try:
        t = float(calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")))
    except (ValueError, OverflowError):
        return None
    zone = m.group(2).upper()
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        t -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return t


class _EntryBlobs:
    """An entry image's blobs: its config from memory, its layer from kiln's blob store."""

    def __init__(self, store: BlobStore | None, config_digest: str, config_bytes: bytes) -> None:
        self.store = store
        self.config_digest = config_digest
        self.config_bytes = config_bytes

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        if desc.digest == self.config_digest:
            return io.BytesIO(self.config_bytes)
        if self.store is None:
            raise OSError(f"blob {desc.digest} is not in the entry")
        return self.store.open(desc.digest)


class RegistryLayerCache:
    """Entries as images ``<repository>:<key hex>`` (kaniko's --cache-repo); older than ``ttl`` seconds: a miss.

    Errors become warnings through ``warn`` (each kind once); a registry that cannot be reached at all is not
    asked again for the rest of the build, so a cache that is down costs one timeout, not one per step."""

    def __init__(
        self,
        repository: str,
        pull_opts: RegistryOptions,
        push_opts: RegistryOptions,
        ttl: float = DEFAULT_TTL,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        ref = Reference.parse(repository)
        if ref.digest or (ref.tag != "latest" or repository.endswith(":latest")):
            raise UsageError(f"{repository!r} is not a repository (no tag or digest)", "--cache-repo")
        self.registry = ref.registry
        self.repository = ref.repository
        self.pull_opts = pull_opts
        self.push_opts = push_opts
        self.ttl = ttl
        self._warn = warn or (lambda message: None)
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._unreachable = False

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def _ref(self, key: str) -> Reference:
        return Reference(self.registry, self.repository, key.partition(":")[2] or key)

    def _trouble(self, what: str, error: Exception) -> None:
        """Warn about an error once per kind; stop using a registry that does not answer at all."""
        status = error.status if isinstance(error, RegistryError) else None
        detail = error.msg if isinstance(error, RegistryError) else str(error)
        with self._lock:
            if isinstance(error, RegistryError) and status is None:
                self._unreachable = True
            kind = f"{what}:{status}:{type(error).__name__}"
            if kind in self._warned:
                return
            self._warned.add(kind)
        suffix = "; not using it for the rest of the build" if self._unreachable else ""
        self._warn(f"layer cache {self.name}: cannot {what}: {detail}{suffix}")

    def get(self, key: str, now: float | None = None) -> CacheEntry | None:
        if self._unreachable:
            return None
        ref = self._ref(key)
        # The HTTP client is imported only by builds that use a registry cache (a tenth of a second).
        from kiln.transports.registry.client import RegistryClient
        from kiln.transports.registry.pull import fetch_manifest, read_small_blob

        client = RegistryClient(self.registry, self.pull_opts, pulling=True)
        try:
            fetched = fetch_manifest(client, ref)
            if fetched.media_type not in mt.MANIFEST_TYPES:
                return None
            manifest = Manifest.from_bytes(fetched.data, fetched.media_type, f"cache entry {ref}")
            config_bytes = read_small_blob(client, ref, manifest.config, _MAX_CONFIG, "config")
            config = ImageConfig.from_bytes(config_bytes, f"cache entry {ref}")
        except RegistryError as e:
            if e.status != 404:  # 404: the key is not there, which is what a miss is
                self._trouble("look entries up", e)
            return None
        except (ImageFormatError, OSError) as e:
            self._trouble("read an entry", e)
            return None
        finally:
            client.close()
        created = parse_created(config.created)
        if created is None or (now if now is not None else time.time()) - created > self.ttl:
            return None
        source = f"{self.name}@{fetched.digest}"
        if not manifest.layers and not config.diff_ids:
            return CacheEntry(created, empty=True, source=source)
        if len(manifest.layers) != 1 or len(config.diff_ids) != 1:
            return None  # not an entry kiln (or kaniko) writes
        layer = manifest.layers[0]
        if not layer.digest.startswith("sha256:") or not config.diff_ids[0].startswith("sha256:"):
            return None
        return CacheEntry(
            created, digest=layer.digest, diff_id=config.diff_ids[0], size=layer.size,
            media_type=layer.media_type, source=source, origin=BlobOrigin(self.registry, self.repository),
        )  # fmt: skip

    def fetch(self, entry: CacheEntry, into: BlobStore) -> bool:
        """Bring an entry's layer blob into ``into``, verified as it streams in; False (a miss) on any failure."""
        if entry.empty or into.has(entry.digest):
            return True
        if self._unreachable:
            return False
        from kiln.transports.registry.client import RegistryClient
        from kiln.transports.registry.pull import fetch_blob

        ref = Reference(self.registry, self.repository, None, entry.digest)
        client = RegistryClient(self.registry, self.pull_opts, pulling=True)
        try:
            layer = Descriptor(entry.media_type, entry.digest, entry.size)
            fetch_blob(client, ref, layer, into, "cached layer")
        except (KilnError, OSError) as e:
            self._trouble("fetch cached layers", e)
            return False
        except Exception as e:  # a connection dropped mid-stream (requests' own errors): a miss all the same
            self._trouble("fetch cached layers", RegistryError(f"{type(e).__name__}: {e}", str(ref)))
            return False
        finally:
            client.close()
        return True

    def put_layer(self, key: str, source: BlobStore, digest: str, diff_id: str, size: int, media_type: str) -> None:
        self._push(key, source, (Descriptor(media_type, digest, size),), (diff_id,))

    def put_empty(self, key: str) -> None:
        self._push(key, None, (), ())

    def _push(
        self, key: str, source: BlobStore | None, layers: tuple[Descriptor, ...], diff_ids: tuple[str, ...]
    ) -> None:
        if self._unreachable:
            return
        docker = any(mt.is_docker_family(d.media_type) for d in layers)
        config = ImageConfig(created=_format_time(time.time()), diff_ids=diff_ids)
        config_bytes = config.to_bytes()
        image = assemble_image(config, layers, _EntryBlobs(source, sha256_digest(config_bytes), config_bytes),
                               docker=docker)
        try:
            from kiln.transports.registry.push import push_image

            push_image(image, [str(self._ref(key))], self.push_opts)
        except (KilnError, OSError) as e:
            self._trouble("store entries", e)
