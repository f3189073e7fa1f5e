"""run_in_sandbox: the kiln side of a RUN step. Plans the step, starts the child, streams its output,
and leaves the rootfs as the command alone left it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO

from kiln.errors import SandboxError
from kiln.sandbox.paths import resolve_in_root
from kiln.sandbox.plan import ChildPlan, PlannedMount
from kiln.sandbox.spec import DEFAULT_PATH, BindMount, RunSpec, TmpfsMount
from kiln.sandbox.stubs import MountStubs
from kiln.sandbox.users import ResolvedUser, resolve_user

_HOST_RESOLV_CONF = Path("/etc/resolv.conf")
_TERMINATE_GRACE_SECONDS = 5.0


def _checked_rootfs(rootfs: Path) -> Path:
    root = Path(os.path.realpath(rootfs))
    if not root.is_dir():
        raise SandboxError(f"{rootfs}: the rootfs is not a directory")
    if root == Path("/") or os.path.samefile(root, "/"):
        raise SandboxError(f"{rootfs}: refusing to run a step in the host's root")
    return root


def _environment(spec: RunSpec, user: ResolvedUser) -> dict[str, str]:
    env = dict(spec.env)
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("HOME", user.home)
    return env


def ensure_workdir(root: Path, workdir: str, user: ResolvedUser) -> None:
    """BuildKit creates a missing working directory at RUN time, 0755 and owned by the step's user."""
    path = resolve_in_root(root, workdir)
    if os.path.isdir(path):
        return
    if os.path.lexists(path):
        raise SandboxError(f"working directory {workdir} is not a directory")
    missing = [path]
    while not os.path.lexists(missing[-1].parent):
        missing.append(missing[-1].parent)
    for p in reversed(missing):
        try:
            os.mkdir(p, 0o755)
            os.chown(p, user.uid, user.gid)
        except OSError as e:
            raise SandboxError(f"creating working directory {workdir}: {e}") from e


def _hosts_file(directory: str, hostname: str) -> str:
    # The same content BuildKit writes for a step.
    path = os.path.join(directory, "hosts")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    os.chmod(path, 0o644)
    return path


def _stub_target(root: Path, stubs: MountStubs, target: str, is_dir: bool) -> str:
    """Resolve `target` inside the rootfs, make it exist, return it relative to the rootfs."""
    if not target.startswith("/"):
        raise SandboxError(f"mount target {target}: not an absolute path")
    path = resolve_in_root(root, target)
    if path == root:
        raise SandboxError(f"mount target {target}: cannot mount over the root of the step")
    if os.path.lexists(path):
        if os.path.isdir(path) != is_dir:
            kind = "a directory" if is_dir else "a file"
            raise SandboxError(f"mount target {target}: exists in the rootfs but is not {kind}")
    else:
        try:
            stubs.add(path, is_dir)
        except OSError as e:
            raise SandboxError(f"mount target {target}: {e}") from e
    return str(path.relative_to(root))


def _planned_mounts(root: Path, spec: RunSpec, hosts: str, stubs: MountStubs) -> list[PlannedMount]:
    planned = []
    if _HOST_RESOLV_CONF.exists():
        rel = _stub_target(root, stubs, "/etc/resolv.conf", False)
        planned.append(PlannedMount("bind", rel, str(_HOST_RESOLV_CONF.resolve()), True))
    planned.append(PlannedMount("bind", _stub_target(root, stubs, "/etc/hosts", False), hosts, True))
    # Shallow targets first, so that a mount inside another mount's target lands on top of it.
    for mount in sorted(spec.mounts, key=lambda m: os.path.normpath(m.target).count("/")):
        if isinstance(mount, TmpfsMount):
            planned.append(PlannedMount("tmpfs", _stub_target(root, stubs, mount.target, True), size=mount.size))
        elif isinstance(mount, BindMount):
            source = Path(os.path.realpath(mount.source))
            if not source.exists():
                raise SandboxError(f"bind mount source {mount.source}: does not exist")
            rel = _stub_target(root, stubs, mount.target, source.is_dir())
            planned.append(PlannedMount("bind", rel, str(source), mount.readonly))
    return planned


def _copy_output(fd: int, output: BinaryIO) -> None:
    while chunk := os.read(fd, 65536):
        output.write(chunk)
        output.flush()


def _read_all(fd: int) -> str:
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    return data.decode(errors="replace").strip()


def _start_and_wait(plan: ChildPlan, output: BinaryIO | None) -> int:
    error_r, error_w = os.pipe()
    out_r, out_w = os.pipe() if output is not None else (-1, -1)
    plan = ChildPlan(**{**plan.__dict__, "error_fd": error_w})
    try:
        try:
            child = subprocess.Popen(
                # -P: do not put the current directory on sys.path of the child.
                [sys.executable, "-P", "-m", "kiln.sandbox.child"],
                stdin=subprocess.PIPE,
                stdout=out_w if output is not None else None,
                stderr=out_w if output is not None else None,
                pass_fds=(error_w,),
                start_new_session=True,  # a ^C on the terminal reaches kiln, which then ends the step
                cwd="/",
            )
        finally:
            os.close(error_w)
            if output is not None:
                os.close(out_w)
        try:
            assert child.stdin is not None
            try:
                child.stdin.write(plan.to_json())
                child.stdin.close()
            except BrokenPipeError:
                pass  # the child died at start: its status and message tell why
            if output is not None:
                _copy_output(out_r, output)
            child.wait()
        except BaseException:
            _stop(child)
            raise
        error = _read_all(error_r)
    finally:
        os.close(error_r)
        if output is not None:
            os.close(out_r)
    if error:
        raise SandboxError(f"sandbox: {error}")
    code = child.returncode
    return 128 - code if code < 0 else code


def _stop(child: subprocess.Popen[bytes]) -> None:
    """End a step early (kiln interrupted): the monitor kills PID 1, the kernel kills the rest."""
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(_TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def run_in_sandbox(spec: RunSpec, output: BinaryIO | None = None) -> int:
    """Run one step; stream its stdout+stderr to `output` (None: kiln's own); return its exit status
    (128+N when killed by signal N). Raises SandboxError when the sandbox itself cannot be set up, and for
    an unknown USER. A command that is not found is exit status 127 with a message on the output."""
    if not spec.argv:
        raise SandboxError("RUN with an empty command")
    root = _checked_rootfs(spec.rootfs)
    user = resolve_user(root, spec.user)
    workdir = "/" + spec.workdir.lstrip("/") if spec.workdir else "/"
    ensure_workdir(root, workdir, user)
    stubs = MountStubs()
    with tempfile.TemporaryDirectory(prefix="kiln-sandbox-") as scratch:
        try:
            plan = ChildPlan(
                rootfs=str(root),
                argv=list(spec.argv),
                env=_environment(spec, user),
                uid=user.uid,
                gid=user.gid,
                groups=list(user.groups),
                workdir=workdir,
                network=spec.network,
                hostname=spec.hostname,
                proc=_stub_target(root, stubs, "/proc", True),
                dev=_stub_target(root, stubs, "/dev", True),
                sys=_stub_target(root, stubs, "/sys", True),
                mounts=_planned_mounts(root, spec, _hosts_file(scratch, spec.hostname), stubs),
                parent_pid=os.getpid(),
                error_fd=-1,
            )
            stubs.sealed()
            return _start_and_wait(plan, output)
        finally:
            stubs.remove()
