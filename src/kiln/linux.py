"""kiln's one binding to the Linux calls Python 3.11 lacks (mount, umount2, the new mount API, prctl, unshare),
through ctypes, and what /proc says of this process's namespaces. Each call raises OSError with the errno and
the call's arguments, so a failure says what was tried."""

from __future__ import annotations

import ctypes
import os

MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MNT_DETACH = 2

# The new mount API's syscall numbers are the same on every architecture (they came after the tables merged).
_SYS_MOVE_MOUNT = 429
_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432
_FSOPEN_CLOEXEC = 0x1
_FSMOUNT_CLOEXEC = 0x1
_FSCONFIG_SET_FLAG = 0
_FSCONFIG_SET_STRING = 1
_FSCONFIG_CMD_CREATE = 6
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_AT_FDCWD = -100
_PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.mount.restype = ctypes.c_int
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.umount2.restype = ctypes.c_int
_libc.syscall.restype = ctypes.c_long
_libc.unshare.argtypes = [ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _fail(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def _b(text: str | os.PathLike[str] | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def mount(source: str | None, target: str | os.PathLike[str], fstype: str | None, flags: int = 0,
          data: str | bytes | None = None) -> None:
    raw = data if isinstance(data, bytes) or data is None else data.encode()
    if _libc.mount(_b(source), _b(target), _b(fstype), flags, raw) != 0:
        raise _fail(f"mount({source!r}, {str(target)!r}, {fstype!r}, {flags:#x})")


def umount2(target: str | os.PathLike[str], flags: int = 0) -> None:
    if _libc.umount2(_b(target), flags) != 0:
        raise _fail(f"umount2({str(target)!r}, {flags})")


def unshare(flags: int) -> None:
    """unshare(2) (os.unshare is Python 3.12's)."""
    if _libc.unshare(flags) != 0:
        raise _fail(f"unshare({flags:#x})")


def set_child_subreaper() -> None:
    """Orphaned descendants are re-parented to this process rather than to init (idempotent)."""
    if _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise _fail("prctl(PR_SET_CHILD_SUBREAPER)")


def fsopen(fstype: str) -> int:
    fd = _libc.syscall(ctypes.c_long(_SYS_FSOPEN), ctypes.c_char_p(fstype.encode()), ctypes.c_long(_FSOPEN_CLOEXEC))
    if fd < 0:
        raise _fail(f"fsopen {fstype}")
    return int(fd)


def fsconfig_string(fs_fd: int, key: str, value: str | os.PathLike[str]) -> None:
    res = _libc.syscall(ctypes.c_long(_SYS_FSCONFIG), ctypes.c_long(fs_fd), ctypes.c_long(_FSCONFIG_SET_STRING),
                        ctypes.c_char_p(key.encode()), ctypes.c_char_p(_b(value)), ctypes.c_long(0))
    if res < 0:
        raise _fail(f"fsconfig {key}={value}")


def fsconfig_flag(fs_fd: int, key: str) -> None:
    """A parameter without a value (overlayfs' userxattr)."""
    res = _libc.syscall(ctypes.c_long(_SYS_FSCONFIG), ctypes.c_long(fs_fd), ctypes.c_long(_FSCONFIG_SET_FLAG),
                        ctypes.c_char_p(key.encode()), ctypes.c_char_p(None), ctypes.c_long(0))
    if res < 0:
        raise _fail(f"fsconfig {key}")


def fsconfig_create(fs_fd: int) -> None:
    res = _libc.syscall(ctypes.c_long(_SYS_FSCONFIG), ctypes.c_long(fs_fd), ctypes.c_long(_FSCONFIG_CMD_CREATE),
                        None, None, ctypes.c_long(0))
    if res < 0:
        raise _fail("fsconfig create")


def fsmount(fs_fd: int) -> int:
    fd = _libc.syscall(ctypes.c_long(_SYS_FSMOUNT), ctypes.c_long(fs_fd), ctypes.c_long(_FSMOUNT_CLOEXEC),
                       ctypes.c_long(0))
    if fd < 0:
        raise _fail("fsmount")
    return int(fd)


def move_mount_to(mnt_fd: int, target: str | os.PathLike[str]) -> None:
    """Attach a detached mount (from fsmount) at target."""
    res = _libc.syscall(ctypes.c_long(_SYS_MOVE_MOUNT), ctypes.c_long(mnt_fd), ctypes.c_char_p(b""),
                        ctypes.c_long(_AT_FDCWD), ctypes.c_char_p(_b(target)), ctypes.c_long(_MOVE_MOUNT_F_EMPTY_PATH))
    if res < 0:
        raise _fail(f"move_mount to {target}")


CAP_SYS_ADMIN = 21


def capability_set(which: str = "CapEff", status: str = "/proc/self/status") -> int:
    """One of this process's capability sets as a bit mask (which: CapEff, CapBnd, CapPrm, CapInh, CapAmb)."""
    with open(status, encoding="ascii") as f:
        for line in f:
            if line.startswith(which + ":"):
                return int(line.split()[1], 16)
    raise OSError(f"{status} has no {which} line")


def has_capability(bit: int, which: str = "CapEff") -> bool:
    return bool(capability_set(which) >> bit & 1)


def id_map(kind: str = "uid", pid: str = "self") -> list[tuple[int, int, int]]:
    """The (inside, outside, count) ranges of a process's uid_map or gid_map."""
    with open(f"/proc/{pid}/{kind}_map") as f:
        return [(int(a), int(b), int(c)) for a, b, c in (line.split() for line in f if line.strip())]


def in_user_namespace() -> bool:
    """Whether this process runs in a user namespace other than the host's (whose map is the identity of every
    ID). There, some things root may do on the host are refused: mounting sysfs, creating device nodes, trusted.*
    xattrs, IDs that the map lacks."""
    return id_map("uid") != [(0, 0, 4294967295)]
