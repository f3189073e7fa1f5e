"""What a RUN step asks of the sandbox: the command, its root, environment, user and mounts."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

# Docker's PATH for a container whose environment has none (moby's oci default, BuildKit's too).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The hostname BuildKit gives every RUN step: Dockerfiles that look at `hostname` (or /etc/hosts) see the
# same name under kiln as under `docker build`, and the name is the same on every run (reproducible builds).
DEFAULT_HOSTNAME = "buildkitsandbox"


@dataclass(frozen=True)
class BindMount:
    """A host path made visible at `target` (an absolute path inside the rootfs) for one step."""

    source: Path
    target: str
    readonly: bool = True
    # The source is kiln's own (a cache's directory, a private copy): in place it is moved to the target and
    # back rather than copied (sandbox/placed.py).
    movable: bool = False


@dataclass(frozen=True)
class TmpfsMount:
    """An empty tmpfs at `target` for one step; `size` in bytes (None: the kernel's default, half of RAM)."""

    target: str
    size: int | None = None


@dataclass(frozen=True)
class SecretMount:
    """A secret's value as a read-only file at `target` for one step. It is kept in memory (a tmpfs that exists
    only while the step runs), never written to a disk."""

    value: bytes = field(repr=False)
    target: str
    uid: int = 0
    gid: int = 0
    mode: int = 0o400

    def write_file(self, path: Path) -> None:
        """The value as a new file at `path` (never through a symlink), with the secret's owner and mode."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, self.value)
            os.fchown(fd, self.uid, self.gid)
            os.fchmod(fd, self.mode)
        finally:
            os.close(fd)


Mount = BindMount | TmpfsMount | SecretMount


@dataclass(frozen=True)
class RunSpec:
    """One RUN step.

    `rootfs` is the merged root the command sees as `/` (an overlay mount or a plain directory), never the
    host's `/`. `argv` is final: for the shell form the engine passes SHELL + [text]. `env` is the whole
    environment; PATH defaults to DEFAULT_PATH and HOME to the user's passwd home (or "/") as in Docker.
    `runtime_dir` holds the step's bundle and the OCI runtime's state (a directory of the build, so that the
    containers of a build that died can be found); None: a temporary directory for this step alone.
    `privileged` is `RUN --security=insecure`: every capability, no seccomp filter, every device.
    """

    rootfs: Path
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    user: str = ""
    workdir: str = "/"
    network: Literal["host", "none"] = "host"
    hostname: str = DEFAULT_HOSTNAME
    mounts: tuple[Mount, ...] = ()
    runtime_dir: Path | None = None
    privileged: bool = False

    def environment(self, home: str) -> dict[str, str]:
        """The whole environment the command gets: `env`, with Docker's PATH and the user's HOME as defaults."""
        env = dict(self.env)
        env.setdefault("PATH", DEFAULT_PATH)
        env.setdefault("HOME", home)
        return env
