"""Running a RUN step inside a rootfs: in an OCI runtime container confined as a default Docker container
(run_in_sandbox), or in the current root for in-place builds (inplace.run_in_place)."""

from kiln.sandbox.run import run_in_sandbox
from kiln.sandbox.spec import DEFAULT_HOSTNAME, DEFAULT_PATH, BindMount, RunSpec, SecretMount, TmpfsMount

__all__ = [
    "DEFAULT_HOSTNAME",
    "DEFAULT_PATH",
    "BindMount",
    "RunSpec",
    "SecretMount",
    "TmpfsMount",
    "run_in_sandbox",
]
