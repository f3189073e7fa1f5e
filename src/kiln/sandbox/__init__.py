"""Running a RUN step inside a rootfs, in private mount/PID/IPC/UTS (and network) namespaces."""

from kiln.sandbox.run import run_in_sandbox
from kiln.sandbox.spec import DEFAULT_HOSTNAME, DEFAULT_PATH, BindMount, RunSpec, TmpfsMount
from kiln.sandbox.users import ResolvedUser, resolve_user

__all__ = [
    "DEFAULT_HOSTNAME",
    "DEFAULT_PATH",
    "BindMount",
    "ResolvedUser",
    "RunSpec",
    "TmpfsMount",
    "resolve_user",
    "run_in_sandbox",
]
