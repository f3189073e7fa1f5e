"""RUN --network=none in place: the step's command in a network namespace of its own, with only a loopback.

A container without CAP_SYS_ADMIN cannot make a network namespace, but it can often make a user namespace
(kernel permitting, seccomp allowing), and in one it owns, it may make the network namespace too. This file runs
as a script of its own (``python -I -S nonet.py READY_FD GO_FD -- ARGV...``, standard library only, so it starts
fast and imports nothing of kiln): it enters a new user namespace, tells kiln (READY_FD) and waits (GO_FD) while
kiln, which holds CAP_SETUID and CAP_SETGID outside, writes an identity map for every uid and gid (files keep
their real owners), then enters a new network namespace, brings its loopback up and executes the command.

The namespace gives the command no more than it had: the capability bounding set is kept through unshare(2),
so after execve root has exactly the capabilities it had before, and any other user none.

On failure before the command starts, the reason goes to READY_FD as b"E" + message, and the exit status is
125; a command that cannot be executed exits 127 or 126 with the message a shell would print.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_RUNNING = 0x40
SETUP_FAILED = 125


def _unshare(flags: int, what: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare({what}): {os.strerror(err)}")


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH22x", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING)
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, request)


def main(argv: list[str]) -> int:
    ready, go = int(argv[1]), int(argv[2])
    command = argv[4:]
    try:
        _unshare(CLONE_NEWUSER, "CLONE_NEWUSER")
        os.write(ready, b"U")
        if os.read(go, 1) != b"G":
            return SETUP_FAILED  # kiln could not map the IDs and said so itself
        _unshare(CLONE_NEWNET, "CLONE_NEWNET")
        _loopback_up()
    except OSError as e:
        os.write(ready, b"E" + str(e.strerror or e).encode(errors="replace"))
        return SETUP_FAILED
    os.close(ready)
    os.close(go)
    try:
        os.execvp(command[0], command)
    except FileNotFoundError:
        reason, status = ("executable file not found in $PATH" if "/" not in command[0]
                          else "no such file or directory"), 127
    except PermissionError:
        reason, status = "permission denied", 126
    except OSError as e:
        reason, status = e.strerror or str(e), 126
    sys.stderr.write(f'kiln: exec: "{command[0]}": {reason}\n')
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
