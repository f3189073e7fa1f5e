"""run_in_place: a RUN step in kiln's own root, for kaniko's way of working (a container without the privilege
to make namespaces or mounts).

The command runs directly, as a child of kiln: the step's USER (setgroups, setgid, setuid; done by
subprocess's C child, so no Python code runs between fork and exec in a process that has threads), its
WORKDIR (created, owned by that user, when missing), exactly its environment (plus PATH and HOME defaults, as
in the namespaced sandbox), stdin from /dev/null, in a session and process group of its own.

RUN --mount is placed rather than mounted (sandbox/placed.py): each mount's content is put at its target for
the step and taken away after it.

What the namespaced sandbox gives and this cannot:
- no private /proc, /dev, /sys, /etc/hosts or hostname: the step sees the container's own;
- no network namespace of kiln's: RUN --network=none runs in one made inside a user namespace
  (sandbox/nonet.py), where the container allows that, and is refused with the reason where it does not;
- read-only mounts are writable during the step (the writes are thrown away), and secrets are files on the
  container's disk while the step runs;
- no PID namespace: when the command exits, its process group is killed, and kiln, made a child subreaper
  (prctl PR_SET_CHILD_SUBREAPER), also kills every process the step left behind that setsid()'d or
  double-forked away: orphans are re-parented to kiln, not to the container's init, so they can be found.
  A process that escapes both (one that a process outside the step adopts) is out of reach.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import BinaryIO

from kiln import linux
from kiln.errors import SandboxError
from kiln.rootfs.users import ResolvedUser, resolve_user
from kiln.sandbox.placed import PlacedMounts
from kiln.sandbox.run import ensure_workdir
from kiln.sandbox.spec import RunSpec

NOT_EXECUTABLE = 126
NOT_FOUND = 127

_MAX_KILL_ROUNDS = 1000


def become_subreaper() -> None:
    """Orphans of the step's processes are re-parented to kiln from now on (idempotent)."""
    try:
        linux.set_child_subreaper()
    except OSError as e:
        raise SandboxError(str(e)) from None


