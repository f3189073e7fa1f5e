"""WORKDIR: the directory is created (with its missing parents) when it does not exist, owned by the current USER,
as BuildKit does; an existing directory is left alone and gives no layer."""

from __future__ import annotations

from pathlib import Path

from kiln.engine.steps.fscopy import Owner, WriteLog, make_dirs
from kiln.errors import BuildError
from kiln.rootfs.paths import resolve_in_root
from kiln.rootfs.users import resolve_user


def make_workdir(root: Path, path: str, user: str) -> list[str]:
    target = resolve_in_root(root, path)
    if target.is_dir():
        return []
    if target.exists():
        raise BuildError(f"WORKDIR {path}: exists and is not a directory")
    owner = None
    if user:
        who = resolve_user(root, user)
        owner = Owner(who.uid, who.gid)
    log = WriteLog(root)
    make_dirs(root, target, owner, log)
    return sorted(log.written)
