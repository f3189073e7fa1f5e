"""Peak memory of a process tree, sampled from /proc.

Every ~20 ms the sampler sums the resident set (statm) of the root process and all its descendants. Only pids
it has not seen before have their parent read (a listdir of /proc is cheap; reading every /proc/PID/stat
each time is not, on a two-core machine), so sampling costs little CPU. The sum counts shared pages once per
process that maps them, so it is an upper bound of what the tree really holds; short-lived children that
live less than one interval can be missed. This kernel has no /proc/PID/task/TID/children, and cgroup v1
memory accounting would charge tmpfs pages the build writes to the builder, so neither is used.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

PAGE = os.sysconf("SC_PAGE_SIZE")


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: the fields after the last ')' are safe.
    rest = data[data.rindex(b")") + 2 :].split()
    return int(rest[1])


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


@dataclass
class TreeSampler:
    """Start with start(root_pid); stop() returns the peak summed RSS of the tree in bytes."""

    interval: float = 0.02
    peak: int = 0
    samples: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tree: set[int] = set()
        self._known: set[int] = set()

    def start(self, root: int) -> None:
        self._tree = {root}
        # Nothing is known yet: the root may have forked before the sampler started, so the first sample reads
        # every process's parent once.
        self._known = {root}
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.peak

    def sample(self) -> int:
        pids = {int(p) for p in os.listdir("/proc") if p.isdigit()}
        parents = {pid: _parent(pid) for pid in pids - self._known}
        # Until nothing more joins: pids wrap around, so a child's pid need not be above its parent's.
        grew = True
        while grew:
            grew = False
            for pid, parent in parents.items():
                if pid not in self._tree and parent in self._tree:
                    self._tree.add(pid)
                    grew = True
        self._known = pids
        self._tree &= pids
        total = sum(_rss(pid) for pid in self._tree)
        self.peak = max(self.peak, total)
        self.samples += 1
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)
