"""Thin ctypes wrappers over the Linux calls Python 3.11 lacks: unshare, mount, umount2, pivot_root, ...

Each raises OSError with the errno and the call's arguments, so a failing sandbox says what it tried.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_STRICTATIME = 1 << 24

MNT_DETACH = 2

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36

# glibc has no pivot_root wrapper; the syscall number depends on the architecture.
_PIVOT_ROOT_NR = {
    "x86_64": 155,
    "aarch64": 217,
    "arm64": 217,
    "s390x": 217,
    "i686": 217,
    "i386": 217,
    "ppc64le": 203,
    "ppc64": 203,
    "riscv64": 41,
    "loongarch64": 41,
    "armv7l": 218,
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.syscall.restype = ctypes.c_long
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _fail(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def _b(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        raise _fail(f"unshare({flags:#x})")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    if _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        raise _fail(f"mount({source!r}, {target!r}, {fstype!r}, {flags:#x}, {data!r})")


def umount2(target: str, flags: int = 0) -> None:
    if _libc.umount2(_b(target), flags) != 0:
        raise _fail(f"umount2({target!r}, {flags})")


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2); OSError(ENOSYS) on an architecture whose syscall number we do not know."""
    nr = _PIVOT_ROOT_NR.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown syscall number on {platform.machine()}")
    if _libc.syscall(ctypes.c_long(nr), _b(new_root), _b(put_old)) != 0:
        raise _fail(f"pivot_root({new_root!r}, {put_old!r})")


def sethostname(name: str) -> None:
    raw = name.encode()
    if _libc.sethostname(raw, len(raw)) != 0:
        raise _fail(f"sethostname({name!r})")


def set_parent_death_signal(signum: int) -> None:
    """Have the kernel send `signum` to this process when the thread that started it dies."""
    if _libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        raise _fail("prctl(PR_SET_PDEATHSIG)")


def set_child_subreaper() -> None:
    """Orphaned descendants are re-parented to this process rather than to init (idempotent)."""
    if _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise _fail("prctl(PR_SET_CHILD_SUBREAPER)")


def bind(source: str, target: str, readonly: bool, recursive: bool = True) -> None:
    """Bind `source` on `target`; read-only takes a second remount (the kernel ignores MS_RDONLY on bind)."""
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))
    if readonly:
        # Keep the flags the source mount already has (nosuid, nodev, noexec): dropping them is refused
        # in some setups, and a read-only view should not be more permissive than the original.
        kept = os.statvfs(target).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | kept)
