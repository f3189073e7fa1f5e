"""run_in_sandbox: a RUN step in an OCI runtime container. Resolves the step against its rootfs (user, working
directory, mount targets), writes the runtime config, runs it, and leaves the rootfs as the command alone left
it (mount points the rootfs lacked are stubs, removed afterwards)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import BinaryIO

from kiln import linux
from kiln.errors import SandboxError
from kiln.rootfs import owners
from kiln.rootfs.paths import resolve_in_root
from kiln.rootfs.users import ResolvedUser, resolve_user
from kiln.sandbox import reaper
from kiln.sandbox.ocispec import ContainerMount, runtime_config
from kiln.sandbox.runc import Deletions, check_can_create_containers, find_runtime, run_container
from kiln.sandbox.spec import RunSpec, SecretMount, TmpfsMount
from kiln.sandbox.stubs import MountStubs

_HOST_RESOLV_CONF = Path("/etc/resolv.conf")


def _checked_rootfs(rootfs: Path) -> Path:
    root = Path(os.path.realpath(rootfs))
    if not root.is_dir():
        raise SandboxError(f"{rootfs}: the rootfs is not a directory")
    if root == Path("/") or os.path.samefile(root, "/"):
        raise SandboxError(f"{rootfs}: refusing to run a step in the host's root")
    return root


def ensure_workdir(root: Path, workdir: str, user: ResolvedUser) -> None:
    """BuildKit creates a missing working directory at RUN time, 0755 and owned by the step's user."""
    path = resolve_in_root(root, workdir)
    if os.path.isdir(path):
        return
    if os.path.lexists(path):
        raise SandboxError(f"working directory {workdir} is not a directory")
    missing = [path]
    while not os.path.lexists(missing[-1].parent):
        missing.append(missing[-1].parent)
    for p in reversed(missing):
        try:
            os.mkdir(p, 0o755)
            owners.chown(p, user.uid, user.gid, follow_symlinks=True)
        except OSError as e:
            raise SandboxError(f"creating working directory {workdir}: {e}") from e


def _hosts_file(directory: str, hostname: str) -> str:
    # The same content BuildKit writes for a step.
    path = os.path.join(directory, "hosts")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    os.chmod(path, 0o644)
    return path


def mount_target(root: Path, target: str, is_dir: bool) -> Path:
    """Where a mount's `target` lands in the rootfs (resolved inside it), checked: absolute, not the root itself,
    and, when something is there already, of the mount's kind (a mount cannot turn a file into a directory)."""
    if not target.startswith("/"):
        raise SandboxError(f"mount target {target}: not an absolute path")
    path = resolve_in_root(root, target)
    if path == root:
        raise SandboxError(f"mount target {target}: cannot mount over the root of the step")
    if os.path.lexists(path) and os.path.isdir(path) != is_dir:
        kind = "a directory" if is_dir else "a file"
        raise SandboxError(f"mount target {target}: exists in the rootfs but is not {kind}")
    return path


def _stub_target(root: Path, stubs: MountStubs, target: str, is_dir: bool) -> str:
    """Resolve `target` inside the rootfs, make it exist, return it relative to the rootfs."""
    path = mount_target(root, target, is_dir)
    if not os.path.lexists(path):
        try:
            stubs.add(path, is_dir)
        except OSError as e:
            raise SandboxError(f"mount target {target}: {e}") from e
    return str(path.relative_to(root))


def _secret_dir(scratch: Path, secrets: list[SecretMount]) -> Path:
    """A tmpfs holding the step's secret files: in memory only, and unmounted when the step ends."""
    where = scratch / "secrets"
    where.mkdir(mode=0o700)
    size = sum(len(s.value) + 4096 for s in secrets) + 4096
    linux.mount("tmpfs", str(where), "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
               f"mode=0700,size={size}")
    for index, secret in enumerate(secrets):
        secret.write_file(where / str(index))
    return where


