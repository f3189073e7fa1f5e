"""Resolving a path inside a rootfs the way the container would see it, without ever leaving the rootfs."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from kiln.errors import SandboxError

_MAX_SYMLINKS = 255


def resolve_in_root(root: Path, path: str) -> Path:
    """The host path of `path` as seen from inside `root`.

    Symlinks are followed as if `root` were `/`: absolute links restart at `root` and `..` never climbs
    above it (what BuildKit's RootPath does), so an image cannot make kiln mount or write outside its
    rootfs. Components past the first missing one are kept as written (`..` applied lexically).
    """
    pending = [c for c in path.split("/") if c not in ("", ".")]
    pending.reverse()  # a stack: the next component is at the end
    resolved: list[str] = []
    links = 0
    missing = False
    while pending:
        name = pending.pop()
        if name == ".":
            continue
        if name == "..":
            if resolved:
                resolved.pop()
            continue
        if missing:
            resolved.append(name)
            continue
        here = root.joinpath(*resolved, name)
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            missing = True
            resolved.append(name)
            continue
        except NotADirectoryError as e:
            raise SandboxError(f"{path}: a component of the path is not a directory in the rootfs") from e
        if not stat.S_ISLNK(st.st_mode):
            resolved.append(name)
            continue
        links += 1
        if links > _MAX_SYMLINKS:
            raise SandboxError(f"{path}: {os.strerror(errno.ELOOP)} in the rootfs")
        target = os.readlink(here)
        if target.startswith("/"):
            resolved = []
        parts = [c for c in target.split("/") if c not in ("", ".")]
        pending.extend(reversed(parts))
    return root.joinpath(*resolved)
