"""Paths a snapshot never looks at: kernel filesystems, mount points, kiln's own files, user-ignored paths."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kiln.snapshot.changes import image_path

# Always ignored: the sandbox mounts fresh ones for every RUN, and an image carries at most empty mount points.
ALWAYS_IGNORED = ("proc", "sys", "dev")


def _unescape_mountinfo(field_: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    out = []
    i = 0
    while i < len(field_):
        if field_[i] == "\\" and i + 3 < len(field_) + 1 and field_[i + 1 : i + 4].isdigit():
            out.append(chr(int(field_[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field_[i])
            i += 1
    return "".join(out)


def mount_points_under(root: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> list[str]:
    """Mount points strictly inside root, as image paths, from a mountinfo file."""
    real_root = os.path.realpath(root)
    prefix = real_root.rstrip("/") + "/"
    found = []
    for line in mountinfo.read_text().splitlines():
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        point = _unescape_mountinfo(fields[4])
        if point.startswith(prefix):
            found.append(image_path(point[len(prefix) :]))
    return [p for p in found if p]


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
