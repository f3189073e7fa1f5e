"""WORKDIR: the directory is created (with its missing parents) when it does not exist, owned by the current USER,
as BuildKit does; an existing directory is left alone and gives no layer. The USER is resolved as BuildKit's file
operations resolve it (resolve_file_owner): "root" is 0:0 without a passwd file, a numeric uid gets its own number
as gid."""

from __future__ import annotations

from pathlib import Path

from kiln.engine.steps.fscopy import Owner, WriteLog, make_dirs
from kiln.errors import BuildError
from kiln.rootfs.paths import resolve_in_root
from kiln.rootfs.users import resolve_file_owner


def make_workdir(root: Path, path: str, user: str) -> list[str]:
    target = resolve_in_root(root, path)
    if target.is_dir():
        return []
    if target.exists():
        raise BuildError(f"WORKDIR {path}: exists and is not a directory")
    owner = Owner(*resolve_file_owner(root, user)) if user else None
    log = WriteLog(root)
    make_dirs(root, target, owner, log)
    return sorted(log.written)
