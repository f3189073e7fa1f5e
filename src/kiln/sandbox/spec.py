"""What a RUN step asks of the sandbox: the command, its root, environment, user and mounts."""

from __future__ import annotations

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


@dataclass(frozen=True)
class TmpfsMount:
    """An empty tmpfs at `target` for one step; `size` in bytes (None: the kernel's default, half of RAM)."""

    target: str
    size: int | None = None


Mount = BindMount | TmpfsMount


@dataclass(frozen=True)
class RunSpec:
    """One RUN step.

    `rootfs` is the merged root the command sees as `/` (an overlay mount or a plain directory), never the
    host's `/`. `argv` is final: for the shell form the engine passes SHELL + [text]. `env` is the whole
    environment; PATH defaults to DEFAULT_PATH and HOME to the user's passwd home (or "/") as in Docker.
    """

    rootfs: Path
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    user: str = ""
    workdir: str = "/"
    network: Literal["host", "none"] = "host"
    hostname: str = DEFAULT_HOSTNAME
    mounts: tuple[Mount, ...] = ()
