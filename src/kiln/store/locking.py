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
