"""Pulling an image: manifest (through an index to the wanted platform), config and layers into a BlobStore.

Blobs stream into the store and are verified on the way in; a blob already there is not fetched again. The
returned Image reads its blobs from the store and knows which repository they came from (for mounts on push).

Layers keep arriving after pull_image returns (several at once, each resumed where a dropped connection left
it): a build extracts a layer while it downloads, reading it from the store as it grows, instead of waiting for
every layer first. The store holds a reader back until the blob is verified, and gives it the download's
error instead (kiln.transports.blobstore), so what pull_image returns is used exactly as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import requests
import urllib3

from kiln.errors import DigestMismatch, ImageFormatError, RegistryError
from kiln.oci import mediatypes as mt
from kiln.oci.config import ImageConfig
from kiln.oci.descriptor import Descriptor, pick_platform, platforms_offered
from kiln.oci.digest import new_hasher, sha256_digest
from kiln.oci.manifest import Index, Manifest, sniff_media_type
from kiln.oci.platform import Platform
from kiln.transports.blobstore import CHUNK, BlobReceiver, BlobStore
from kiln.transports.image import Image
from kiln.transports.registry.client import RegistryClient, is_timeout, pull_scope
from kiln.transports.registry.mirrors import candidate_references
from kiln.transports.registry.options import RegistryOptions
from kiln.transports.registry.reference import Reference
from kiln.transports.registry.retry import TRANSIENT_ERRORS
from kiln.transports.registry.sources import BlobOrigin, StoreBlobs

log = logging.getLogger("kiln.registry.pull")

MANIFEST_ACCEPT = ", ".join([mt.OCI_MANIFEST, mt.DOCKER_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST])
_MAX_MANIFEST = 8 << 20  # a manifest is JSON of a few KiB; refuse to buffer something absurd


class RegistryDigestMismatch(RegistryError, DigestMismatch):
    """Bytes from a registry that do not hash to the digest asked for; nothing of them is kept."""

    def __init__(self, what: str, expected: str, actual: str, reference: str) -> None:
        Exception.__init__(self, what)
        self.msg = f"{what}: digest mismatch: expected {expected}, got {actual}"
        self.reference = reference
        self.status = None
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class Fetched:
    """A manifest or index as the registry served it, with the reference it was found under."""

    reference: Reference
    data: bytes
    media_type: str
    digest: str

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.data))


def _read_body(client: RegistryClient, resp: requests.Response, limit: int, what: str, shown: str) -> bytes:
    """Up to ``limit`` bytes of a response's body; a registry falling silent or dropping the connection on
    the way is a one-line RegistryError naming it (urllib3's own errors reach no caller)."""
    try:
        with resp:
            return bytes(resp.raw.read(limit, decode_content=True))
    except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as e:
        if is_timeout(e):
            raise client.silent(e, f"reading {what}", shown) from None
        raise RegistryError(f"reading {what} from {client.registry} failed: {type(e).__name__}", shown) from None


def _verify_manifest(data: bytes, expected: str | None, header: str | None, ref: Reference) -> str:
    algo = (expected or header or "sha256:").partition(":")[0]
    try:
        hasher = new_hasher(expected or header or "sha256:" + "0" * 64)
    except ImageFormatError as e:
        raise RegistryError(f"manifest digest: {e}", str(ref)) from None
    hasher.update(data)
    actual = f"{algo}:{hasher.hexdigest()}"
    if expected and actual != expected:
        raise RegistryDigestMismatch("manifest", expected, actual, str(ref))
    if header and not expected and header != actual:
        raise RegistryDigestMismatch("manifest (Docker-Content-Digest)", header, actual, str(ref))
    return actual


def fetch_manifest(client: RegistryClient, ref: Reference, identifier: str | None = None) -> Fetched:
    """GET a manifest or index by tag or digest, verifying it against the digest it was asked by."""
    ident = identifier or ref.identifier
    resp = client.request(
        "GET",
        f"/v2/{ref.repository}/manifests/{ident}",
        scopes=[pull_scope(ref.repository)],
        reference=str(ref),
        headers={"Accept": MANIFEST_ACCEPT},
        stream=True,
    )
    if resp.status_code == 404:
        raise client.fail(resp, f"manifest {ident} not found", str(ref))
    if resp.status_code != 200:
        raise client.fail(resp, f"fetching manifest {ident}", str(ref))
    data = _read_body(client, resp, _MAX_MANIFEST + 1, f"manifest {ident}", str(ref))
    if len(data) > _MAX_MANIFEST:
        raise RegistryError(f"manifest {ident} is larger than {_MAX_MANIFEST} bytes", str(ref))
    expected = ident if ident.startswith(("sha256:", "sha512:")) else None
    digest = _verify_manifest(data, expected, resp.headers.get("Docker-Content-Digest"), ref)
    declared = resp.headers.get("Content-Type", "").split(";")[0].strip() or None
    try:
        media_type = sniff_media_type(data, declared)
    except ImageFormatError as e:
        raise RegistryError(str(e), str(ref)) from None
    return Fetched(ref, data, media_type, digest)


def choose_platform(index: Index, platform: Platform, ref: str) -> Descriptor:
    """The index entry for a platform (oci.descriptor.pick_platform)."""
    chosen = pick_platform(index.manifests, platform)
    if chosen is None:
        offered = platforms_offered(index.manifests)
        raise RegistryError(f"no image for platform {platform}; available: {offered}", ref)
    return chosen


def fetch_blob(client: RegistryClient, ref: Reference, desc: Descriptor, store: BlobStore, what: str) -> None:
    """Stream a blob of ref's repository into the store, verified. Nothing to do when the store has it."""
    receiver = store.receive(desc.digest, desc.size, f"{what} {desc.digest}")
    if receiver is not None:
        _download(client, ref, desc, receiver, what)


def _download(client: RegistryClient, ref: Reference, desc: Descriptor, receiver: BlobReceiver, what: str) -> None:
    shown = str(ref)
    with receiver:
        try:
            for chunk in _blob_chunks(client, ref, desc, what):
                receiver.write(chunk)
            receiver.commit()
        except DigestMismatch as e:
            raise RegistryDigestMismatch(f"{what} {desc.digest}", e.expected, e.actual, shown) from None
        except ImageFormatError as e:
            raise RegistryError(str(e), shown) from None


def _blob_chunks(client: RegistryClient, ref: Reference, desc: Descriptor, what: str) -> Iterator[bytes]:
    """A blob's bytes as they arrive. A connection that drops is opened again where it stopped (a Range request;
    from a registry that ignores Range, the bytes already had are read again and dropped), so a reader of the
    blob never has to start over; the digest is checked over what was kept."""
    shown = str(ref)
    policy = client.retry
    had = 0
    for attempt in range(policy.attempts):
        resp = client.request(
            "GET",
            f"/v2/{ref.repository}/blobs/{desc.digest}",
            scopes=[pull_scope(ref.repository)],
            reference=shown,
            stream=True,
            headers={"Range": f"bytes={had}-"} if had else None,
        )
        resumed = resp.status_code == 206 and had and _range_start(resp) == had
        if resp.status_code != 200 and not resumed:
            raise client.fail(resp, f"fetching {what} {desc.digest}", shown)
        skip = 0 if resumed else had
        try:
            with resp:
                for chunk in resp.iter_content(CHUNK):
                    if skip:
                        dropped = min(skip, len(chunk))
                        chunk, skip = chunk[dropped:], skip - dropped
                        if not chunk:
                            continue
                    had += len(chunk)
                    yield chunk
            if skip:
                raise RegistryError(f"{what} {desc.digest}: shorter on a second read", shown)
            return
        except TRANSIENT_ERRORS as e:
            if is_timeout(e):  # silence is not retried (see client.py)
                raise client.silent(e, f"reading {what} {desc.digest}", shown) from None
            log.debug("%s %s: %s on try %d after %d bytes", shown, desc.digest, type(e).__name__, attempt + 1, had)
            if attempt + 1 >= policy.attempts:
                raise RegistryError(
                    f"{what} {desc.digest}: transfer failed after {attempt + 1} tries ({type(e).__name__})", shown
                ) from None
            policy.wait(attempt)
    raise AssertionError("unreachable")


def _range_start(resp: requests.Response) -> int | None:
    """The first byte a 206 answer holds (Content-Range: bytes START-END/TOTAL)."""
    unit, _, span = resp.headers.get("Content-Range", "").partition(" ")
    start = span.partition("-")[0]
    return int(start) if unit == "bytes" and start.isdigit() else None


def read_small_blob(client: RegistryClient, ref: Reference, desc: Descriptor, limit: int, what: str) -> bytes:
    """A small blob (a config) into memory, verified; one larger than `limit` bytes is refused unread."""
    shown = str(ref)
    if desc.size > limit:
        raise ImageFormatError(f"{what} of {shown} is {desc.size} bytes")
    resp = client.request("GET", f"/v2/{ref.repository}/blobs/{desc.digest}", scopes=[pull_scope(ref.repository)],
                          reference=shown, stream=True)
    if resp.status_code != 200:
        raise client.fail(resp, f"fetching {what} {desc.digest}", shown)
    data = _read_body(client, resp, limit + 1, f"{what} {desc.digest}", shown)
    actual = sha256_digest(data)
    if actual != desc.digest:
        raise ImageFormatError(f"{what} of {shown}: digest mismatch: expected {desc.digest}, got {actual}")
    return bytes(data)


class _Arriving:
    """Layers downloading into the store after pull_image returned, a few at a time, bottom first; the client is
    closed when the last is done. Threads are daemons: a build that ends (or fails) without reading a layer does
    not wait for it, and a temporary file it leaves is not locked any more, so prune removes it."""

    def __init__(self, client: RegistryClient, ref: Reference, jobs: list[tuple[Descriptor, BlobReceiver]]) -> None:
        self._client = client
        self._ref = ref
        self._jobs = jobs
        self._lock = threading.Lock()
        self._running = 0

    def start(self, workers: int) -> None:
        if not self._jobs:
            self._client.close()
            return
        self._jobs.reverse()  # popped from the end: the bottom layer first, the one a build unpacks first
        self._running = max(1, min(workers, len(self._jobs)))
        for i in range(self._running):
            threading.Thread(target=self._work, name=f"kiln-pull-{i}", daemon=True).start()

    def _work(self) -> None:
        try:
            while True:
                with self._lock:
                    if not self._jobs:
                        break
                    desc, receiver = self._jobs.pop()
                try:
                    _download(self._client, self._ref, desc, receiver, "layer")
                except Exception as e:  # noqa: BLE001 - the store hands it to whoever reads the layer
                    log.debug("%s: layer %s not pulled: %s", self._ref, desc.digest, e)
        finally:
            with self._lock:
                self._running -= 1
                last = self._running == 0
            if last:
                self._client.close()


def _resolve_fetched(ref: Reference, opts: RegistryOptions) -> tuple[RegistryClient, Fetched]:
    """The manifest or index for a reference, from the first mirror that has it (then the registry itself)."""
    errors: list[RegistryError] = []
    for candidate in candidate_references(ref, opts):
        client = RegistryClient(candidate.registry, opts, pulling=True)
        try:
            return client, fetch_manifest(client, candidate)
        except RegistryError as e:
            client.close()
            if candidate != ref:
                log.info("mirror %s failed for %s: %s", candidate.registry, ref, e.msg)
            errors.append(e)
    last = errors[-1]
    if len(errors) > 1:
        tried = "; ".join(f"{e.reference}: {e.msg}" for e in errors)
        raise type(last)(f"not found in any of the registries tried: {tried}", str(ref), last.status)
    raise last


def resolve(ref: str, opts: RegistryOptions) -> Descriptor:
    """The descriptor (media type, digest, size) a reference points to now."""
    client, fetched = _resolve_fetched(Reference.parse(ref), opts)
    client.close()
    return fetched.descriptor()


def fetch_image_index(ref: str, opts: RegistryOptions) -> Index | None:
    """The index (manifest list) a reference names, or None when it names a single image manifest."""
    client, fetched = _resolve_fetched(Reference.parse(ref), opts)
    client.close()
    if fetched.media_type not in mt.INDEX_TYPES:
        return None
    try:
        return Index.from_bytes(fetched.data, fetched.media_type, f"index of {ref}")
    except ImageFormatError as e:
        raise RegistryError(str(e), ref) from None


def pull_image(ref: str, platform: Platform, store: BlobStore, opts: RegistryOptions) -> Image:
    """Pull an image for a platform into a store; the Image's blobs are then read from the store."""
    parsed = Reference.parse(ref)
    client, fetched = _resolve_fetched(parsed, opts)
    try:
        source = fetched.reference
        for _ in range(4):  # an index of indexes is legal; a deeper chain is not something to follow forever
            if fetched.media_type not in mt.INDEX_TYPES:
                break
            try:
                index = Index.from_bytes(fetched.data, fetched.media_type, f"index of {ref}")
            except ImageFormatError as e:
                raise RegistryError(str(e), ref) from None
            chosen = choose_platform(index, platform, ref)
            fetched = fetch_manifest(client, source, chosen.digest)
        if fetched.media_type not in mt.MANIFEST_TYPES:
            raise RegistryError(f"unsupported manifest type {fetched.media_type}", ref)
        try:
            manifest = Manifest.from_bytes(fetched.data, fetched.media_type, f"manifest of {ref}")
        except ImageFormatError as e:
            raise RegistryError(str(e), ref) from None
        # The config first: small, and a bad one makes fetching the layers pointless.
        fetch_blob(client, source, manifest.config, store, "config")
        config_bytes = store.read_bytes(manifest.config.digest)
        try:
            config = ImageConfig.from_bytes(config_bytes, f"config of {ref}")
        except ImageFormatError as e:
            raise RegistryError(str(e), ref) from None
        store.put_bytes(fetched.data)  # kept beside the blobs so an offline tool can find it by digest
        origin = BlobOrigin(source.registry, source.repository)
        origins = {d.digest: origin for d in (manifest.config, *manifest.layers)}
        image = Image(manifest, fetched.data, config, config_bytes, StoreBlobs(store, origins))
        jobs = _receive_layers(store, manifest.layers)
    except BaseException:
        client.close()
        raise
    _Arriving(client, source, jobs).start(opts.max_concurrent_transfers)
    return image


def _receive_layers(store: BlobStore, layers: Sequence[Descriptor]) -> list[tuple[Descriptor, BlobReceiver]]:
    """A receiver for every layer the store lacks, made before pull_image returns, so that the store hands each
    one out (as it arrives) from then on."""
    jobs: list[tuple[Descriptor, BlobReceiver]] = []
    try:
        for d in _unique(layers):
            receiver = store.receive(d.digest, d.size, f"layer {d.digest}")
            if receiver is not None:
                jobs.append((d, receiver))
    except BaseException as e:
        for _, receiver in jobs:
            receiver.__exit__(type(e), e, None)
        raise
    return jobs


def _unique(layers: Sequence[Descriptor]) -> list[Descriptor]:
    """The layers to fetch, each once (an image may list one blob twice); foreign layers (urls) left out."""
    seen: set[str] = set()
    out = []
    for d in layers:
        if not d.urls and d.digest not in seen:
            seen.add(d.digest)
            out.append(d)
    return out
