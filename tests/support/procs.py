"""Running external tools with errors that say what was run and what it printed."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class ToolError(AssertionError):
    """An external tool failed; the message carries the command line, exit status and output."""


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    input: bytes | None = None,
    check: bool = True,
    timeout: float | None = 600,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv, capturing output; on failure raise ToolError with everything needed to see why."""
    args = [os.fspath(a) for a in argv]
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    proc = subprocess.run(
        args, env=full_env, cwd=cwd, input=input, capture_output=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise ToolError(describe_failure(args, proc.returncode, proc.stdout, proc.stderr))
    return proc


def run_text(argv: Sequence[str | os.PathLike[str]], **kwargs: Any) -> str:
    """Run argv and return its standard output as text."""
    return run(argv, **kwargs).stdout.decode()


def describe_failure(args: Sequence[str], status: int, stdout: bytes, stderr: bytes) -> str:
    def tail(data: bytes) -> str:
        text = data.decode(errors="replace").rstrip()
        lines = text.splitlines()
        # Long outputs (debootstrap, buildah) bury the cause at the end.
        return "\n".join(lines[-60:]) if lines else "(empty)"

    return (
        f"command failed with status {status}: {shlex.join(args)}\n"
        f"--- stdout ---\n{tail(stdout)}\n--- stderr ---\n{tail(stderr)}"
    )


def require_tool(path: str) -> Path:
    """The path of a tool the tests need; a missing one points at scripts/install-deps.sh."""
    import shutil

    found = shutil.which(path)
    if found is None:
        raise ToolError(f"{path} is not installed; run scripts/install-deps.sh as root")
    return Path(found)


def stop(proc: subprocess.Popen[Any], grace: float = 10) -> None:
    """Stop a server the tests started (by its PID, through its Popen): SIGTERM, then SIGKILL after `grace`."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
