"""Inter-process locks on files, so that two kiln processes sharing a store never extract the same layer twice."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive_lock(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive flock(2) on lock_file (created if missing) for the duration of the block.

    flock locks belong to the open file description, so they exclude other processes and also other threads
    of this process (each call opens its own descriptor). The kernel drops the lock if the holder dies, so a
    crashed kiln never leaves the store locked.
    """
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        # Closing the descriptor releases the lock.
        os.close(fd)


def lock_fd(lock_file: Path, *, shared: bool, blocking: bool = True) -> int | None:
    """An open descriptor holding a flock on lock_file (created if missing), or None if it is busy and not
    blocking. The caller closes it to release.

    Lock files that a pruner may delete (it deletes one only while holding it exclusively): a waiter that opened
    the old file before it was unlinked would otherwise hold a lock no one else sees. So after locking, the
    descriptor must still be the file at the path; if not, try again on the new one.
    """
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    op = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, op)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_file).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
