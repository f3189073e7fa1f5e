"""A content-addressed store of blobs on local disk (``<root>/<algorithm>/<hex>``).

It backs the blobs/ directory of an OCI layout and kiln's own cache of pulled and built blobs. Blobs are written
to a unique temporary name and renamed into place, so two kiln processes can fill the same store at once and a
reader never sees half a blob; bytes are verified against their digest while they stream in. A temporary file
is flocked while it is written, so `kiln prune` can tell one being written from one a dead process left.

A blob being received (``receive``) can be read before it is complete: a pulled layer is extracted while it
downloads. Such a reader follows the temporary file as it grows and meets its end only once the whole blob is
verified and in place; if it is not, the reader gets the receiver's error instead, so nothing read from it is
kept. ``has``, ``size`` and copies wait for a blob being received to be done.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, cast

from kiln.errors import DigestMismatch, ImageFormatError
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import DigestingHash, new_hasher, split_digest

CHUNK = 1 << 20


class BlobWriter:
    """A temporary file in the store whose digest is learnt as it is written; ``commit`` puts it in place.
    Unhashed: the writer's producer hashes the same bytes itself (a layer's compressor) and gives the digest to
    ``commit``; hashing a layer twice costs a second of CPU per GiB."""

    def __init__(self, store: BlobStore, hashed: bool = True) -> None:
        self._store = store
        fd, name = tempfile.mkstemp(prefix=".tmp-", dir=store.tmp_dir())
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the file is closed: it is being written
        self.tmp_path = Path(name)
        self.file: BinaryIO = os.fdopen(fd, "wb")
        self.hash = DigestingHash() if hashed else None
        self._done = False

    def write(self, data: bytes) -> int:
        if self.hash is not None:
            self.hash.update(data)
        self.file.write(data)
        return len(data)

    def commit(self, digest: str | None = None) -> str:
        """Close, move into place under its digest (learnt, or given to an unhashed writer), return it."""
        self.file.close()
        if self.hash is not None:
            digest = self.hash.digest
        elif digest is None:
            raise ValueError("an unhashed blob is committed under the digest its producer computed")
        self._store._place(self.tmp_path, digest)
        self._done = True
        return digest

    def abort(self) -> None:
        if not self._done:
            self.file.close()
            with contextlib.suppress(FileNotFoundError):
                self.tmp_path.unlink()
            self._done = True


class _Arrival:
    """A blob this process is receiving: how much of its temporary file is written, and how it ended."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cond = threading.Condition()
        self.written = 0
        self.done = False
        self.error: BaseException | None = None

    def wait(self) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.done)


