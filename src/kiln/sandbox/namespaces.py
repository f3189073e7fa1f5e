"""The child's side of a step: private namespaces, the rootfs's /proc /dev /sys and mounts, pivot_root,
and the switch to the step's user. Called only from kiln.sandbox.child, in a process with one thread.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
import struct

from kiln.sandbox import mounts as m
from kiln.sandbox.plan import ChildPlan, PlannedMount

# (name, major, minor): the device nodes every container gets (the OCI runtime spec's default devices).
_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))
_DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
)
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def enter_namespaces(network: str) -> None:
    """Unshare mount, PID, IPC, UTS (and network for network=none) namespaces; make every mount private.

    The new PID namespace applies to the children forked after this call: the first becomes its PID 1.
    """
    flags = m.CLONE_NEWNS | m.CLONE_NEWPID | m.CLONE_NEWIPC | m.CLONE_NEWUTS
    if network == "none":
        flags |= m.CLONE_NEWNET
    m.unshare(flags)
    # Nothing mounted from here on may propagate back to the host's mount namespace.
    m.mount(None, "/", None, m.MS_REC | m.MS_PRIVATE)


def bring_up_loopback() -> None:
    """Set IFF_UP on `lo` in a fresh network namespace (it starts down), so 127.0.0.1 works."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _inside(root: str, rel: str) -> str:
    return os.path.join(root, rel) if rel else root


def _setup_dev(dev: str) -> None:
    m.mount("tmpfs", dev, "tmpfs", m.MS_NOSUID | m.MS_STRICTATIME, "mode=755,size=65536k")
    for name, major, minor in _DEVICES:
        path = os.path.join(dev, name)
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
            os.chmod(path, 0o666)  # mknod applies the umask
        except PermissionError:
            # mknod can be refused (a device cgroup, a restricted container): bind the host's node.
            open(path, "wb").close()
            m.bind(f"/dev/{name}", path, readonly=False, recursive=False)
    for name, target in _DEV_LINKS:
        os.symlink(target, os.path.join(dev, name))
    os.mkdir(os.path.join(dev, "pts"), 0o755)
    m.mount("devpts", os.path.join(dev, "pts"), "devpts", m.MS_NOSUID | m.MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5")
    os.mkdir(os.path.join(dev, "shm"), 0o1777)
    m.mount("shm", os.path.join(dev, "shm"), "tmpfs", m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC,
            "mode=1777,size=65536k")
    os.mkdir(os.path.join(dev, "mqueue"), 0o755)
    try:
        m.mount("mqueue", os.path.join(dev, "mqueue"), "mqueue", m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC)
    except OSError as e:
        if e.errno != errno.ENODEV:  # a kernel without POSIX message queues: leave the directory empty
            raise


def _setup_sys(sys_dir: str) -> None:
    flags = m.MS_RDONLY | m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC
    try:
        # A fresh sysfs shows the network devices of the step's network namespace (only lo for "none").
        m.mount("sysfs", sys_dir, "sysfs", flags)
    except PermissionError:
        m.bind("/sys", sys_dir, readonly=True)


def _ensure_target(path: str, source_is_dir: bool) -> None:
    """Mount points hidden under an earlier mount of the step (the parent made the rest as stubs)."""
    if os.path.lexists(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if source_is_dir:
        os.mkdir(path, 0o755)
    else:
        open(path, "wb").close()


def _apply_mount(root: str, planned: PlannedMount) -> None:
    target = _inside(root, planned.target)
    if planned.kind == "tmpfs":
        _ensure_target(target, True)
        data = "mode=1777" + (f",size={planned.size}" if planned.size is not None else "")
        m.mount("tmpfs", target, "tmpfs", m.MS_NOSUID | m.MS_NODEV, data)
        return
    _ensure_target(target, os.path.isdir(planned.source))
    m.bind(planned.source, target, planned.readonly)


def _enter_root(root: str) -> None:
    """Make `root` the process's `/`: pivot_root and detach the old root, or MS_MOVE + chroot."""
    os.chdir(root)
    try:
        m.pivot_root(".", ".")
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EINVAL):
            raise
        # pivot_root is refused when the current root is not a mount (an initramfs): move and chroot.
        m.mount(root, "/", None, m.MS_MOVE)
        os.chroot(".")
    else:
        # The old root is now stacked on the new one; detach it so nothing of the host stays reachable.
        m.umount2(".", m.MNT_DETACH)
    os.chdir("/")


def build_root(plan: ChildPlan) -> None:
    """Mount the step's view (in the private mount namespace) and pivot into it. Run by the PID-1 process."""
    root = plan.rootfs
    # pivot_root needs a mount point; the bind is also what /proc etc. are stacked on, in our namespace only.
    m.bind(root, root, readonly=False)
    m.mount("proc", _inside(root, plan.proc), "proc", m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC)
    _setup_dev(_inside(root, plan.dev))
    _setup_sys(_inside(root, plan.sys))
    for planned in plan.mounts:
        _apply_mount(root, planned)
    _enter_root(root)


def switch_user(uid: int, gid: int, groups: list[int]) -> None:
    """setgroups, setgid, setuid: in that order, since each one needs the privilege the next one drops."""
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)
