"""--chown values, resolved in the destination root's own /etc/passwd and /etc/group."""

from __future__ import annotations

from pathlib import Path

from kiln.engine.steps.fscopy import Owner
from kiln.errors import ContextError, SandboxError
from kiln.rootfs.users import resolve_user


def resolve_chown(root: Path, chown: str) -> Owner:
    """``user[:group]`` by name or id. Without a group the gid is the uid's number (Docker's rule, not the user's
    primary group)."""
    user, sep, group = chown.partition(":")
    try:
        uid = resolve_user(root, user or "0").uid
        gid = resolve_user(root, f"{user or '0'}:{group}").gid if sep and group else uid
    except SandboxError as e:
        raise ContextError(f"--chown={chown}: {e}") from None
    return Owner(uid, gid)
