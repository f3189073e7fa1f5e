"""Mount points a step needs but its rootfs lacks: made before the step, removed after it, leaving no trace.

A mount needs an existing file or directory to land on. When the rootfs has no /proc, /etc/hosts, or the
target of a RUN --mount, an empty stub is created (with any missing parent directories) and removed when
the step is over. Creating and removing entries changes the parent directory's mtime, and on an overlay it
copies the parent up; so the parent's atime and mtime are put back, letting a snapshot see the directory
as unchanged. If the command itself changed the parent (its mtime moved during the step) the parent keeps
the command's times; only the stub's own removal is hidden. A stub the command filled (a stub directory it
wrote files into) is left in place, as BuildKit does.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class _ParentTimes:
    atime_ns: int
    mtime_ns: int
    mtime_after_stubs_ns: int = 0


@dataclass
class MountStubs:
    created: list[Path] = field(default_factory=list)  # in creation order: parents before children
    parents: dict[Path, _ParentTimes] = field(default_factory=dict)
    _sealed: bool = False

    def add(self, path: Path, is_dir: bool) -> None:
        """Make `path` (a host path inside the rootfs, free of symlinks) exist, creating missing parents."""
        if os.path.lexists(path):
            return
        missing = [path]
        while not os.path.lexists(missing[-1].parent):
            missing.append(missing[-1].parent)
        self.watch(missing[-1].parent)
        for p in reversed(missing):
            if p is path and not is_dir:
                fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o644)
                os.close(fd)
            else:
                os.mkdir(p, 0o755)
            self.created.append(p)

    def watch(self, parent: Path) -> None:
        """Put `parent`'s times back at the end too: something other than a stub is made or moved in it."""
        if parent not in self.parents and parent not in self.created:
            st = os.lstat(parent)
            self.parents[parent] = _ParentTimes(st.st_atime_ns, st.st_mtime_ns)

    def observe(self) -> dict[Path, os.stat_result]:
        """The parents as the command left them (before anything of ours is undone)."""
        seen = {}
        for parent in self.parents:
            try:
                seen[parent] = os.lstat(parent)
            except FileNotFoundError:  # the command removed it
                continue
        return seen

    def sealed(self) -> MountStubs:
        """Note the parents' mtimes once every stub exists, to tell later whether the command changed them."""
        for parent, times in self.parents.items():
            times.mtime_after_stubs_ns = os.lstat(parent).st_mtime_ns
        self._sealed = True
        return self

    def remove(self, observed: dict[Path, os.stat_result] | None = None) -> list[Path]:
        """Remove the stubs (deepest first) and restore their parents' times; return stubs left in place.
        observed: the parents as the command left them, when more of ours was undone since (see observe())."""
        if not self._sealed:  # the step never ran: every change to the parents was ours
            self.sealed()
        before = self.observe() if observed is None else observed
        kept = []
        for p in reversed(self.created):
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            try:
                if stat.S_ISDIR(st.st_mode):
                    os.rmdir(p)  # fails if the command wrote into it: then it is the command's directory
                elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
                    os.unlink(p)
                else:
                    kept.append(p)
            except OSError:
                kept.append(p)
        kept_parents = {k.parent for k in kept}
        for parent, st in before.items():
            times = self.parents[parent]
            if st.st_mtime_ns == times.mtime_after_stubs_ns and parent not in kept_parents:
                restore = (times.atime_ns, times.mtime_ns)
            else:
                restore = (st.st_atime_ns, st.st_mtime_ns)
            os.utime(parent, ns=restore, follow_symlinks=False)
        return kept
