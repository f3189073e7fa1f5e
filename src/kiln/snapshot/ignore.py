"""Paths a snapshot never looks at: kernel filesystems, mount points, kiln's own files, user-ignored paths."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kiln.snapshot.changes import image_path
from kiln.store.mountinfo import mount_points_under

# Always ignored: the sandbox mounts fresh ones for every RUN, and an image carries at most empty mount points.
ALWAYS_IGNORED = ("proc", "sys", "dev")


@dataclass(frozen=True)
class IgnoreRules:
    """Image paths (no leading slash) ignored together with everything beneath them."""

    paths: frozenset[str] = field(default_factory=frozenset)

    def is_ignored(self, image_path_: str) -> bool:
        path = image_path(image_path_)
        if not path:
            return False
        if path in self.paths:
            return True
        while "/" in path:
            path = path.rpartition("/")[0]
            if path in self.paths:
                return True
        return False

    @classmethod
    def for_root(
        cls,
        root: Path,
        *,
        ignore_paths: Iterable[str] = (),
        work_dir: Path | None = None,
        ignore_var_run: bool = True,
        mountinfo: Path | None = Path("/proc/self/mountinfo"),
    ) -> IgnoreRules:
        """The rules for snapshotting root.

        ignore_paths: --ignore-path values (image paths). work_dir: kiln's own directory, ignored if it lies
        inside root. ignore_var_run: kaniko ignores /var/run by default, since a container runtime mounts it.
        mountinfo: where to read the mount table (None: do not look at mounts).
        """
        paths = set(ALWAYS_IGNORED)
        paths.update(image_path(p) for p in ignore_paths)
        if ignore_var_run:
            paths.add("var/run")
        if mountinfo is not None:
            paths.update(mount_points_under(root, mountinfo))
        if work_dir is not None:
            real_root = os.path.realpath(root).rstrip("/") + "/"
            real_work = os.path.realpath(work_dir)
            if real_work.startswith(real_root):
                paths.add(image_path(real_work[len(real_root) :]))
        paths.discard("")
        return cls(frozenset(paths))
