"""Pushing while the image is still being built: blobs sent as soon as they exist (PushAhead), and a layer sent
while it is being written (LayerUpload), so that pushing costs little more than making the layers.

Both are best effort. A blob that fails here is left to push_image, which sends what a registry still lacks; a
layer whose streamed upload fails is sent again from kiln's blob store.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from kiln.oci.descriptor import Descriptor
from kiln.transports.image import BlobReader
from kiln.transports.registry.client import RegistryClient, push_scope
from kiln.transports.registry.options import RegistryOptions
from kiln.transports.registry.push import OCTET, BlobPusher, patch_chunk, upload_request, with_query
from kiln.transports.registry.reference import Reference

log = logging.getLogger("kiln.registry.push")

# A layer is streamed in PATCH requests of this size; one smaller than a chunk is pushed once made, as any blob.
STREAM_CHUNK = 8 << 20
# Chunks waiting for the upload: when the registry is slower than the layer is made, the writer waits for it
# (memory stays at a few chunks: the pieces being gathered, one waiting, one being sent) rather than the push
# falling behind.
_QUEUED_CHUNKS = 1


class LayerUpload:
    """The compressed bytes of one layer, PATCHed to an upload session while they are written; `finish` closes
    the session with the layer's digest once it is known. A write never fails: the first error stops the
    stream, and `finish` then says that the layer must be sent the ordinary way."""

    def __init__(self, client: RegistryClient, repository: str, reference: str, chunk: int = STREAM_CHUNK) -> None:
        self._client = client
        self._repository = repository
        self._reference = reference
        self._chunk = chunk
        self._pieces: list[bytes] = []  # what the compressor gave since the last chunk, kept as it came
        self._gathered = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUED_CHUNKS)
        self._thread: threading.Thread | None = None
        self._failed = False
        self._location = ""
        self._offset = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if not self._failed:
            self._pieces.append(data if isinstance(data, bytes) else bytes(data))
            self._gathered += len(data)
            if self._gathered >= self._chunk:
                self._hand_over()
        return len(data)

    def _hand_over(self) -> None:
        chunk = b"".join(self._pieces)  # bytes: requests would take a bytearray for an iterable of chunks
        self._pieces.clear()
        self._gathered = 0
        if self._thread is None:
            self._thread = threading.Thread(target=self._upload, name="kiln-layer-upload", daemon=True)
            self._thread.start()
        self._queue.put(chunk)

    def finish(self, desc: Descriptor) -> bool:
        """Send what is left and close the session under `desc`'s digest; False if the layer was not streamed (too
        small) or the stream failed."""
        if self._thread is None or self._failed:
            self.abort()
            return False
        if self._pieces:
            self._hand_over()
        self._queue.put(None)
        self._thread.join()
        if self._failed or self._offset != desc.size:
            return False
        try:
            url = with_query(self._location, digest=desc.digest)
            resp = upload_request(self._client, self._reference, "PUT", url, [push_scope(self._repository)], None,
                                  {"Content-Type": OCTET, "Content-Length": "0"})  # fmt: skip
            resp.close()
        except Exception as e:  # noqa: BLE001 - the layer is sent again from the store
            log.debug("%s: closing the streamed upload of %s failed: %s", self._reference, desc.digest, e)
            return False
        return resp.status_code == 201

    def abort(self) -> None:
        """Stop streaming (the layer failed, or is not pushed this way after all). Not waited for: a ^C must not
        wait for a slow registry to answer the request in flight; the thread ends with it."""
        self._failed = True
        self._pieces.clear()
        if self._thread is not None:
            self._drain()
            self._queue.put(None)

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def _upload(self) -> None:
        scopes = [push_scope(self._repository)]
        try:
            resp = upload_request(self._client, self._reference, "POST", f"/v2/{self._repository}/blobs/uploads/",
                                  scopes, None, {"Content-Length": "0"})  # fmt: skip
            resp.close()
            location = resp.headers.get("Location")
            if resp.status_code != 202 or not location:
                raise OSError(f"starting an upload answered {resp.status_code}")
            self._location = self._client.url(location)
            while (chunk := self._queue.get()) is not None:
                if self._failed:
                    continue
                self._location = patch_chunk(self._client, self._reference, scopes, self._location, self._offset,
                                             len(chunk), chunk)  # fmt: skip
                self._offset += len(chunk)
        except Exception as e:  # noqa: BLE001 - the layer is sent again from the store
            log.debug("%s: streaming a layer failed: %s", self._reference, e)
            self._failed = True
            # Taken until the writer's end (finish or abort puts it), so a writer waiting for room goes on; not
            # drained here, lest the end itself be thrown away and `finish` wait for this thread forever.
            while self._queue.get() is not None:
                pass


class PushAhead:
    """Blobs of an image still being built, sent to its destinations while the build goes on (a base image's
    layers while the steps run, each step's layer while it is written or once it is made), so that the push at
    the end has only the config and the manifests left to send. Best effort: a blob that fails here is sent
    again, or its error reported, by push_image, which sends only what a registry lacks."""

    def __init__(self, refs: list[str], opts: RegistryOptions) -> None:
        self._opts = opts
        self._targets = list({(r.registry, r.repository): r for r in map(Reference.parse, refs)}.items())
        self._clients: dict[str, RegistryClient] = {}
        self._sent: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, opts.max_concurrent_transfers),
                                        thread_name_prefix="kiln-push-ahead")  # fmt: skip
        self._futures: list[Future[object]] = []

    def _client(self, registry: str) -> RegistryClient:
        with self._lock:
            return self._clients.get(registry) or self._clients.setdefault(
                registry, RegistryClient(registry, self._opts))

    def stream(self) -> LayerUpload | None:
        """Where a layer about to be written streams its compressed bytes: the first destination's repository
        (the others get it once it is made, as any blob)."""
        if not self._targets:
            return None
        (registry, repository), ref = self._targets[0]
        return LayerUpload(self._client(registry), repository, str(ref))

    def streamed(self, upload: LayerUpload, desc: Descriptor, blobs: BlobReader) -> None:
        """The layer `upload` streamed is made: close its upload (sending it from `blobs` if the stream failed),
        and send it to the other destinations."""
        (registry, repository), ref = self._targets[0]
        with self._lock:
            first = (repository, desc.digest) not in self._sent
            self._sent.add((repository, desc.digest))
        if first:
            pusher = BlobPusher(self._client(registry), repository, str(ref), blobs, {}, self._opts)
            self._futures.append(self._pool.submit(lambda: upload.finish(desc) or pusher.push(desc)))
        else:  # the same layer made twice (by two platforms): sent once
            upload.abort()
        self.send(desc, blobs)

    def send(self, desc: Descriptor, blobs: BlobReader) -> None:
        if desc.urls:
            return  # a foreign layer stays where its URLs say
        for (registry, repository), ref in self._targets:
            with self._lock:
                if (repository, desc.digest) in self._sent:
                    continue
                self._sent.add((repository, desc.digest))
            pusher = BlobPusher(self._client(registry), repository, str(ref), blobs, {}, self._opts)
            self._futures.append(self._pool.submit(pusher.push, desc))

    def wait(self) -> None:
        """Until every blob sent ahead is up (or has failed: push_image will see to it)."""
        for future in self._futures:
            try:
                future.result()
            except Exception as e:  # noqa: BLE001 - reported by push_image, which sends the blob again
                log.debug("pushing ahead failed, left to the push: %s", e)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for client in self._clients.values():
            client.close()