def _step_mounts(root: Path, spec: RunSpec, scratch: Path, stubs: MountStubs) -> list[ContainerMount]:
    """resolv.conf, hosts and the step's own mounts, with targets resolved inside the root (stubs made)."""
    planned = []
    hosts = _hosts_file(str(scratch), spec.hostname)
    if _HOST_RESOLV_CONF.exists():
        rel = _stub_target(root, stubs, "/etc/resolv.conf", False)
        planned.append(_bind(rel, str(_HOST_RESOLV_CONF.resolve()), True))
    planned.append(_bind(_stub_target(root, stubs, "/etc/hosts", False), hosts, True))
    secrets = [m for m in spec.mounts if isinstance(m, SecretMount)]
    secret_dir = _secret_dir(scratch, secrets) if secrets else None
    # Shallow targets first, so that a mount inside another mount's target lands on top of it.
    for mount in sorted(spec.mounts, key=lambda m: os.path.normpath(m.target).count("/")):
        if isinstance(mount, TmpfsMount):
            options = ["nosuid", "nodev", "mode=1777"] + ([f"size={mount.size}"] if mount.size is not None else [])
            rel = _stub_target(root, stubs, mount.target, True)
            planned.append(ContainerMount("/" + rel, "tmpfs", "tmpfs", tuple(options)))
        elif isinstance(mount, SecretMount):
            assert secret_dir is not None
            source = secret_dir / str(secrets.index(mount))
            planned.append(_bind(_stub_target(root, stubs, mount.target, False), str(source), True))
        else:
            source = Path(os.path.realpath(mount.source))
            if not source.exists():
                raise SandboxError(f"bind mount source {mount.source}: does not exist")
            rel = _stub_target(root, stubs, mount.target, source.is_dir())
            planned.append(_bind(rel, str(source), mount.readonly))
    return planned


def _bind(rel_target: str, source: str, readonly: bool) -> ContainerMount:
    # nosuid, nodev: a file brought in from the host can neither raise privileges nor reach a device.
    return ContainerMount("/" + rel_target, "bind", source,
                          ("rbind", "nosuid", "nodev", "ro" if readonly else "rw"))


def run_in_sandbox(spec: RunSpec, output: BinaryIO | None = None, deletions: Deletions | None = None) -> int:
    """Run one step in an OCI runtime container; stream its stdout+stderr to `output` (None: kiln's own);
    return its exit status (128+N when killed by signal N). Raises SandboxError when the sandbox itself cannot
    be set up, and for an unknown USER. A command that is not found is the runtime's failure to start it.
    `deletions`: where the finished container is deleted in the background (its owner waits for them before
    `spec.runtime_dir` goes); None: deleted before this returns."""
    if not spec.argv:
        raise SandboxError("RUN with an empty command")
    check_can_create_containers()
    runtime = find_runtime()
    root = _checked_rootfs(spec.rootfs)
    user = resolve_user(root, spec.user)
    one_id = owners.one_id_namespace()
    if one_id and (user.uid, user.gid) != (0, 0):
        raise SandboxError(f"cannot run as uid {user.uid} gid {user.gid}: kiln's user namespace maps one ID, root "
                           "(this user has no subordinate IDs in /etc/subuid and /etc/subgid)")
    workdir = "/" + spec.workdir.lstrip("/") if spec.workdir else "/"
    ensure_workdir(root, workdir, user)
    with contextlib.ExitStack() as cleanup:
        if spec.runtime_dir is None:
            runtime_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="kiln-sandbox-")))
            reaper.track("remove", str(runtime_dir))
            cleanup.callback(reaper.untrack, "remove", str(runtime_dir))
        else:
            runtime_dir = spec.runtime_dir
        name = f"kiln-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        scratch = runtime_dir / name
        scratch.mkdir(mode=0o700, parents=True)
        cleanup.callback(shutil.rmtree, scratch, ignore_errors=True)
        cleanup.callback(_unmount_secrets, scratch / "secrets")
        stubs = MountStubs()
        cleanup.callback(stubs.remove)
        for target in ("/proc", "/dev", "/sys"):
            _stub_target(root, stubs, target, True)
        mounts = _step_mounts(root, spec, scratch, stubs)
        stubs.sealed()
        config = runtime_config(
            rootfs=str(root),
            argv=spec.argv,
            env=spec.environment(user.home),
            uid=user.uid,
            gid=user.gid,
            groups=[] if one_id else user.groups,  # a namespace with one ID denies setgroups
            cwd=workdir,
            hostname=spec.hostname,
            network=spec.network,
            mounts=mounts,
            privileged=spec.privileged,
        )
        return run_container(runtime, runtime_dir / "runc", name, scratch / "bundle", config, output,
                             deletions if spec.runtime_dir is not None else None)
    raise AssertionError("unreachable")  # for mypy: ExitStack may swallow exceptions in general


def _unmount_secrets(where: Path) -> None:
    if os.path.ismount(where):
        linux.umount2(str(where), linux.MNT_DETACH)
