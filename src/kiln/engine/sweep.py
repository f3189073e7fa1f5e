"""Builds on a kiln dir, alive or dead: each holds a lock on its build directory while it runs, and a new build
removes what dead ones left (their runc containers, mounts and files) before it starts.

The reaper (sandbox/reaper.py) undoes a killed build at once; this sweep is for the case where the reaper died
too (a whole process group or container killed, a power loss).
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from kiln.sandbox.runc import containers, delete_container, find_runtime
from kiln.store.mountinfo import remove_tree

LOCK_NAME = ".lock"
BUILD_PREFIX = "build-"
# A build directory without a lock file is either from before locks existed or being created right now.
_UNLOCKED_GRACE_SECONDS = 120.0


def lock_build_dir(build_dir: Path) -> int:
    """Hold the build directory's lock for as long as the returned fd is open."""
    fd = os.open(build_dir / LOCK_NAME, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _is_dead(build_dir: Path) -> bool:
    try:
        fd = os.open(build_dir / LOCK_NAME, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        try:
            return time.time() - build_dir.stat().st_mtime > _UNLOCKED_GRACE_SECONDS
        except FileNotFoundError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    finally:
        os.close(fd)
    return True


def sweep_dead_builds(tmp_root: Path) -> list[Path]:
    """Remove the build directories under `tmp_root` whose build is gone; return them."""
    swept: list[Path] = []
    try:
        entries = sorted(tmp_root.iterdir())
    except FileNotFoundError:
        return swept
    for build_dir in entries:
        if not build_dir.name.startswith(BUILD_PREFIX) or not build_dir.is_dir() or not _is_dead(build_dir):
            continue
        state_dir = build_dir / "sandbox" / "runc"
        found = list(containers(find_runtime(), state_dir)) if state_dir.is_dir() else []
        for container_id in found:
            delete_container(find_runtime(), state_dir, container_id)
        remove_tree(build_dir)
        swept.append(build_dir)
    return swept
