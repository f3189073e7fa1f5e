"""Giving files their owners, also where the user namespace kiln runs in cannot represent them.

An ordinary user without subordinate IDs builds in a user namespace that maps one ID (kiln.rootless): there the
kernel refuses (EINVAL) to give a file any other owner. Such a build goes on rather than stopping at the first
file a base image gives to uid 1000: the file stays root's, and `lost` records it, so that the engine can say
which instruction met it. Everywhere else a refused chown is an error, as it always was.

The record is the process's, as the namespace is: parallel stages share it, so a warning names the instruction
that collected it, which with stages built side by side may be another stage's.
"""

from __future__ import annotations

import errno
import functools
import os
import threading
from dataclasses import dataclass, field

from kiln import linux


@functools.cache
def one_id_namespace() -> bool:
    """Whether this process's user namespace maps a single uid or a single gid."""
    if not linux.in_user_namespace():
        return False
    return any(sum(count for _, _, count in linux.id_map(kind)) == 1 for kind in ("uid", "gid"))


@dataclass
class LostOwners:
    """Files kiln could not give their owner, since the record was last taken."""

    count: int = 0
    examples: list[tuple[str, int, int]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, uid: int, gid: int) -> None:
        with self._lock:
            self.count += 1
            if len(self.examples) < 3:
                self.examples.append((path, uid, gid))

    def take(self) -> tuple[int, list[tuple[str, int, int]]]:
        with self._lock:
            taken = self.count, self.examples
            self.count, self.examples = 0, []
            return taken


lost = LostOwners()


def chown(path: str | os.PathLike[str] | int, uid: int, gid: int, *, dir_fd: int | None = None,
          follow_symlinks: bool = False) -> None:
    """os.chown (a symlink itself unless follow_symlinks), or, where the namespace maps one ID and cannot make
    this owner, nothing but a record of it."""
    try:
        os.chown(path, uid, gid, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
    except OSError as e:
        if e.errno != errno.EINVAL or not one_id_namespace():
            raise
        lost.add(str(path) if not isinstance(path, int) else f"fd {path}", uid, gid)
