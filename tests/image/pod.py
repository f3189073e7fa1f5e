"""Running an unpacked image the way a Kubernetes pod runs it, without a container runtime.

`run_in_pod(rootfs, argv, env, binds)` runs argv with `rootfs` as its root, as a pod's container would be:

- root (uid 0) inside, with Docker's default capability bounding set (no CAP_SYS_ADMIN: no mount, no
  namespaces but a user namespace where the kernel allows one), none inheritable or ambient;
- a root entered with pivot_root, the old root detached, as runc does (a chroot would differ: the kernel
  refuses a user namespace to a chrooted process);
- its own mount namespace (private propagation: nothing reaches the host) and PID namespace, the command
  being PID 1 as an entry point is; a fresh /proc, a read-only /sys, a runtime's /dev (a tmpfs with null,
  zero, full, random, urandom and tty bound from the host's, its own pts and shm);
- what the kubelet puts into every container: /dev/termination-log, /etc/hosts, /etc/hostname and
  /etc/resolv.conf as file bind mounts, the service account's token on a tmpfs at
  /var/run/secrets/kubernetes.io/serviceaccount, and KUBERNETES_SERVICE_HOST/PORT in the environment (the
  evidence kiln's --in-place looks for);
- the host's network (the tests' registries listen on 127.0.0.1).

binds: (host path, path in the container, read-only) for the volumes (a build context at /workspace, ...).
The mount points are made in rootfs before the command runs, as a runtime makes them in the container's
writable layer. Every mount lives in the namespace, which dies with the command: nothing is left mounted.
rootfs must be a directory the caller made (never the host's /).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Docker's (and containerd's, so a default pod's) capability set.
DOCKER_DEFAULT_CAPS = (
    "chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap", "net_bind_service",
    "net_raw", "sys_chroot", "mknod", "audit_write", "setfcap",
)  # fmt: skip
# The capability bits of that set, as /proc/PID/status shows them (CapBnd/CapEff of root in a Docker container).
DOCKER_DEFAULT_CAPS_MASK = 0x00000000A80425FB

# What every pod's container has in its environment; nothing here is ever connected to.
POD_ENV = {
    "KUBERNETES_SERVICE_HOST": "10.96.0.1",
    "KUBERNETES_SERVICE_PORT": "443",
    "KUBERNETES_PORT": "tcp://10.96.0.1:443",
    "HOSTNAME": "kiln-build-pod",
}
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass(frozen=True)
class Bind:
    source: Path
    target: str
    readonly: bool = True


def image_env(bundle_config: Mapping[str, object]) -> dict[str, str]:
    """The environment of an image as `umoci unpack` wrote it (the bundle's config.json, process.env)."""
    process = bundle_config.get("process")
    assert isinstance(process, dict)
    return dict(item.split("=", 1) for item in process.get("env", []))


def _mount_point(rootfs: Path, target: str, is_file: bool) -> Path:
    path = rootfs / target.lstrip("/")
    # Never through a symlink of the image: the runtime makes real mount points (and so does this).
    for parent in reversed(path.relative_to(rootfs).parents):
        p = rootfs / parent
        if p.is_symlink():
            p.unlink()
    if is_file:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.is_symlink():
            if path.is_symlink():
                path.unlink()
            path.touch()
    else:
        path.mkdir(parents=True, exist_ok=True)
    return path


def _tool(name: str) -> str:
    found = shutil.which(name, path=_HOST_PATH)
    assert found, f"{name} (coreutils) is missing"
    return found


def pod_script(rootfs: Path, argv: Sequence[str], env: Mapping[str, str], binds: Iterable[Bind], cwd: str,
               kubelet_dir: Path) -> str:  # fmt: skip
    r = shlex.quote(str(rootfs))
    # The root is a mount of its own first (pivot_root needs one), then everything is mounted into it.
    lines = ["set -e", f"mount --bind {r} {r}", f"mount -t proc proc {r}/proc",
             f"mount -t sysfs -o ro,nosuid,nodev,noexec sysfs {r}/sys",
             # A runtime's /dev: a tmpfs with the standard devices (bound from the host's), pts, shm, fd links.
             f"mount -t tmpfs -o nosuid,mode=755,size=64k tmpfs {r}/dev"]  # fmt: skip
    for dev in _DEVICES:
        lines += [f"touch {r}/dev/{dev}", f"mount --bind /dev/{dev} {r}/dev/{dev}"]
    lines += [f"mkdir {r}/dev/pts {r}/dev/shm", f"mount -t devpts -o newinstance,ptmxmode=0666 devpts {r}/dev/pts",
              f"ln -s pts/ptmx {r}/dev/ptmx", f"mount -t tmpfs -o nosuid,nodev,size=64m shm {r}/dev/shm",
              f"ln -s /proc/self/fd {r}/dev/fd", f"ln -s /proc/self/fd/0 {r}/dev/stdin",
              f"ln -s /proc/self/fd/1 {r}/dev/stdout", f"ln -s /proc/self/fd/2 {r}/dev/stderr",
              f"touch {r}/dev/termination-log",
              f"mount --bind {shlex.quote(str(kubelet_dir / 'termination-log'))} {r}/dev/termination-log"]  # fmt: skip
    for name in ("hosts", "hostname", "resolv.conf"):
        lines.append(f"mount --bind {shlex.quote(str(kubelet_dir / name))} {r}/etc/{name}")
    sa = f"{r}{SERVICE_ACCOUNT}"
    lines += [f"mount -t tmpfs -o size=1m tmpfs {sa}", f"echo not-a-real-token > {sa}/token",
              f"echo default > {sa}/namespace", f"mount -o remount,ro {sa}"]  # fmt: skip
    for b in binds:
        target = shlex.quote(str(rootfs / b.target.lstrip("/")))
        lines.append(f"mount --bind {shlex.quote(str(b.source))} {target}")
        if b.readonly:
            lines.append(f"mount -o remount,bind,ro {target}")
    environment = [f"{k}={v}" for k, v in {**env, **POD_ENV}.items()]
    lines.append(" ".join(shlex.quote(w) for w in [
        "exec", _tool("env"), "-i", *environment, sys.executable, "-I", "-S", "-c", _ENTER, str(rootfs), cwd,
        ",".join(DOCKER_DEFAULT_CAPS), *argv,
    ]))  # fmt: skip
    return "\n".join(lines)


# What a runtime does last, in the process that becomes the container's PID 1: pivot_root into the root (not a
# chroot: the kernel refuses a user namespace to a chrooted process, and a runtime's container may make one),
# detach the old root, drop every capability outside the set from the bounding set, execute the entry point.
# It runs in this machine's Python, loaded before the old root goes; it writes nothing.
_ENTER = """
import ctypes, os, sys
root, cwd, keep, argv = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4:]
libc = ctypes.CDLL(None, use_errno=True)
def check(ret, what):
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, what + ": " + os.strerror(e))
os.chdir(root)
check(libc.syscall(155, b".", b"."), "pivot_root")  # SYS_pivot_root: the old root now lies on top of the new
check(libc.umount2(b".", 2), "umount2 old root")  # MNT_DETACH
os.chdir("/")
names = {"chown": 0, "dac_override": 1, "fowner": 3, "fsetid": 4, "kill": 5, "setgid": 6, "setuid": 7,
         "setpcap": 8, "net_bind_service": 10, "net_raw": 13, "sys_chroot": 18, "mknod": 27, "audit_write": 29,
         "setfcap": 31}
kept = {names[k] for k in keep}
last = int(open("/proc/sys/kernel/cap_last_cap").read())
for cap in range(last + 1):
    if cap not in kept:
        check(libc.prctl(24, cap, 0, 0, 0), "PR_CAPBSET_DROP")
os.chdir(cwd)
os.execv(argv[0], argv)
"""


def run_in_pod(
    rootfs: Path,
    argv: Sequence[str],
    env: Mapping[str, str],
    binds: Iterable[Bind] = (),
    cwd: str = "/",
    timeout: float = 900,
    termination_log: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv in rootfs as a pod's container (see the module); its output is captured.

    termination_log: the host file behind the container's /dev/termination-log (the kubelet's), made empty."""
    rootfs = Path(os.path.realpath(rootfs))
    assert rootfs != Path("/") and rootfs.is_dir(), rootfs
    binds = list(binds)
    for d in ("proc", "dev", "sys"):
        _mount_point(rootfs, d, is_file=False)
    for name in ("hosts", "hostname", "resolv.conf"):
        _mount_point(rootfs, f"etc/{name}", is_file=True)
    _mount_point(rootfs, SERVICE_ACCOUNT, is_file=False)
    for b in binds:
        _mount_point(rootfs, b.target, is_file=not b.source.is_dir())
    with tempfile.TemporaryDirectory(prefix="kubelet-") as kubelet:
        k = Path(kubelet)
        (k / "hosts").write_text(f"127.0.0.1\tlocalhost\n10.244.0.7\t{POD_ENV['HOSTNAME']}\n")
        (k / "hostname").write_text(POD_ENV["HOSTNAME"] + "\n")
        log = termination_log or k / "termination-log"
        log.write_bytes(b"")
        if termination_log is not None:
            os.symlink(termination_log, k / "termination-log")
        (k / "resolv.conf").write_text("nameserver 127.0.0.53\nsearch default.svc.cluster.local\noptions ndots:5\n")
        script = pod_script(rootfs, argv, env, binds, cwd, k)
        return subprocess.run(
            ["unshare", "--mount", "--pid", "--fork", "--propagation", "private", "sh", "-c", script],
            env={"PATH": _HOST_PATH},
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
