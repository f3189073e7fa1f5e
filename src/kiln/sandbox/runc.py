"""Driving the OCI runtime (runc) for one step: a bundle whose config never touches a disk, the run, its
status, and removal of what a step left running.

The bundle's config.json is a FIFO that kiln fills from memory: runc reads the config once, and the step's
environment (build arguments, `RUN --mount=type=secret,env=`) is never written to a file. runc's own state lives
under a directory of the build (`state_dir`), so containers a dead build left behind can be found and deleted.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from kiln import linux
from kiln.errors import SandboxError
from kiln.sandbox import reaper

_RUNTIME_CANDIDATES = ("/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc", "/usr/local/bin/runc")
_F_SETPIPE_SZ = 1031
_EXEC_FAILED = 'unable to start container process: exec: "'
NOT_EXECUTABLE = 126
NOT_FOUND = 127
_MAX_CONFIG = 1 << 20  # the default /proc/sys/fs/pipe-max-size


def can_create_containers() -> bool:
    """Creating a container (namespaces, mounts) needs CAP_SYS_ADMIN."""
    return linux.has_capability(linux.CAP_SYS_ADMIN)


def check_can_create_containers() -> None:
    """Without CAP_SYS_ADMIN runc fails with messages that do not say why ("can't get final child's PID from
    pipe"). Say what to do instead, in one line."""
    if not can_create_containers():
        raise SandboxError("RUN needs to create a container and kiln lacks CAP_SYS_ADMIN here (an unprivileged "
                           "container?): build with --in-place inside such a container")


def find_runtime() -> str:
    """runc's path: $KILN_RUNC, then PATH, then the usual places."""
    candidates = [os.environ.get("KILN_RUNC", ""), shutil.which("runc") or "", *_RUNTIME_CANDIDATES]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    raise SandboxError("RUN needs the OCI runtime runc, which is not installed (Debian: apt-get install runc); "
                       "inside an unprivileged container, build with --in-place")


def _runc(runtime: str, state_dir: Path, *args: str) -> list[str]:
    return [runtime, "--root", str(state_dir), *args]


def _config_fifo(bundle: Path, config: dict[str, Any]) -> int:
    """Make bundle/config.json a FIFO holding the config; return the fd that keeps its data alive."""
    data = json.dumps(config, separators=(",", ":")).encode()
    if len(data) > _MAX_CONFIG:
        raise SandboxError(f"the step's configuration is {len(data)} bytes (environment too large)")
    fifo = bundle / "config.json"
    os.mkfifo(fifo, 0o600)
    # O_RDWR: opening does not wait for a reader, and the data stays in the pipe until runc reads it.
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, max(len(data), 4096))
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        raise
    return fd


def _runtime_error(log: Path) -> str:
    """runc's own error, if it failed (as opposed to the step's command failing)."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    errors = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("error", "fatal"):
            errors.append(str(entry.get("msg", "")))
    return errors[-1] if errors else ""


class Deletions:
    """`runc delete` of finished containers, in the background. A container with a PID namespace of its own is
    over once its first process is reaped: the kernel ends every other process of the namespace before that
    process's exit completes. What the delete then removes (runc's state directory and the empty cgroups) no
    longer touches the step's root, so the step's snapshot need not wait for it (a runc start, ~5 ms a step).
    `wait` before the state directory goes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[subprocess.Popen[bytes], str, str]] = []

    def start(self, runtime: str, state_dir: Path, container_id: str) -> None:
        process = subprocess.Popen(_runc(runtime, state_dir, "delete", "--force", container_id),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with self._lock:
            self._pending.append((process, str(state_dir), container_id))
            finished = [entry for entry in self._pending if entry[0].poll() is not None]
            self._pending = [entry for entry in self._pending if entry not in finished]
        for _, state, name in finished:
            reaper.untrack("container", state, name)

    def wait(self) -> None:
        """Until every delete started has finished."""
        with self._lock:
            pending, self._pending = self._pending, []
        for process, state, name in pending:
            process.wait()
            reaper.untrack("container", state, name)


def _own_pid_namespace(config: dict[str, Any]) -> bool:
    return any(ns.get("type") == "pid" and "path" not in ns for ns in config.get("linux", {}).get("namespaces", ()))


def run_container(
    runtime: str, state_dir: Path, container_id: str, bundle: Path, config: dict[str, Any],
    output: BinaryIO | None, deletions: Deletions | None = None,
) -> int:
    """Run the container to its end; return the command's status (128+N when killed by signal N).

    runc runs detached, so that the command's stdout and stderr are kiln's pipe itself (a foreground runc
    copies each through a pipe of its own, and their order is lost); kiln is a child subreaper, so the
    container's first process becomes kiln's child when runc exits, and kiln waits for it directly.
    With `deletions`, a container whose processes are all gone for certain is deleted in the background.
    """
    bundle.mkdir(mode=0o700)
    log = bundle / "runc.log"
    pid_file = bundle / "pid"
    linux.set_child_subreaper()
    reaper.track("container", str(state_dir), container_id)
    fifo_fd = _config_fifo(bundle, config)
    out_r, out_w = os.pipe() if output is not None else (-1, -1)
    pid = 0
    try:
        try:
            started = subprocess.run(
                _runc(runtime, state_dir, "--log", str(log), "--log-format", "json",
                      "run", "--detach", "--pid-file", str(pid_file), "--bundle", str(bundle), container_id),
                stdin=subprocess.DEVNULL,
                stdout=out_w if output is not None else None,
                stderr=out_w if output is not None else None,
                env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},  # nothing of kiln's
                start_new_session=True,  # a ^C on the terminal reaches kiln, which then ends the step
                cwd="/",
                check=False,
            )
        finally:
            if output is not None:
                os.close(out_w)
        if started.returncode == 0:
            pid = int(pid_file.read_text())
        if output is not None:  # until the step's last process ends (or at once, if runc failed)
            while chunk := os.read(out_r, 65536):
                output.write(chunk)
                output.flush()
        if started.returncode != 0:
            delete_container(runtime, state_dir, container_id)
            reaper.untrack("container", str(state_dir), container_id)
            failure = _runtime_error(log)
            if _EXEC_FAILED in failure:
                # The command could not be executed: the step's failure, with a shell's status (runc has
                # written its message to the step's output).
                return NOT_EXECUTABLE if "permission denied" in failure else NOT_FOUND
            raise SandboxError(f"sandbox: {failure or f'runc exited with status {started.returncode}'}")
        _, wait_status = os.waitpid(pid, 0)
        pid = 0
    except BaseException:
        delete_container(runtime, state_dir, container_id)
        reaper.untrack("container", str(state_dir), container_id)
        if pid:
            _reap(pid)
        raise
    finally:
        os.close(fifo_fd)
        if output is not None:
            os.close(out_r)
    if deletions is not None and _own_pid_namespace(config):
        deletions.start(runtime, state_dir, container_id)
    else:
        delete_container(runtime, state_dir, container_id)
        reaper.untrack("container", str(state_dir), container_id)
    status = os.waitstatus_to_exitcode(wait_status)
    return 128 - status if status < 0 else status


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def delete_container(runtime: str, state_dir: Path, container_id: str) -> None:
    """Kill a container's processes and remove its state; nothing if it is already gone."""
    subprocess.run(_runc(runtime, state_dir, "delete", "--force", container_id), stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def containers(runtime: str, state_dir: Path) -> Iterator[str]:
    """The ids of the containers runc knows under `state_dir`."""
    try:
        names = os.listdir(state_dir)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return
        raise
    yield from sorted(names)
