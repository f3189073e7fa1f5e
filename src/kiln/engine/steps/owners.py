"""--chown values, resolved in the destination root's own /etc/passwd and /etc/group, as a file operation
(resolve_file_owner: "root" is uid 0 even without a passwd file)."""

from __future__ import annotations

from pathlib import Path

from kiln.engine.steps.fscopy import Owner
from kiln.errors import ContextError, SandboxError
from kiln.rootfs.users import resolve_file_owner


def resolve_chown(root: Path, chown: str) -> Owner:
    """``user[:group]`` by name or id. Without a group the gid is the uid's number (Docker's rule, not the user's
    primary group)."""
    user, sep, group = chown.partition(":")
    try:
        uid = resolve_file_owner(root, user or "0")[0]
        gid = resolve_file_owner(root, f"{user or '0'}:{group}")[1] if sep and group else uid
    except SandboxError as e:
        raise ContextError(f"--chown={chown}: {e}") from None
    return Owner(uid, gid)
