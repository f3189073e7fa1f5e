"""Ordinary users for the rootless tests (scripts/install-deps.sh makes them): kiln-rootless has subordinate IDs in
/etc/subuid and /etc/subgid, kiln-oneid has none. They run kiln with Debian's python3 and the repository's
sources and virtualenv packages on PYTHONPATH (the virtualenv's own interpreter may live in root's home), in a
directory they own."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: Path

    def kiln(self, *args: str, cwd: Path, timeout: float = 900, env: dict[str, str] | None = None,
             wrapper: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """`kiln ARGS` run by this user, with an environment of its own (none of root's); `wrapper`: a command
        (run as root) that runs the rest."""
        return subprocess.run([*wrapper, *kiln_command(self.name, self.home, env), *args],
                              capture_output=True, text=True, timeout=timeout, cwd=cwd)  # fmt: skip


def kiln_command(user: str, home: Path | None = None, env: dict[str, str] | None = None) -> list[str]:
    """The start of a command line that runs kiln as `user` (root runs it), with an environment of its own."""
    home = home or Path(pwd.getpwnam(user).pw_dir)
    pythonpath = f"{REPO / 'src'}:{sysconfig.get_paths()['purelib']}"
    environment = {"HOME": str(home), "USER": user, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                   "PYTHONPATH": pythonpath, **(env or {})}  # fmt: skip
    return ["runuser", "-u", user, "--", "env", "-i", *(f"{k}={v}" for k, v in environment.items()),
            str(SYSTEM_PYTHON), "-m", "kiln"]


def user_named(name: str) -> User:
    if os.geteuid() != 0:
        pytest.skip("switching to another user needs root")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        pytest.fail(f"user {name} is missing: run scripts/install-deps.sh as root")
    version = subprocess.run([str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    if version != str(sys.version_info[:2]):
        pytest.skip(f"{SYSTEM_PYTHON} is Python {version}, the virtualenv's packages are for {sys.version_info[:2]}")
    return User(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))