class BlobReceiver:
    """Writes one blob of known digest into the store, readable while it grows (BlobStore.receive).

    Use as a context manager: ``commit`` verifies it and puts it in place; leaving without a commit (an error)
    removes it, and readers get that error.
    """

    def __init__(self, store: BlobStore, digest: str, size: int | None, what: str, arrival: _Arrival, fd: int):
        self._store = store
        self.digest = digest
        self._size = size
        self._what = what
        self._arrival = arrival
        self._fd = fd
        self._hasher = new_hasher(digest)
        self._n = 0

    def write(self, data: bytes) -> None:
        self._hasher.update(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._n += len(data)
        with self._arrival.cond:
            self._arrival.written = self._n
            self._arrival.cond.notify_all()

    def commit(self) -> Path:
        """Verify the bytes written and put the blob in place (DigestMismatch or ImageFormatError if wrong)."""
        actual = f"{self.digest.partition(':')[0]}:{self._hasher.hexdigest()}"
        if actual != self.digest:
            raise DigestMismatch(self._what, self.digest, actual)
        if self._size is not None and self._n != self._size:
            raise ImageFormatError(f"{self._what}: expected {self._size} bytes, got {self._n}")
        os.close(self._fd)
        self._fd = -1
        # Under the condition: a reader opens the temporary file only while it is there.
        with self._arrival.cond:
            self._store._place(self._arrival.tmp, self.digest)
            self._end(None)
        return self._store.path(self.digest)  # (after the end: path waits for a blob being received)

    def __enter__(self) -> BlobReceiver:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if self._arrival.done:
            return
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        with self._arrival.cond:
            with contextlib.suppress(FileNotFoundError):
                self._arrival.tmp.unlink()
            # A reader in another thread gets the failure, not this thread's interruption.
            failed = exc if isinstance(exc, Exception) else None
            self._end(failed or ImageFormatError(f"{self._what}: not received"))

    def _end(self, error: BaseException | None) -> None:
        self._arrival.error = error
        self._arrival.done = True
        self._arrival.cond.notify_all()
        self._store._arrived(self.digest, self._arrival)


class _GrowingReader(io.RawIOBase):
    """A blob being received, read as it is written: its end comes once it is verified and in place."""

    def __init__(self, arrival: _Arrival, fd: int) -> None:
        self._arrival = arrival
        self._fd = fd
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview | bytearray) -> int:  # type: ignore[override]
        arrival = self._arrival
        while True:
            n = os.readv(self._fd, [buf])
            if n:
                self._pos += n
                return n
            with arrival.cond:
                arrival.cond.wait_for(lambda: arrival.done or arrival.written > self._pos)
                if arrival.error is not None:
                    raise arrival.error
                if arrival.done and arrival.written <= self._pos:
                    return 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        super().close()


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._arrivals: dict[str, _Arrival] = {}
        self._arrivals_lock = threading.Lock()

    def tmp_dir(self) -> Path:
        # Inside the store so the final rename never crosses a filesystem.
        d = self.root / ".tmp"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def path(self, digest: str) -> Path:
        """Where the blob is; one this process is receiving is waited for first."""
        self._settle(digest)
        return self._blob_path(digest)

    def _blob_path(self, digest: str) -> Path:
        algo, hexpart = split_digest(digest)
        return self.root / algo / hexpart

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def _settle(self, digest: str) -> None:
        """Wait until a blob this process is receiving is in place or given up."""
        with self._arrivals_lock:
            arrival = self._arrivals.get(digest)
        if arrival is not None:
            arrival.wait()

    def _arrived(self, digest: str, arrival: _Arrival) -> None:
        with self._arrivals_lock:
            if self._arrivals.get(digest) is arrival:
                del self._arrivals[digest]

    def receive(self, digest: str, size: int | None = None, what: str = "blob") -> BlobReceiver | None:
        """Start receiving a blob of known digest (None if the store has it). Until the receiver is done, ``open``
        reads it as it grows, and ``has`` waits for it."""
        while True:
            with self._arrivals_lock:
                current = self._arrivals.get(digest)
                if current is None:
                    if self._blob_path(digest).is_file():
                        return None
                    fd, name = tempfile.mkstemp(prefix=".tmp-", dir=self.tmp_dir())
                    fcntl.flock(fd, fcntl.LOCK_EX)  # released when the file is closed: it is being written
                    arrival = _Arrival(Path(name))
                    self._arrivals[digest] = arrival
                    return BlobReceiver(self, digest, size, what, arrival, fd)
            current.wait()  # another thread receives it: it is there after that, or this one tries again

    def digests(self) -> list[str]:
        """Every blob in the store (temporary files left out)."""
        found: list[str] = []
        with contextlib.suppress(FileNotFoundError):
            for algo in sorted(os.listdir(self.root)):
                if algo.startswith(".") or not (self.root / algo).is_dir():
                    continue
                found += [f"{algo}:{h}" for h in sorted(os.listdir(self.root / algo)) if not h.startswith(".")]
        return found

    def close(self) -> None:
        """Done with the store (a store that records its use, kiln.store.inuse, forgets it here)."""

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def open(self, digest: str) -> BinaryIO:
        with self._arrivals_lock:
            arrival = self._arrivals.get(digest)
        if arrival is not None:
            growing = self._open_arriving(arrival)
            if growing is not None:
                return growing
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise ImageFormatError(f"blob {digest} is missing from {self.root}") from None

    def _open_arriving(self, arrival: _Arrival) -> BinaryIO | None:
        with arrival.cond:
            if arrival.error is not None:
                raise arrival.error
            if arrival.done:
                return None  # in place now
            fd = os.open(arrival.tmp, os.O_RDONLY | os.O_CLOEXEC)
        return cast(BinaryIO, io.BufferedReader(_GrowingReader(arrival, fd), buffer_size=CHUNK))

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        """The BlobReader view of the store, so images built or pulled into it can read their layers."""
        return self.open(desc.digest)

    def read_bytes(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def _place(self, tmp: Path, digest: str) -> None:
        final = self._blob_path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            tmp.unlink()  # another process (or an earlier build) already has it: content is identical
            return
        os.replace(tmp, final)

    @contextlib.contextmanager
    def writer(self, hashed: bool = True) -> Iterator[BlobWriter]:
        """Write a blob whose digest is known only at the end; aborted (temp removed) on an exception."""
        w = BlobWriter(self, hashed)
        try:
            yield w
        finally:
            w.abort()

    def put_bytes(self, data: bytes) -> str:
        with self.writer() as w:
            w.write(data)
            return w.commit()

    def ingest(self, chunks: Iterable[bytes], digest: str, size: int | None = None, what: str = "blob") -> Path:
        """Store a stream under its expected digest, verifying it on the way; nothing is kept if it differs."""
        receiver = self.receive(digest, size, what)
        if receiver is None:
            return self.path(digest)
        with receiver:
            for chunk in chunks:
                receiver.write(chunk)
            return receiver.commit()

    def ingest_file(self, src: BinaryIO, digest: str, size: int | None = None, what: str = "blob") -> Path:
        return self.ingest(iter(lambda: src.read(CHUNK), b""), digest, size, what)

    def copy_from(self, other: BlobStore, digest: str) -> None:
        if self.has(digest):
            return
        with other.open(digest) as f:
            self.ingest_file(f, digest, what=f"blob {digest}")

    def link_or_copy_from(self, other: BlobStore, digest: str) -> None:
        """Hardlink a blob from another store when on the same filesystem, else copy it."""
        if self.has(digest):
            return
        src = other.path(digest)
        fd, name = tempfile.mkstemp(prefix=".tmp-", dir=self.tmp_dir())
        os.close(fd)
        tmp = Path(name)
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        self._place(tmp, digest)