def children_of(pid: int, proc: Path = Path("/proc")) -> set[int]:
    """The processes whose parent is pid (zombies included), read from /proc."""
    found: set[int] = set()
    try:
        entries = os.listdir(proc)
    except OSError:
        return found
    for name in entries:
        if not name.isdigit():
            continue
        try:
            stat_line = (proc / name / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses; the last ")" ends it.
        fields = stat_line[stat_line.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.add(int(name))
    return found


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass  # not ours to reap after all (a Popen of someone else already did)


def kill_leftovers(step_pid: int, known_children: set[int]) -> int:
    """Kill the step's process group and every process re-parented to kiln since the step started.

    Returns how many re-parented processes were found (they had left the step's process group or lost their
    parent). known_children: kiln's children before the step, which are left alone."""
    try:
        os.killpg(step_pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    me = os.getpid()
    seen = 0
    for _ in range(_MAX_KILL_ROUNDS):
        # Killing one process re-parents its own children to kiln: repeat until none is left.
        strays = children_of(me) - known_children - {step_pid}
        if not strays:
            break
        seen += len(strays)
        for pid in strays:
            _kill_and_reap(pid)
    return seen


def _copy(fd: int, output: BinaryIO) -> None:
    try:
        while chunk := os.read(fd, 65536):
            output.write(chunk)
            output.flush()
    finally:
        os.close(fd)


def _needs_switch(user: ResolvedUser) -> bool:
    """Whether the step's user differs from kiln's (an unprivileged kiln can still run steps as itself)."""
    if (os.geteuid(), os.getegid()) == (user.uid, user.gid) and set(os.getgroups()) == set(user.groups):
        return False
    if os.geteuid() != 0:
        raise SandboxError(f"switching to uid {user.uid} gid {user.gid} needs root; kiln runs as uid {os.geteuid()}")
    return True


_NONET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nonet.py")
_FULL_MAP = "0 0 4294967295\n"


def _start(
    spec: RunSpec, env: dict[str, str], workdir: str, user: ResolvedUser | None, out_w: int | None
) -> subprocess.Popen[bytes] | int:
    """The started step, or its exit status when its command could not be executed (as a shell reports it)."""
    if spec.network == "none":
        return _start_without_network(spec, env, workdir, user, out_w)
    return _popen(list(spec.argv), spec.argv[0], env, workdir, user, out_w, ())


def _start_without_network(
    spec: RunSpec, env: dict[str, str], workdir: str, user: ResolvedUser | None, out_w: int | None
) -> subprocess.Popen[bytes] | int:
    """The step through sandbox/nonet.py: a user namespace (IDs mapped one to one by kiln, here) holding a
    network namespace with only a loopback. Where the kernel or the container refuses, say which step needs it."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    argv = [sys.executable, "-I", "-S", _NONET, str(ready_w), str(go_r), "--", *spec.argv]
    try:
        started = _popen(argv, spec.argv[0], env, workdir, user, out_w, (ready_w, go_r))
    finally:
        os.close(ready_w)
        os.close(go_r)
    try:
        if isinstance(started, int):
            raise SandboxError(f"RUN --network=none in place: cannot start {sys.executable}")
        problem = None
        first = os.read(ready_r, 1)
        if first == b"U":
            try:
                for name in ("uid_map", "gid_map"):
                    with open(f"/proc/{started.pid}/{name}", "w", encoding="ascii") as f:
                        f.write(_FULL_MAP)
            except OSError as e:
                problem = f"mapping the user namespace's IDs: {e.strerror or e}"
            os.write(go_w, b"G" if problem is None else b"N")
            first = os.read(ready_r, 1)
        if first == b"E":
            problem = _read_all(ready_r).decode(errors="replace")
        elif first and problem is None:
            problem = f"unexpected answer {first!r} from the namespace helper"
        if problem is not None:
            started.wait()
            raise SandboxError(
                "RUN --network=none needs a network namespace; in place kiln makes one inside a user namespace of "
                f"its own, and this container refused it ({problem}): allow user namespaces (the pod's seccomp "
                "profile, the kernel's user.max_user_namespaces) or drop --network=none"
            )
        return started
    finally:
        os.close(ready_r)
        os.close(go_w)


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
    return data


def _popen(
    argv: list[str], name: str, env: dict[str, str], workdir: str, user: ResolvedUser | None, out_w: int | None,
    pass_fds: tuple[int, ...],
) -> subprocess.Popen[bytes] | int:
    try:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=out_w,
            start_new_session=True,
            close_fds=True,
            pass_fds=pass_fds,
            user=user.uid if user else None,
            group=user.gid if user else None,
            extra_groups=list(user.groups) if user else None,
        )
    except OSError as e:
        if e.filename not in (None, workdir) and isinstance(e, FileNotFoundError | PermissionError):
            reason = "executable file not found in $PATH" if "/" not in name else "no such file or directory"
            if isinstance(e, PermissionError):
                reason = "permission denied"
            message = f'kiln: exec: "{name}": {reason}\n'.encode(errors="replace")
            if out_w is not None:
                os.write(out_w, message)
            return NOT_FOUND if isinstance(e, FileNotFoundError) else NOT_EXECUTABLE
        raise SandboxError(f"starting the step: {e}") from e


def run_in_place(spec: RunSpec, output: BinaryIO | None = None) -> int:
    """Run one step in kiln's own root (spec.rootfs must be /); stream its stdout+stderr to `output` (None:
    kiln's own); return its exit status (128+N when killed by signal N). Raises SandboxError for what this
    mode cannot do (--network=none where no user namespace may be made), for an unknown USER, and when the
    step cannot be started."""
    if not spec.argv:
        raise SandboxError("RUN with an empty command")
    if os.path.realpath(spec.rootfs) != "/":
        raise SandboxError(f"in-place steps run in kiln's own root, not in {spec.rootfs}")
    root = Path("/")
    user = resolve_user(root, spec.user)
    workdir = "/" + spec.workdir.lstrip("/") if spec.workdir else "/"
    ensure_workdir(root, workdir, user)
    switch_to = user if _needs_switch(user) else None
    if not spec.mounts:
        return _run(spec, user, workdir, switch_to, output)
    if spec.runtime_dir is None:
        raise SandboxError("RUN --mount in place needs a directory of kiln's to keep what its targets held")
    scratch = spec.runtime_dir / f"placed-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    scratch.mkdir(mode=0o700, parents=True)
    placed = PlacedMounts(root, scratch)
    try:
        try:
            placed.place_all(spec.mounts)
        except BaseException:
            placed.remove()
            raise
        try:
            code = _run(spec, user, workdir, switch_to, output)
        finally:
            placed.remove()
        return code
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run(spec: RunSpec, user: ResolvedUser, workdir: str, switch_to: ResolvedUser | None,
         output: BinaryIO | None) -> int:
    become_subreaper()
    before = children_of(os.getpid())
    out_r, out_w = os.pipe() if output is not None else (-1, -1)
    reader: threading.Thread | None = None
    try:
        started = _start(spec, spec.environment(user.home), workdir, switch_to, out_w if output is not None else None)
    finally:
        if output is not None:
            os.close(out_w)
    if output is not None:
        # The reader stops at EOF: when the command and everything it left behind are gone.
        reader = threading.Thread(target=_copy, args=(out_r, output), name="run-output", daemon=True)
        reader.start()
    if isinstance(started, int):
        if reader is not None:
            reader.join()
        return started
    try:
        code = started.wait()
    finally:
        kill_leftovers(started.pid, before)
        if started.returncode is None:
            started.wait()
        if reader is not None:
            reader.join()
    return 128 - code if code < 0 else code
