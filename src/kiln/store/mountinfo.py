"""Mounts under a directory of kiln's, read from /proc/self/mountinfo, and removing such a directory safely."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from kiln.layers.extract import remove_tree as remove_tree_any_depth
from kiln.store.overlaymount import unmount


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
            found.append(posixpath.normpath(point[len(prefix) :]).strip("/"))
    return [p for p in found if p]


def remove_tree(path: Path) -> None:
    """Remove a build's work directory, unmounting first whatever is still mounted inside it (deepest first),
    so that removal never reaches into a mounted root."""
    if not path.exists():
        return
    for point in sorted(mount_points_under(path), key=len, reverse=True):
        unmount(path / point, lazy=True)
    remove_tree_any_depth(path)  # shutil.rmtree recurses: a deep layer's tree made it a RecursionError
