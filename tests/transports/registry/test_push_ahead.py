"""Pushing while building against a real registry: a layer streamed as it is written, closed under its digest
once known, and sent from the store instead when the stream fails or the layer is too small to stream."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time

import requests
from faultproxy import Fault

from conftest import DictBlobs
from kiln.oci.descriptor import Descriptor
from kiln.transports.blobstore import BlobStore
from kiln.transports.registry.ahead import STREAM_CHUNK, LayerUpload, PushAhead
from kiln.transports.registry.options import RegistryOptions
from kiln.transports.registry.sources import StoreBlobs

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _blob(size: int) -> tuple[bytes, Descriptor]:
    data = os.urandom(size)
    return data, Descriptor(LAYER, "sha256:" + hashlib.sha256(data).hexdigest(), size)


def _stream(ahead: PushAhead, data: bytes, desc: Descriptor, on_piece=None) -> DictBlobs:  # type: ignore[no-untyped-def]
    upload = ahead.stream()
    assert upload is not None
    piece = 1 << 20
    for offset in range(0, len(data), piece):
        upload.write(data[offset:offset + piece])
        if on_piece is not None:
            on_piece(offset + piece)
    blobs = DictBlobs({desc.digest: data})
    ahead.streamed(upload, desc, blobs)
    ahead.wait()
    return blobs


def test_a_layer_goes_up_while_it_is_written_and_is_closed_under_its_digest(registry, plain_opts) -> None:
    data, desc = _blob(2 * STREAM_CHUNK + 12345)
    repo = f"kiln/stream-{desc.digest[7:19]}"
    mark = registry.log_mark()
    patched_while_writing: list[int] = []

    def look(written: int) -> None:
        # Two chunks are handed over and the writer is not done: the first reaches the registry meanwhile.
        if written != 2 * STREAM_CHUNK:
            return
        deadline = time.monotonic() + 20
        while not patched_while_writing and time.monotonic() < deadline:
            patched_while_writing.extend(
                1 for method, _, status in registry.requests_since(mark) if method == "PATCH" and status == 202)
            time.sleep(0.05)

    ahead = PushAhead([registry.ref(repo, "t")], plain_opts)
    try:
        blobs = _stream(ahead, data, desc, look)
    finally:
        ahead.close()
    assert patched_while_writing, "no chunk reached the registry while the layer was written"
    status, _, body = registry.get(f"/v2/{repo}/blobs/{desc.digest}")
    assert status == 200 and body == data
    requests = registry.requests_since(mark)
    assert [m for m, _, _ in requests if m in ("POST", "PATCH", "PUT")] == ["POST", "PATCH", "PATCH", "PATCH", "PUT"]
    assert blobs.opened == []  # nothing was read back from the store


def test_a_failed_stream_is_sent_from_the_store(fault_proxy, registry, plain_opts) -> None:
    data, desc = _blob(STREAM_CHUNK + 4096)
    repo = f"kiln/stream-fail-{desc.digest[7:19]}"
    fault_proxy.add(Fault("PATCH", "/blobs/uploads/", "status", status=500, times=1))
    ahead = PushAhead([f"{fault_proxy.address}/{repo}:t"], plain_opts)
    try:
        blobs = _stream(ahead, data, desc)
    finally:
        ahead.close()
    assert ("PATCH", 500) in [(m, s) for m, _, s in fault_proxy.seen]
    assert blobs.opened == [desc.digest]
    status, _, body = registry.get(f"/v2/{repo}/blobs/{desc.digest}")
    assert status == 200 and body == data


def test_a_layer_smaller_than_a_chunk_is_pushed_once_made(registry, plain_opts: RegistryOptions) -> None:
    data, desc = _blob(100_000)
    repo = f"kiln/stream-small-{desc.digest[7:19]}"
    mark = registry.log_mark()
    ahead = PushAhead([registry.ref(repo, "t")], plain_opts)
    try:
        blobs = _stream(ahead, data, desc)
    finally:
        ahead.close()
    assert blobs.opened == [desc.digest]
    assert "PATCH" not in [m for m, _, _ in registry.requests_since(mark)]
    status, _, body = registry.get(f"/v2/{repo}/blobs/{desc.digest}")
    assert status == 200 and body == data


def test_the_same_layer_made_twice_is_sent_once(registry, plain_opts: RegistryOptions) -> None:
    # Two platforms' target stages can make the same layer: the second stream is dropped.
    data, desc = _blob(STREAM_CHUNK + 1)
    repo = f"kiln/stream-twice-{desc.digest[7:19]}"
    mark = registry.log_mark()
    ahead = PushAhead([registry.ref(repo, "t")], plain_opts)
    try:
        _stream(ahead, data, desc)
        _stream(ahead, data, desc)
    finally:
        ahead.close()
    puts = [uri for method, uri, status in registry.requests_since(mark) if method == "PUT" and status == 201]
    assert sum(desc.digest.split(":")[1] in uri for uri in puts) == 1, puts
    status, _, body = registry.get(f"/v2/{repo}/blobs/{desc.digest}")
    assert status == 200 and body == data


def test_a_base_layer_still_arriving_is_pushed_whole_at_the_first_try(registry, plain_opts, tmp_path) -> None:
    # A cold build pushes its base's layers ahead while they are still being pulled into the store: the upload
    # reads the blob as it grows, and must say its length (sent chunked, registries answer 500, and the push
    # waited half a second to try again).
    data, desc = _blob(3 << 20)
    repo = f"kiln/arriving-{desc.digest[7:19]}"
    store = BlobStore(tmp_path / "store")
    receiver = store.receive(desc.digest, desc.size)
    assert receiver is not None
    receiver.write(data[: 1 << 20])
    mark = registry.log_mark()
    ahead = PushAhead([registry.ref(repo, "t")], plain_opts)
    try:
        ahead.send(desc, StoreBlobs(store))
        time.sleep(0.3)
        receiver.write(data[1 << 20:])
        receiver.commit()
        ahead.wait()
    finally:
        ahead.close()
    statuses = [(m, s) for m, _, s in registry.requests_since(mark)]
    assert [(m, s) for m, s in statuses if s >= 400 and m != "HEAD"] == [], statuses
    status, _, body = registry.get(f"/v2/{repo}/blobs/{desc.digest}")
    assert status == 200 and body == data


class _FailingSecondPatch:
    """A registry client whose second PATCH fails, answering slowly enough that the writer has already put its
    end on the queue: the upload must still stop (it once threw the end away and waited for it forever)."""

    def __init__(self) -> None:
        self.patches = 0

    def url(self, location: str) -> str:
        return location

    def request(self, method: str, url: str, **_: object) -> requests.Response:
        resp = requests.Response()
        resp.raw = io.BytesIO()
        resp.status_code = 202
        resp.headers["Location"] = "/upload"
        if method == "PATCH":
            self.patches += 1
            if self.patches == 2:
                time.sleep(0.3)
                raise OSError("connection dropped")
        return resp


def test_a_stream_failing_at_its_last_chunk_ends() -> None:
    chunk = 1 << 16
    upload_client = _FailingSecondPatch()
    upload = LayerUpload(upload_client, "kiln/x", "r", chunk=chunk)  # type: ignore[arg-type]
    data, desc = _blob(chunk + 100)
    upload.write(data[:chunk])  # the first chunk, sent
    upload.write(data[chunk:])  # the rest, sent by finish: its PATCH fails after finish has put the end
    done: list[bool] = []
    finisher = threading.Thread(target=lambda: done.append(upload.finish(desc)), daemon=True)
    finisher.start()
    finisher.join(10)
    assert done == [False]
    assert upload_client.patches == 2
