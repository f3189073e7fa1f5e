"""Pushing an image: blobs (layers, then config) that the registry lacks, then the manifest under each tag. An
index: each image's blobs and then its manifest by digest, then the index under each tag.

A blob the registry already has in the repository is skipped (HEAD); one it has in another repository that kiln
pulled it from is mounted; any other is uploaded, in one PUT or, above a threshold, in PATCH chunks. Every blob
is in place before a manifest that names it is written, and any failure raises: a partial push never looks done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from kiln.errors import RegistryError
from kiln.oci.descriptor import Descriptor
from kiln.transports.image import BlobReader, Built, ImageIndex, images_of
from kiln.transports.registry.client import Body, RegistryClient, pull_scope, push_scope
from kiln.transports.registry.options import RegistryOptions
from kiln.transports.registry.parallel import run_all
from kiln.transports.registry.reference import Reference
from kiln.transports.registry.sources import BlobOrigin, KnowsBlobOrigins

log = logging.getLogger("kiln.registry.push")

OCTET = "application/octet-stream"

# What registries answer when a push would move an immutable tag (kaniko's list): Artifact Registry, then ECR.
IMMUTABLE_TAG_MESSAGES = (
    "The repository has enabled tag immutability",
    "cannot be overwritten because the repository is immutable",
)


def is_immutable_tag_error(error: RegistryError) -> bool:
    return any(m in error.msg for m in IMMUTABLE_TAG_MESSAGES)


def with_query(url: str, **extra: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(extra.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


class _LimitedReader:
    """At most ``limit`` bytes of a stream, as a file-like body whose length requests can see."""

    def __init__(self, f: BinaryIO, limit: int) -> None:
        self._f = f
        self._left = limit
        self.len = limit

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._f.read(n)
        self._left -= len(data)
        return data


class _SizedBlob(_LimitedReader):
    """A whole blob as a body of known length, closed with the request. A blob still arriving in the store (a
    base layer pushed ahead while it is pulled) reads as it grows and has no size of its own: without one,
    requests would send it chunked beside the Content-Length, which registries refuse."""

    def close(self) -> None:
        self._f.close()


class BlobPusher:
    def __init__(
        self,
        client: RegistryClient,
        repository: str,
        reference: str,
        blobs: BlobReader,
        origins: Mapping[str, BlobOrigin],
        opts: RegistryOptions,
    ) -> None:
        self.client = client
        self.repository = repository
        self.reference = reference
        self.blobs = blobs
        self.origins = origins
        self.opts = opts

    def origin(self, digest: str) -> BlobOrigin | None:
        if digest in self.origins:
            return self.origins[digest]
        if isinstance(self.blobs, KnowsBlobOrigins):
            return self.blobs.blob_origin(digest)
        return None

    def exists(self, desc: Descriptor) -> bool:
        resp = self.client.request(
            "HEAD",
            f"/v2/{self.repository}/blobs/{desc.digest}",
            scopes=[push_scope(self.repository)],
            reference=self.reference,
        )
        resp.close()
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise self.client.fail(resp, f"checking blob {desc.digest}", self.reference)

    def push(self, desc: Descriptor) -> str:
        """Put one blob in the repository; returns how: 'exists', 'mounted' or 'uploaded'."""
        if self.exists(desc):
            return "exists"
        policy = self.client.retry
        for attempt in range(policy.attempts):
            try:
                return self._mount_or_upload(desc)
            except _UploadInterrupted as e:
                if attempt + 1 >= policy.attempts:
                    raise RegistryError(
                        f"uploading blob {desc.digest} failed after {attempt + 1} tries: {e}", self.reference
                    ) from None
                log.debug("%s: upload of %s interrupted (%s), starting again", self.reference, desc.digest, e)
                policy.wait(attempt)
        raise AssertionError("unreachable")

    def _mount_or_upload(self, desc: Descriptor) -> str:
        origin = self.origin(desc.digest)
        scopes = [push_scope(self.repository)]
        params: dict[str, str] = {}
        if origin and origin.registry == self.client.registry and origin.repository != self.repository:
            # One token for both repositories: the registry checks pull access on the source of a mount.
            scopes.append(pull_scope(origin.repository))
            params = {"mount": desc.digest, "from": origin.repository}
        resp = self.client.request(
            "POST",
            f"/v2/{self.repository}/blobs/uploads/",
            scopes=scopes,
            reference=self.reference,
            params=params,
            headers={"Content-Length": "0"},
        )
        resp.close()
        if resp.status_code == 201 and params:
            return "mounted"
        if resp.status_code != 202:
            raise self.client.fail(resp, f"starting upload of blob {desc.digest}", self.reference)
        location = resp.headers.get("Location")
        if not location:
            raise RegistryError(f"upload of blob {desc.digest}: registry gave no upload location", self.reference)
        location = self.client.url(location)
        if desc.size > self.opts.chunk_threshold:
            location = self._patch_chunks(desc, location, scopes)
            body: Body = None
        else:
            body = lambda: _SizedBlob(self.blobs.open_blob(desc), desc.size)  # noqa: E731
        resp = upload_request(
            self.client,
            self.reference,
            "PUT",
            with_query(location, digest=desc.digest),
            scopes,
            body,
            {"Content-Type": OCTET, "Content-Length": str(desc.size if body else 0)},
        )
        resp.close()
        if resp.status_code != 201:
            if resp.status_code == 400:
                raise self.client.fail(resp, f"registry refused blob {desc.digest}", self.reference)
            raise _UploadInterrupted(f"PUT answered {resp.status_code}")
        return "uploaded"

    def _patch_chunks(self, desc: Descriptor, location: str, scopes: list[str]) -> str:
        with self.blobs.open_blob(desc) as f:
            offset = 0
            while offset < desc.size:
                n = min(self.opts.chunk_size, desc.size - offset)
                reader = _LimitedReader(f, n)
                location = patch_chunk(self.client, self.reference, scopes, location, offset, n,
                                       lambda r=reader: r)  # type: ignore[misc]
                offset += n
        return location


def upload_request(
    client: RegistryClient, reference: str, method: str, url: str, scopes: list[str], body: Body,
    headers: dict[str, str],
) -> requests.Response:
    """One request of an upload session. Not retried inside: a body half-sent leaves the session in an unknown
    state, so a transport fault raises _UploadInterrupted and the whole upload starts again (or is given up)."""
    try:
        return client.request(method, url, scopes=scopes, reference=reference, headers=headers, body=body,
                              retry=False)  # fmt: skip
    except RegistryError as e:
        if e.status is not None:
            raise
        raise _UploadInterrupted(e.msg) from None


def patch_chunk(
    client: RegistryClient, reference: str, scopes: list[str], location: str, offset: int, size: int, body: Body
) -> str:
    """PATCH `size` bytes at `offset` of an upload session; return the session's next location."""
    headers = {"Content-Type": OCTET, "Content-Length": str(size), "Content-Range": f"{offset}-{offset + size - 1}"}
    resp = upload_request(client, reference, "PATCH", location, scopes, body, headers)
    resp.close()
    if resp.status_code != 202:
        raise _UploadInterrupted(f"PATCH at offset {offset} answered {resp.status_code}")
    return client.url(resp.headers.get("Location") or location)


