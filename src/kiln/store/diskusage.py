"""Disk usage of what prune may remove, as du counts it: allocated blocks, each inode once.

An entry's bytes are those of its own inodes (one link) plus the inodes it shares through hard links (a blob in
kiln's store and in a local cache directory, a file hardlinked inside a layer). A shared inode stops counting
only when the last entry holding it goes, so removing one of two links frees nothing and says so.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

Inode = tuple[int, int]


@dataclass
class Footprint:
    own: int = 0  # bytes of inodes with a single link
    shared: list[Inode] = field(default_factory=list)  # inodes with more links (counted in DiskUsage)


@dataclass
class DiskUsage:
    """The total of a set of footprints, updated as entries are taken out."""

    blocks: dict[Inode, int] = field(default_factory=dict)
    holders: Counter[Inode] = field(default_factory=Counter)
    total: int = 0

    def measure(self, paths: list[Path], shared: tuple[Path, ...] = ()) -> Footprint:
        """The footprint of files and directory trees (not followed through symlinks), added to the total.
        ``shared``: files other entries hold too whatever their link count (a cache blob several entries name)."""
        fp = Footprint()
        for path in [*paths, *shared]:
            for st in _lstat_tree(path):
                size = st.st_blocks * 512
                if (st.st_nlink <= 1 and path not in shared) or stat.S_ISDIR(st.st_mode):
                    fp.own += size
                    continue
                key = (st.st_dev, st.st_ino)
                if self.holders[key] == 0:
                    self.total += size
                self.blocks[key] = size
                self.holders[key] += 1
                fp.shared.append(key)
        self.total += fp.own
        return fp

    def take_out(self, fp: Footprint) -> int:
        """Remove an entry from the total; the bytes that no longer count (what removing it frees)."""
        freed = fp.own
        for key in fp.shared:
            self.holders[key] -= 1
            if self.holders[key] == 0:
                freed += self.blocks[key]
        self.total -= freed
        return freed


def _lstat_tree(path: Path) -> list[os.stat_result]:
    """lstat of path and, for a directory, of everything below it (iterative: layers nest deeply)."""
    try:
        top = path.lstat()
    except OSError:
        return []
    found = [top]
    stack = [str(path)] if stat.S_ISDIR(top.st_mode) else []
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    found.append(st)
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
        except OSError:
            continue  # gone meanwhile, or deeper than a path can name: counted as far as it could be read
    return found
