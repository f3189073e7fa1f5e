"""The fully resolved plan of one step, as the parent hands it to `python -m kiln.sandbox.child` (JSON).

Everything that needs the rootfs's files (user lookup, symlink resolution of mount targets, stubs, the
working directory) is decided by the parent before the child starts, so the child only performs syscalls.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class PlannedMount:
    """One mount in the child. `target` is relative to the rootfs and already free of symlinks."""

    kind: str  # "bind" or "tmpfs"
    target: str
    source: str = ""
    readonly: bool = True
    size: int | None = None


@dataclass(frozen=True)
class ChildPlan:
    rootfs: str
    argv: list[str]
    env: dict[str, str]
    uid: int
    gid: int
    groups: list[int]
    workdir: str
    network: str
    hostname: str
    proc: str  # rootfs-relative targets of the standard mounts (resolved, stubs made)
    dev: str
    sys: str
    mounts: list[PlannedMount]  # /etc/resolv.conf, /etc/hosts and the step's own, in mount order
    parent_pid: int  # the kiln process: the child gives up if it is already gone
    error_fd: int  # where the child reports a setup failure (one line of text) before exec

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ChildPlan:
        data: dict[str, Any] = json.loads(raw)
        data["mounts"] = [PlannedMount(**m) for m in data["mounts"]]
        return cls(**data)
