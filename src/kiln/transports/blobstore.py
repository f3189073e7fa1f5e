"""A content-addressed store of blobs on local disk (``<root>/<algorithm>/<hex>``).

It backs the blobs/ directory of an OCI layout and kiln's own cache of pulled and built blobs. Blobs are written
to a unique temporary name and renamed into place, so two kiln processes can fill the same store at once and a
reader never sees half a blob; bytes are verified against their digest while they stream in. A temporary file
is flocked while it is written, so `kiln prune` can tell one being written from one a dead process left.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from kiln.errors import DigestMismatch, ImageFormatError
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import DigestingHash, new_hasher, split_digest

CHUNK = 1 << 20


class BlobWriter:
    """A temporary file in the store whose digest is learnt as it is written; ``commit`` puts it in place."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        fd, name = tempfile.mkstemp(prefix=".tmp-", dir=store.tmp_dir())
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the file is closed: it is being written
        self.tmp_path = Path(name)
        self.file: BinaryIO = os.fdopen(fd, "wb")
        self.hash = DigestingHash()
        self._done = False

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.file.write(data)
        return len(data)

    def commit(self) -> str:
        """Close, move into place under its digest, and return that digest."""
        self.file.close()
        digest = self.hash.digest
        self._store._place(self.tmp_path, digest)
        self._done = True
        return digest

    def abort(self) -> None:
        if not self._done:
            self.file.close()
            with contextlib.suppress(FileNotFoundError):
                self.tmp_path.unlink()
            self._done = True


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def tmp_dir(self) -> Path:
        # Inside the store so the final rename never crosses a filesystem.
        d = self.root / ".tmp"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def path(self, digest: str) -> Path:
        algo, hexpart = split_digest(digest)
        return self.root / algo / hexpart

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

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
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise ImageFormatError(f"blob {digest} is missing from {self.root}") from None

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        """The BlobReader view of the store, so images built or pulled into it can read their layers."""
        return self.open(desc.digest)

    def read_bytes(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def _place(self, tmp: Path, digest: str) -> None:
        final = self.path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            tmp.unlink()  # another process (or an earlier build) already has it: content is identical
            return
        os.replace(tmp, final)

    @contextlib.contextmanager
    def writer(self) -> Iterator[BlobWriter]:
        """Write a blob whose digest is known only at the end; aborted (temp removed) on an exception."""
        w = BlobWriter(self)
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
        if self.has(digest):
            return self.path(digest)
        hasher = new_hasher(digest)
        n = 0
        fd, name = tempfile.mkstemp(prefix=".tmp-", dir=self.tmp_dir())
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the file is closed: it is being written
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    hasher.update(chunk)
                    n += len(chunk)
                    f.write(chunk)
            algo = digest.partition(":")[0]
            actual = f"{algo}:{hasher.hexdigest()}"
            if actual != digest:
                raise DigestMismatch(what, digest, actual)
            if size is not None and n != size:
                raise ImageFormatError(f"{what}: expected {size} bytes, got {n}")
            self._place(tmp, digest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return self.path(digest)

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
