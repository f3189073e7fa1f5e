"""Finding and removing mounts below a directory, and deleting trees that may still hold some.

Tools used by the tests (buildah's overlay storage, debootstrap's /proc and /dev) leave mounts behind when
they fail. Deleting such a tree without unmounting first could delete through a bind mount into the host,
so every removal here unmounts first and refuses if anything is still mounted.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
from pathlib import Path

_MNT_DETACH = 2


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and len(field[i + 1 : i + 4]) == 3 and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below path, deepest first."""
    root = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mount_point = _unescape(line.split()[4])
            if mount_point == root or mount_point.startswith(root.rstrip("/") + "/"):
                found.append(Path(mount_point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount_under(path: Path) -> None:
    """Detach every mount at or below path."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    for _ in range(5):
        points = mounts_under(path)
        if not points:
            return
        for point in points:
            if libc.umount2(os.fsencode(point), _MNT_DETACH) != 0:
                err = ctypes.get_errno()
                if err not in (22, 2):  # EINVAL: no longer a mount point; ENOENT: gone
                    raise OSError(err, f"umount2 {point}: {os.strerror(err)}")


def remove_tree(path: Path) -> None:
    """Unmount everything below path, then delete it; refuse if a mount survives."""
    if not os.path.lexists(path):
        return
    if os.path.realpath(path) == "/":
        raise ValueError("refusing to remove /")
    unmount_under(path)
    left = mounts_under(path)
    if left:
        raise OSError(f"still mounted below {path}: {', '.join(map(str, left))}")
    shutil.rmtree(path, ignore_errors=False)
