"""A blob read while it is being received: its end only once it is verified and in place, or the error."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from kiln.errors import DigestMismatch
from kiln.transports.blobstore import BlobStore

DATA = bytes(range(256)) * 4096  # 1 MiB
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


def _read_in_thread(store: BlobStore, digest: str) -> tuple[threading.Thread, dict[str, object]]:
    out: dict[str, object] = {}
    reader = store.open(digest)

    def read() -> None:
        try:
            with reader:
                out["data"] = reader.read()
        except Exception as e:  # noqa: BLE001 - the test looks at it
            out["error"] = e

    thread = threading.Thread(target=read)
    thread.start()
    return thread, out


def test_a_reader_gets_the_end_only_after_the_commit(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    receiver = store.receive(DIGEST, len(DATA), "blob")
    assert receiver is not None
    with receiver:
        receiver.write(DATA[:1000])
        thread, out = _read_in_thread(store, DIGEST)
        receiver.write(DATA[1000:])
        thread.join(0.3)
        assert thread.is_alive(), "the reader saw an end before the blob was verified"
        receiver.commit()
    thread.join(5)
    assert out == {"data": DATA}
    assert store.has(DIGEST) and store.read_bytes(DIGEST) == DATA


def test_a_reader_of_a_corrupt_blob_gets_the_error_and_nothing_is_kept(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    receiver = store.receive(DIGEST, len(DATA), "blob")
    assert receiver is not None
    with pytest.raises(DigestMismatch), receiver:
        receiver.write(DATA[:1000])
        thread, out = _read_in_thread(store, DIGEST)
        receiver.write(b"x" + DATA[1001:])
        receiver.commit()
    thread.join(5)
    assert isinstance(out.get("error"), DigestMismatch)
    assert not store.has(DIGEST)
    assert list((tmp_path / ".tmp").iterdir()) == []


def test_has_waits_for_a_blob_being_received(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    receiver = store.receive(DIGEST, len(DATA), "blob")
    assert receiver is not None
    answers: list[bool] = []
    asker = threading.Thread(target=lambda: answers.append(store.has(DIGEST)))
    with receiver:
        asker.start()
        receiver.write(DATA)
        asker.join(0.2)
        assert asker.is_alive()
        receiver.commit()
    asker.join(5)
    assert answers == [True]
    assert store.receive(DIGEST, len(DATA), "blob") is None  # there now: nothing to receive