class _UploadInterrupted(Exception):
    pass


def push_image(
    image: Built,
    refs: list[str],
    opts: RegistryOptions,
    *,
    origins: Mapping[str, BlobOrigin] | None = None,
    warn: Callable[[str], None] | None = None,
) -> str:
    """Push an image, or an index with its images, under each reference; returns the digest of what the
    references name, the same for every one. `warn` hears what does not stop the push (an immutable tag left
    as it was); default: the module's logger."""
    if not refs:
        raise RegistryError("no destination to push to")
    parsed = [Reference.parse(r) for r in refs]
    for ref in parsed:
        if ref.digest and ref.digest != image.digest:
            raise RegistryError(f"image digest is {image.digest}, not the one the destination names", str(ref))
    by_repo: dict[tuple[str, str], list[Reference]] = {}
    for ref in parsed:
        by_repo.setdefault((ref.registry, ref.repository), []).append(ref)
    for (registry, repository), targets in by_repo.items():
        client = RegistryClient(registry, opts)
        try:
            _push_to_repository(client, repository, targets, image, origins or {}, opts, warn or log.warning)
        finally:
            client.close()
    return image.digest


def _push_to_repository(
    client: RegistryClient,
    repository: str,
    targets: list[Reference],
    built: Built,
    origins: Mapping[str, BlobOrigin],
    opts: RegistryOptions,
    warn: Callable[[str], None],
) -> None:
    reference = str(targets[0])
    sent: set[str] = set()  # a blob two platforms share goes up once
    for image in images_of(built):
        pusher = BlobPusher(client, repository, reference, image.blobs, origins, opts)
        layers = list({d.digest: d for d in image.layers if not d.urls and d.digest not in sent}.values())
        run_all(pusher.push, layers, opts.max_concurrent_transfers, "kiln-push")
        sent.update(d.digest for d in layers)
        if image.manifest.config.digest not in sent:
            pusher.push(image.manifest.config)
            sent.add(image.manifest.config.digest)
        if isinstance(built, ImageIndex):
            # An index's manifests go in by digest before the index that names them.
            put = _Manifest(image.manifest.media_type, image.manifest_bytes, image.digest)
            _put_manifest(client, repository, targets[0], image.digest, put, opts, warn)
    top = (_Manifest(built.index.media_type, built.index_bytes, built.digest) if isinstance(built, ImageIndex)
           else _Manifest(built.manifest.media_type, built.manifest_bytes, built.digest))
    for ref in targets:
        _put_manifest(client, repository, ref, ref.tag or ref.digest or built.digest, top, opts, warn)


@dataclass(frozen=True)
class _Manifest:
    media_type: str
    body: bytes
    digest: str


def _put_manifest(
    client: RegistryClient,
    repository: str,
    ref: Reference,
    ident: str,
    manifest: _Manifest,
    opts: RegistryOptions,
    warn: Callable[[str], None],
) -> None:
    resp = client.request(
        "PUT",
        f"/v2/{repository}/manifests/{ident}",
        scopes=[push_scope(repository)],
        reference=str(ref),
        headers={"Content-Type": manifest.media_type},
        body=manifest.body,
    )
    if resp.status_code not in (200, 201):
        error = client.fail(resp, f"pushing manifest {ident}", str(ref))
        if opts.ignore_immutable_tag_errors and is_immutable_tag_error(error):
            warn(f"{ref}: the tag is immutable and stays as it was (--push-ignore-immutable-tag-errors)")
            return
        raise error
    resp.close()
    returned = resp.headers.get("Docker-Content-Digest")
    if returned and returned != manifest.digest:
        raise RegistryError(f"registry stored the manifest as {returned}, not {manifest.digest}", str(ref))
