"""The host's devices an attacker would go for, as the attack tests find them on this machine."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def host_block_device() -> tuple[str, int, int] | None:
    """(name, major, minor) of a real disk of this machine (not a loop, ram or zram device), if any."""
    for name in sorted(os.listdir("/sys/block")):
        if name.startswith(("loop", "ram", "zram", "sr", "fd")):
            continue
        major, minor = (int(x) for x in Path(f"/sys/block/{name}/dev").read_text().split(":"))
        return name, major, minor
    return None


def can_open(path: str) -> bool:
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
    except OSError:
        return False
    return True


# Devices outside a container's allowed list that root often can open: loop and zram disks, kmsg, tty0.
_CANDIDATES = ("loop0", "zram0", "kmsg", "tty0", "loop-control")


def host_openable_device() -> tuple[str, int, int] | None:
    """("b"|"c", major, minor) of a device this machine's root can open and a default container may not."""
    for name in _CANDIDATES:
        path = f"/dev/{name}"
        try:
            st = os.stat(path)
        except OSError:
            continue
        if can_open(path):
            kind = "b" if stat.S_ISBLK(st.st_mode) else "c"
            return kind, os.major(st.st_rdev), os.minor(st.st_rdev)
    return None
