"""`python -m kiln.sandbox.child`: the process that runs one step, started fresh by run_in_sandbox.

Reads a ChildPlan (JSON) on stdin. Three processes take part:
  monitor  this process: unshares the namespaces, forks PID 1, waits for it, exits with its status.
           SIGTERM/SIGINT/SIGHUP make it SIGKILL PID 1, which ends the whole step.
  init     PID 1 of the step's PID namespace: mounts the step's view, pivots into it, forks the command,
           reaps orphans until the command exits, then exits with the command's status. Its exit makes the
           kernel kill every process left in the namespace (daemons started in the background included).
  command  switches to the step's user and working directory and execs argv with the step's environment.
A setup failure is written as one line to the plan's error fd (the parent raises SandboxError from it) and
the process exits with 125. A command that cannot be executed is the step's failure, not the sandbox's: its
message goes to the step's output and the status is 127 (not found) or 126 (not executable), as in a shell.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

from kiln.sandbox import mounts, namespaces
from kiln.sandbox.plan import ChildPlan

SETUP_FAILED = 125
NOT_EXECUTABLE = 126
NOT_FOUND = 127


def _report(plan: ChildPlan, message: str) -> None:
    try:
        os.write(plan.error_fd, (message.replace("\n", " ") + "\n").encode(errors="replace"))
    except OSError:
        pass


def _status_of(wait_status: int) -> int:
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def _exec_command(plan: ChildPlan, stdin_fd: int) -> NoReturn:
    try:
        os.dup2(stdin_fd, 0)
        os.close(stdin_fd)
        # Python ignores SIGPIPE and SIGXFSZ, and ignored signals stay ignored across exec.
        for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.chdir(plan.workdir)  # as root, before dropping privileges, like runc
        namespaces.switch_user(plan.uid, plan.gid, plan.groups)
    except OSError as e:
        _report(plan, f"preparing the command: {e}")
        os._exit(SETUP_FAILED)
    name = plan.argv[0]
    try:
        os.execvpe(name, plan.argv, plan.env)
    except FileNotFoundError:
        reason = "no such file or directory" if "/" in name else "executable file not found in $PATH"
        status = NOT_FOUND
    except OSError as e:
        reason, status = (e.strerror or str(e)).lower(), NOT_EXECUTABLE
    os.write(2, f'kiln: exec: "{name}": {reason}\n'.encode(errors="replace"))
    os._exit(status)


def _init(plan: ChildPlan) -> int:
    """PID 1 of the step."""
    mounts.set_parent_death_signal(signal.SIGKILL)
    try:
        namespaces.build_root(plan)
        stdin_fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        _report(plan, f"setting up the rootfs: {e}")
        return SETUP_FAILED
    command = os.fork()
    if command == 0:
        _exec_command(plan, stdin_fd)
    os.close(stdin_fd)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return SETUP_FAILED  # cannot happen while the command is alive
        if pid == command:
            return _status_of(status)


def _forward_kill(pid: int) -> Callable[[int, object], None]:
    def handler(signum: int, frame: object) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    return handler


def main() -> int:
    plan = ChildPlan.from_json(sys.stdin.buffer.read())
    os.set_inheritable(plan.error_fd, False)  # only the setup processes may write to it, not the command
    try:
        mounts.set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != plan.parent_pid:
            return SETUP_FAILED  # kiln is already gone
        namespaces.enter_namespaces(plan.network)
        mounts.sethostname(plan.hostname)
        if plan.network == "none":
            namespaces.bring_up_loopback()
    except OSError as e:
        _report(plan, f"entering namespaces: {e}")
        return SETUP_FAILED

    init = os.fork()
    if init == 0:
        try:
            status = _init(plan)
        except BaseException as e:  # PID 1 must exit, never unwind into the monitor's code
            _report(plan, f"sandbox init: {type(e).__name__}: {e}")
            status = SETUP_FAILED
        os._exit(status)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _forward_kill(init))
    _, status = os.waitpid(init, 0)
    return _status_of(status)


if __name__ == "__main__":
    try:
        code = main()
    except Exception as e:
        sys.stderr.write(f"kiln sandbox: {type(e).__name__}: {e}\n")
        code = SETUP_FAILED
    sys.stdout.flush()
    os._exit(code)
