"""The layer cache (kaniko's --cache): keys for build steps, and a local directory that keeps their layers.

A key is a chain: each step's key hashes the key before it with what decides the step's result (its expanded
text; for RUN the environment, user, working directory and shell; for COPY/ADD the content and metadata of every
source file). The chain starts from the base image's manifest digest (or "scratch") and the settings that shape
layer bytes (platform, compression, timestamps), so a cached layer is only ever replayed where building it again
would give the same thing.

The store is a directory: ``<key hex>.json`` entries and a blobs/ store of its own. It is self-contained, rather
than pointing into kiln's blob store, so one cache directory can be shared between machines or CI jobs (mounted,
copied, restored as a CI cache) without kiln's other state; on the same filesystem, blobs are hard links and cost
nothing. Entries and blobs are written to temporary names and renamed into place, so concurrent builds sharing
a cache never see half an entry; an unreadable entry or a missing or corrupt blob is a miss, never an error.

With --cache-repo (or, as kaniko does, ``<destination repository>/cache`` when pushing) the store is a registry
repository instead: the entry for key K is the image ``REPO:<K hex>``, with the step's layer as its only layer
(none for a step that made no layer) and the layer's diff_id and the entry's age in its config. A registry that
cannot be reached or refuses costs speed and a warning, never the build.
"""

from __future__ import annotations

import calendar
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from kiln.atomic import write_atomically
from kiln.context.dockerignore import DockerIgnore
from kiln.dockerfile.instructions import Instruction
from kiln.engine.options import BuildOptions
from kiln.engine.steps.copy import SourceTree
from kiln.errors import ImageFormatError, KilnError, RegistryError, UsageError
from kiln.oci import mediatypes as mt
from kiln.oci.config import ImageConfig
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import DigestingHash, sha256_digest
from kiln.oci.manifest import Manifest
from kiln.transports.blobstore import CHUNK, BlobStore
from kiln.transports.image import Image
from kiln.transports.registry import Reference, RegistryOptions, push_image, registry_options
from kiln.transports.registry.client import RegistryClient, pull_scope
from kiln.transports.registry.pull import fetch_manifest
from kiln.transports.registry.sources import BlobOrigin

DEFAULT_TTL = 336 * 3600.0  # kaniko's --cache-ttl default: two weeks

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """A Go duration (``336h``, ``1h30m``, ``1.5s``) in seconds, as --cache-ttl takes it."""
    s = text.strip()
    if s in ("0", "+0", "-0"):
        return 0.0
    sign = -1.0 if s.startswith("-") else 1.0
    body = s.lstrip("+-")
    pos, total = 0, 0.0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if m is None:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not body or pos != len(body):
        raise UsageError(f"invalid duration {text!r} (examples: 336h, 90m, 1h30m)", "--cache-ttl")
    return sign * total


# -- keys ------------------------------------------------------------------------------------------------------


