"""The OCI runtime config of one RUN step: what a Docker container gets by default, and nothing of the host.

Docker's defaults, as facts: the fourteen default capabilities (none inheritable or ambient, and only in the
bounding set for a user other than root, as an execve() by that user would leave them), Docker's seccomp
allowlist (sandbox/seccomp.py), the masked and read-only paths of /proc and /sys, /sys read-only, a private /dev
with the standard devices only and a device cgroup that lets a step create device nodes but open none but
those. `privileged` is `RUN --security=insecure` (BuildKit's entitlement): every capability, no seccomp, no
masked paths, every device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kiln import linux
from kiln.sandbox.seccomp import seccomp_profile

DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
)  # fmt: skip

# Every capability up to CAP_CHECKPOINT_RESTORE (40), in bit order.
ALL_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip

MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)  # fmt: skip
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# Device cgroup: deny everything, then allow creating any node (a package may ship one) and using only the
# standard devices: null, zero, full, random, urandom, tty, console, ptmx, the devpts ptys, and tun.
_DEVICE_RULES: list[dict[str, Any]] = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    *({"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
      for major, minor in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (10, 200))),
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
]

_UMASK = 0o022


def own_capabilities() -> list[str]:
    """The capabilities in kiln's own bounding set: all that a privileged step can be given (a container that
    runs kiln may itself lack some)."""
    bounding = linux.capability_set("CapBnd")
    return [cap for bit, cap in enumerate(ALL_CAPABILITIES) if bounding >> bit & 1]


@dataclass(frozen=True)
class ContainerMount:
    """One entry of the config's `mounts`: `destination` relative to the rootfs or absolute inside it."""

    destination: str
    type: str
    source: str
    options: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"destination": self.destination, "type": self.type, "source": self.source,
                "options": list(self.options)}


@dataclass(frozen=True)
class Confinement:
    """What the namespace kiln runs in allows: in a user namespace (rootless) sysfs cannot be mounted without a
    network namespace of the step's own, and a devpts gid the map lacks cannot be set."""

    user_namespace: bool = False
    tty_gid_mapped: bool = True
    # Parts of /proc covered by mounts (a container runtime's masked paths, as in every Kubernetes pod): the kernel
    # then refuses a fresh procfs to a user namespace, lest it uncover them.
    proc_masked: bool = False

    @classmethod
    def here(cls) -> Confinement:
        if not linux.in_user_namespace():
            return cls()
        gid_map = linux.id_map("gid")
        return cls(True, any(inside <= _TTY_GID < inside + count for inside, _, count in gid_map), _proc_masked())


_TTY_GID = 5  # the tty group, which owns the ptys, as in Docker's config
# Mounted under /proc without hiding anything of it: the kernel leaves its mount point empty.
_HARMLESS_PROC_MOUNTS = frozenset({"/proc/sys/fs/binfmt_misc"})


def _proc_masked(mountinfo: str = "/proc/self/mountinfo") -> bool:
    with open(mountinfo) as f:
        points = [line.split()[4] for line in f if len(line.split()) > 4]
    return any(p.startswith("/proc/") and p not in _HARMLESS_PROC_MOUNTS for p in points)


def _system_mounts(privileged: bool, network: str, confinement: Confinement) -> list[ContainerMount]:
    sys_options = ("nosuid", "noexec", "nodev") + (() if privileged else ("ro",))
    pts_options: tuple[str, ...] = ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620")
    if confinement.tty_gid_mapped:
        pts_options += (f"gid={_TTY_GID}",)
    if confinement.user_namespace and network != "none":
        # As runc's own rootless spec does: the host's /sys, bound read-only (a fresh sysfs needs a network
        # namespace the user namespace owns).
        sys_mount = ContainerMount("/sys", "none", "/sys", ("rbind", "nosuid", "noexec", "nodev", "ro"))
    else:
        sys_mount = ContainerMount("/sys", "sysfs", "sysfs", sys_options)
    if confinement.proc_masked:
        # As BuildKit's rootless mode without a process sandbox: the /proc kiln sees, bound; the step shares
        # kiln's PID namespace (runtime_config leaves it out) so that this /proc describes it.
        proc_mount = ContainerMount("/proc", "none", "/proc", ("rbind", "nosuid", "noexec", "nodev"))
    else:
        proc_mount = ContainerMount("/proc", "proc", "proc", ("nosuid", "noexec", "nodev"))
    return [
        proc_mount,
        ContainerMount("/dev", "tmpfs", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")),
        ContainerMount("/dev/pts", "devpts", "devpts", pts_options),
        ContainerMount("/dev/shm", "tmpfs", "shm", ("nosuid", "noexec", "nodev", "mode=1777", "size=65536k")),
        ContainerMount("/dev/mqueue", "mqueue", "mqueue", ("nosuid", "noexec", "nodev")),
        sys_mount,
    ]


def runtime_config(
    *,
    rootfs: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    uid: int,
    gid: int,
    groups: Sequence[int],
    cwd: str,
    hostname: str,
    network: Literal["host", "none"],
    mounts: Sequence[ContainerMount],
    privileged: bool = False,
    confinement: Confinement | None = None,
) -> dict[str, Any]:
    """The config.json of a bundle whose root is `rootfs` (an absolute host path)."""
    caps = own_capabilities() if privileged else list(DEFAULT_CAPABILITIES)
    held = caps if uid == 0 else []
    confinement = confinement or Confinement.here()
    kinds = ("ipc", "uts", "mount") if confinement.proc_masked else ("pid", "ipc", "uts", "mount")
    namespaces = [{"type": t} for t in kinds]
    if network == "none":
        namespaces.append({"type": "network"})  # runc brings its loopback up
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "resources": {"devices": [{"allow": True, "access": "rwm"}] if privileged else _DEVICE_RULES},
    }
    if not privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
        linux["seccomp"] = seccomp_profile(caps)
    return {
        "ociVersion": "1.0.2",
        "root": {"path": rootfs, "readonly": False},
        "hostname": hostname,
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid, "additionalGids": list(groups), "umask": _UMASK},
            "args": list(argv),
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": held, "permitted": held, "inheritable": [],
                             "ambient": []},
            "noNewPrivileges": False,  # setuid programs (su, sudo) work in a build step, as under Docker
        },
        "mounts": [m.to_json() for m in [*_system_mounts(privileged, network, confinement), *mounts]],
        "linux": linux,
    }
