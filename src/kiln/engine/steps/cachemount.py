"""RUN --mount=type=cache: a directory kept under kiln's dir between steps and builds, named by its id.

BuildKit's semantics: the id is a name, never a path (each id gets a directory of its own, named by a hash);
`sharing=shared` (the default) lets concurrent steps use one directory at once, `locked` makes a step wait
until no other step uses it, `private` gives a step that finds it in use a directory of its own. `from=` (a
stage or image) and `source=` (a path in it) seed a new cache directory with that content.

Every step using a directory also holds `<dir>.use` shared (kiln.store.inuse), so `kiln prune` — which takes it
exclusively, without waiting — never removes a directory a RUN has mounted; its mtime is the directory's last use.
The use lock is taken before the sharing mode's own lock, so a pruner holding it knows no step is between the two.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from pathlib import Path

from kiln.rootfs.copy import copy_tree
from kiln.store.inuse import cache_mount_use_lock
from kiln.store.locking import lock_fd

_LOCK_SUFFIX = ".lock"
_MAX_PRIVATE = 64


def cache_mount_dir(cache_root: Path, cache_id: str) -> Path:
    """A cache mount's directory: `..`, `/`, an empty or a very long id cannot point anywhere else, and a
    readable suffix helps people looking at the cache root."""
    digest = hashlib.sha256(cache_id.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in cache_id)[:40].strip(".")
    return cache_root / (f"{digest}-{readable}" if readable else digest)


def _lock(path: Path, blocking: bool) -> int | None:
    """An exclusive lock on `path` (created if need be), held while the fd is open; None if busy. (prune may
    delete the lock file of a directory it removes: lock_fd makes sure the lock is on the file at the path.)"""
    return lock_fd(path, shared=False, blocking=blocking)


def _use(directory: Path, hold: contextlib.ExitStack) -> None:
    """Hold the directory's use lock (shared) until `hold` closes, its mtime set now and at the end."""
    lock = cache_mount_use_lock(directory)
    fd = lock_fd(lock, shared=True)
    assert fd is not None

    def release() -> None:
        with contextlib.suppress(OSError):
            os.utime(fd)
        os.close(fd)

    os.utime(fd)
    hold.callback(release)


def acquire_cache_dir(base: Path, sharing: str | None, hold: contextlib.ExitStack) -> tuple[Path, bool]:
    """The directory a step mounts for the cache at `base`, with whatever lock its sharing mode needs held
    until `hold` closes; and whether the directory is new (to be seeded)."""
    base.parent.mkdir(parents=True, exist_ok=True)
    if sharing == "locked":
        _use(base, hold)
        fd = _lock(base.with_name(base.name + _LOCK_SUFFIX), blocking=True)
        assert fd is not None
        hold.callback(os.close, fd)
        chosen = base
    elif sharing == "private":
        chosen = base
        for n in range(_MAX_PRIVATE):
            candidate = base if n == 0 else base.with_name(f"{base.name}.private{n}")
            attempt = contextlib.ExitStack()
            _use(candidate, attempt)
            got = _lock(candidate.with_name(candidate.name + _LOCK_SUFFIX), blocking=False)
            if got is not None:
                attempt.callback(os.close, got)
                hold.enter_context(attempt)
                chosen = candidate
                break
            attempt.close()
        else:
            raise OSError(errno.EBUSY, f"more than {_MAX_PRIVATE} steps use the private cache {base.name}")
    else:
        _use(base, hold)
        chosen = base
    new = not chosen.exists()
    if new:
        chosen.mkdir(exist_ok=True)
    return chosen, new


def seed(directory: Path, source: Path) -> None:
    """A new cache directory starts as a copy of `source` (a directory or file of a stage or image root)."""
    if source.is_dir():
        copy_tree(source, directory)
    elif source.exists():
        copy_tree(source, directory / source.name)