def _canon(value: Any) -> Any:
    """A JSON-able form of an instruction's fields: what the step does, not where it is in the file."""
    if isinstance(value, Instruction):
        fields = {
            f.name: _canon(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in ("line", "end_line", "original")
        }
        return {"keyword": value.keyword, **fields}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canon(getattr(value, f.name)) for f in dataclasses.fields(value) if f.compare}
    if isinstance(value, list | tuple):
        return [_canon(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canon(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def instruction_text(instr: Instruction) -> str:
    """The expanded instruction (keyword, arguments, flags) as one canonical string."""
    return json.dumps(_canon(instr), sort_keys=True, separators=(",", ":"))


def _hash(parts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogateescape")
        h.update(len(data).to_bytes(8, "big"))  # length-prefixed: no two part lists hash alike
        h.update(data)
    return "sha256:" + h.hexdigest()


def chain_start(base: str, opts: BuildOptions, platform: str) -> str:
    """The key a stage's chain starts from: its base (manifest digest, a parent stage's final key, or "scratch")
    and the settings that change layer bytes."""
    return _hash(
        [
            "kiln-cache-v1",
            base,
            platform,
            opts.compression,
            str(opts.compression_level),
            str(opts.timestamp),
        ]
    )


def step_key(previous: str, text: str, extra: Mapping[str, str] | None = None) -> str:
    items = sorted((extra or {}).items())
    return _hash([previous, text, *(f"{k}={v}" for k, v in items)])


def run_extra(env: Mapping[str, str], user: str, workdir: str, shell: Sequence[str]) -> dict[str, str]:
    """What a RUN's result depends on besides its text."""
    return {
        "env": json.dumps(sorted(env.items())),
        "user": user,
        "workdir": workdir,
        "shell": json.dumps(list(shell)),
    }


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _entry_line(name: str, path: Path, *, follow: bool) -> str:
    st = os.stat(path) if follow else os.lstat(path)
    line = f"{name}\0{stat.S_IFMT(st.st_mode):o}\0{stat.S_IMODE(st.st_mode):o}"
    if stat.S_ISREG(st.st_mode):
        line += f"\0{st.st_size}\0{_file_sha256(path)}"
    elif stat.S_ISLNK(st.st_mode):
        line += f"\0{os.readlink(path)}"
    return line


def sources_digest(tree: SourceTree, patterns: Sequence[str], excludes: Sequence[str] = ()) -> str:
    """The content and metadata of every file COPY/ADD would read: resolved and walked as the copy does.

    Raises what resolving raises (a missing source): the caller then runs the step, which reports it properly."""
    ignore = DockerIgnore.parse("\n".join(excludes), "--exclude") if excludes else None
    lines: list[str] = []
    for src in tree.resolve(patterns) if patterns else []:
        if ignore is not None and ignore.matches(src.rel or src.name):
            continue
        lines.append(f"source\0{src.name}\0{src.rel}\0{src.is_dir}")
        if not src.is_dir:
            lines.append(_entry_line("", src.path, follow=True))  # a named file's top-level link is followed
            continue
        lines.append(_entry_line(".", src.path, follow=True))
        for rel in tree.walk(src):
            if ignore is not None and ignore.matches(rel):
                continue
            lines.append(_entry_line(rel, src.path / rel, follow=False))
    return _hash(lines)


# -- the local store -------------------------------------------------------------------------------------------


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


def cache_repository(opts: BuildOptions) -> str | None:
    """The registry repository of the layer cache: --cache-repo, else (kaniko) ``<first destination>/cache`` when
    the image is pushed — unless --cache-dir asks for a local cache; None for a local cache."""
    if opts.cache_repo:
        return opts.cache_repo
    if opts.destinations and not opts.no_push and opts.cache_dir is None:
        return Reference.parse(opts.destinations[0]).name + "/cache"
    return None


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
        client = RegistryClient(self.registry, self.pull_opts, pulling=True)
        try:
            fetched = fetch_manifest(client, ref)
            if fetched.media_type not in mt.MANIFEST_TYPES:
                return None
            manifest = Manifest.from_bytes(fetched.data, fetched.media_type, f"cache entry {ref}")
            config = ImageConfig.from_bytes(self._config_bytes(client, ref, manifest.config), f"cache entry {ref}")
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

    def _config_bytes(self, client: RegistryClient, ref: Reference, desc: Descriptor) -> bytes:
        if desc.size > _MAX_CONFIG:
            raise ImageFormatError(f"config of {ref} is {desc.size} bytes")
        resp = client.request(
            "GET",
            f"/v2/{self.repository}/blobs/{desc.digest}",
            scopes=[pull_scope(self.repository)],
            reference=str(ref),
            stream=True,
        )
        if resp.status_code != 200:
            raise client.fail(resp, f"fetching config {desc.digest}", str(ref))
        with resp:
            data = resp.raw.read(_MAX_CONFIG + 1, decode_content=True)
        actual = sha256_digest(data)
        if actual != desc.digest:
            raise ImageFormatError(f"config of {ref}: digest mismatch: expected {desc.digest}, got {actual}")
        return bytes(data)

    def fetch(self, entry: CacheEntry, into: BlobStore) -> bool:
        """Bring an entry's layer blob into ``into``, verified as it streams in; False (a miss) on any failure."""
        if entry.empty or into.has(entry.digest):
            return True
        if self._unreachable:
            return False
        ref = str(Reference(self.registry, self.repository, None, entry.digest))
        client = RegistryClient(self.registry, self.pull_opts, pulling=True)
        try:
            resp = client.request(
                "GET",
                f"/v2/{self.repository}/blobs/{entry.digest}",
                scopes=[pull_scope(self.repository)],
                reference=ref,
                stream=True,
            )
            if resp.status_code != 200:
                raise client.fail(resp, f"fetching layer {entry.digest}", ref)
            with resp:
                into.ingest(resp.iter_content(CHUNK), entry.digest, entry.size, f"cached layer {entry.digest}")
        except (KilnError, OSError) as e:
            self._trouble("fetch cached layers", e)
            return False
        except Exception as e:  # a connection dropped mid-stream (requests' own errors): a miss all the same
            self._trouble("fetch cached layers", RegistryError(f"{type(e).__name__}: {e}", ref))
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
        config_digest = sha256_digest(config_bytes)
        config_desc = Descriptor(mt.config_media_type(docker), config_digest, len(config_bytes))
        manifest = Manifest(config_desc, layers, mt.manifest_media_type(docker))
        blobs = _EntryBlobs(source, config_digest, config_bytes)
        image = Image(manifest, manifest.to_bytes(), config, config_bytes, blobs)
        try:
            push_image(image, [str(self._ref(key))], self.push_opts)
        except (KilnError, OSError) as e:
            self._trouble("store entries", e)


def open_cache(opts: BuildOptions, warn: Callable[[str], None] | None = None) -> LayerCacheStore | None:
    """The cache a build uses, or None when --cache is off: a registry repository (--cache-repo, or inferred from
    the destination) or a local directory."""
    if not opts.cache:
        return None
    ttl = parse_duration(opts.cache_ttl) if opts.cache_ttl else DEFAULT_TTL
    repo = cache_repository(opts)
    if repo is not None:
        try:
            return RegistryLayerCache(
                repo, registry_options(opts.registry, pull=True), registry_options(opts.registry, pull=False), ttl,
                warn,
            )  # fmt: skip
        except RegistryError as e:
            raise UsageError(f"bad cache repository {repo!r}: {e.msg}", "--cache-repo") from None
    return LocalLayerCache(opts.cache_dir or opts.kiln_dir / "cache", ttl)


@dataclass
class StageCache:
    """One stage's walk along the key chain.

    ``lookups`` turns off at the first cacheable step that misses: the steps after it run on a root built afresh,
    so, as kaniko does, they run too (and refresh their entries). ``hit`` tells whether the last step replayed."""

    store: LayerCacheStore
    key: str
    lookups: bool = True
    hit: bool = False

    def fold(self, text: str, extra: Mapping[str, str] | None = None) -> str:
        """A step that makes no layer of its own (ENV, ARG, USER, ...) still moves the chain."""
        self.key = step_key(self.key, text, extra)
        return self.key
