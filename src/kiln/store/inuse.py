"""What running builds use, so that `kiln prune` and another build's --cleanup leave it alone.

A build writes each key it uses (a blob's digest, a layer's chain id) into a record file of its own before it
looks for the thing, and holds that file locked for its life. A pruner holds the store's gate exclusively while it
reads the live records and moves out of the way what they do not name. A key is therefore either recorded before
the pruner reads the records (the thing stays) or after the pruner is done (the build then looks, finds nothing,
and fetches or extracts it again): a build never loses what it is using. Records hold no descriptor per key, so a
build using thousands of blobs costs one open file, not thousands.

A record whose lock nobody holds is a dead build's: the pruner removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from kiln.store.locking import lock_fd
from kiln.transports.blobstore import BlobReceiver, BlobStore

GATE = ".gate"
_SUFFIX = ".rec"


class UseRecord:
    """One build's record in ``directory``; shared by the build's stage threads."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._keys: set[str] = set()
        self._fd: int | None = None
        self._path: str | None = None
        self._mutex = threading.Lock()

    def add(self, key: str) -> bool:
        """Record key (once); True the first time. The caller looks for the thing only after this returns."""
        with self._mutex:
            if key in self._keys:
                return False
            gate = lock_fd(self.directory / GATE, shared=True)
            assert gate is not None
            try:
                if self._fd is None:
                    # Created under the gate: a pruner never sees it before it is locked.
                    fd, self._path = tempfile.mkstemp(prefix="build-", suffix=_SUFFIX, dir=self.directory)
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    self._fd = fd
                os.write(self._fd, (key + "\n").encode())
                self._keys.add(key)
            finally:
                os.close(gate)
            return True

    @property
    def path(self) -> str | None:
        """The record's file, once something is recorded."""
        return self._path

    def recorded(self) -> frozenset[str]:
        with self._mutex:
            return frozenset(self._keys)

    def close(self) -> None:
        """Forget everything: what this build used becomes prunable."""
        with self._mutex:
            if self._fd is not None:
                if self._path is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(self._path)
                os.close(self._fd)
                self._fd = self._path = None
            self._keys.clear()


@contextlib.contextmanager
def pruning(directory: Path) -> Iterator[frozenset[str]]:
    """Hold the gate of ``directory`` exclusively: no build records anything meanwhile. Yields every key a live
    build has recorded; dead builds' records are removed."""
    gate = lock_fd(directory / GATE, shared=False)
    assert gate is not None
    try:
        yield live_keys(directory)
    finally:
        os.close(gate)


def live_keys(directory: Path, skip: str | None = None) -> frozenset[str]:
    """The keys of every live build's record (but the record at `skip`); call it with the gate held."""
    keys: set[str] = set()
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return frozenset()
    for name in names:
        if not name.endswith(_SUFFIX):
            continue
        path = directory / name
        if skip is not None and str(path) == skip:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                with os.fdopen(os.dup(fd), "rb") as f:
                    keys.update(line.decode() for line in f.read().splitlines() if line)
            else:
                path.unlink(missing_ok=True)  # its build is gone
        finally:
            os.close(fd)
    return frozenset(keys)


class TrackedBlobStore(BlobStore):
    """kiln's blob store as a build uses it: every digest it asks about is recorded first (and its blob's mtime,
    the last use prune goes by, set to now), so a concurrent prune keeps it until the build closes the store."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        records = root / ".inuse"
        records.mkdir(parents=True, exist_ok=True)
        self.record = UseRecord(records)

    def path(self, digest: str) -> Path:
        p = super().path(digest)
        self._used(digest)
        return p

    def receive(self, digest: str, size: int | None = None, what: str = "blob") -> BlobReceiver | None:
        self._used(digest)  # also when the store has it already and nothing is received
        return super().receive(digest, size, what)

    def _place(self, tmp: Path, digest: str) -> None:
        super()._place(tmp, digest)
        self._used(digest)  # a blob written again (a config or manifest kiln makes anew) is used again

    def _used(self, digest: str) -> None:
        if self.record.add(digest):
            with contextlib.suppress(OSError):
                os.utime(self._blob_path(digest))

    def close(self) -> None:
        """The build is done: what it used becomes prunable, last used now."""
        for digest in self.record.recorded():
            with contextlib.suppress(OSError):
                os.utime(super().path(digest))
        self.record.close()


def cache_mount_use_lock(directory: Path) -> Path:
    """The lock a RUN holds (shared) on a cache mount's directory while it uses it; prune takes it exclusively.
    Its mtime is the directory's last use."""
    return directory.with_name(directory.name + ".use")
