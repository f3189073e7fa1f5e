"""RUN: the command line (shell form, exec form, heredocs), its mounts, and the sandbox call."""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

from kiln.dockerfile.flags import Mount as MountFlag
from kiln.dockerfile.instructions import ExecCommand, Run, ShellCommand
from kiln.dockerfile.scope import StageScope
from kiln.engine.steps.cachemount import acquire_cache_dir, cache_mount_dir, seed
from kiln.engine.steps.metadata import MetaState
from kiln.errors import BuildError, NotSupportedYet, SandboxError, SourceLocation
from kiln.rootfs import owners
from kiln.rootfs.copy import copy_tree
from kiln.rootfs.paths import resolve_in_root
from kiln.sandbox.spec import BindMount, Mount, RunSpec, SecretMount, TmpfsMount

if TYPE_CHECKING:
    from kiln.engine.modes import RunFunction
    from kiln.engine.options import SecretSource, SshSource
    from kiln.engine.rootfs import StageRoot

_HEREDOC_TOKEN_CHARS = set("<-'\"")


@dataclass(frozen=True)
class RunContext:
    """What a RUN step needs of its build, and nothing more."""

    secrets: Mapping[str, SecretSource]  # --secret, by id
    cache_root: Path  # where cache mounts keep their directories
    network: Literal["host", "none"]  # the build's --network
    allow: tuple[str, ...]  # the entitlements given (--allow)
    in_place: bool
    work_dir: Path  # the build's own directory, for the step's scratch files
    runner: RunFunction  # the sandbox, or kiln's own process in place
    output: BinaryIO | None  # where the step's output goes
    mount_root: Callable[[str | None], Path]  # the root a mount's from= names (None: the build context)
    ssh: Mapping[str, SshSource] = field(default_factory=dict)  # --ssh, by id


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    extra_mounts: tuple[BindMount, ...] = ()


def _is_bare_heredoc(text: str) -> bool:
    """``RUN <<EOF`` (the whole command is one heredoc): BuildKit runs the body itself."""
    t = text.strip()
    return t.startswith("<<") and " " not in t and len(t) > 2


def command_line(instr: Run, shell: tuple[str, ...], scratch: Path) -> Command:
    """The argv of a RUN, following BuildKit's handling of heredocs."""
    cmd = instr.command
    if isinstance(cmd, ExecCommand):
        return Command(cmd.argv)
    assert isinstance(cmd, ShellCommand)
    text = cmd.text
    if instr.heredocs:
        first = instr.heredocs[0]
        if _is_bare_heredoc(text):
            if first.content.startswith("#!"):
                # A script with its own interpreter: run it as a file, as BuildKit does from /dev/pipes.
                script = scratch / first.name
                script.write_text(first.content, encoding="utf-8")
                os.chmod(script, 0o755)
                target = f"/dev/pipes/{first.name}"
                return Command((target,), (BindMount(script, target, readonly=True),))
            return Command((*shell, first.content))
        # Otherwise the shell itself reads the heredocs: hand it the whole text back.
        full = text
        for doc in instr.heredocs:
            full += "\n" + doc.content + doc.name
        return Command((*shell, full))
    return Command((*shell, text))


def _mounts(
    ctx: RunContext, instr: Run, scratch: Path, hold: contextlib.ExitStack, where: SourceLocation
) -> tuple[list[Mount], dict[str, str]]:
    """The step's mounts, and the environment variables that secrets with env= add. Locks the mounts need while
    the step runs (cache sharing modes) are held until `hold` closes."""
    out: list[Mount] = []
    secret_env: dict[str, str] = {}
    ssh_count = 0
    for mount in instr.mounts:
        if mount.type == "ssh":
            got_ssh = _ssh(ctx, mount, ssh_count, scratch, hold, where)
            ssh_count += 1
            if got_ssh is not None:
                out.append(got_ssh)
                secret_env.setdefault("SSH_AUTH_SOCK", got_ssh.target)  # the first one, as BuildKit
            continue
        if mount.type == "secret":
            got = _secret(ctx, mount, where)
            if isinstance(got, tuple):
                secret_env[got[0]] = got[1]
            elif got is not None:
                out.append(got)
            continue
        out.append(_one_mount(ctx, mount, scratch, hold, where))
    return out, secret_env


def _secret(ctx: RunContext, mount: MountFlag, where: SourceLocation) -> SecretMount | tuple[str, str] | None:
    """RUN --mount=type=secret: the value as a read-only file (default /run/secrets/ID, mode 0400) or, with env=,
    as an environment variable of this step only. The value is never in a layer (the mount point is a stub
    the sandbox removes), in history (which holds the instruction text), in messages (which name the id), or on
    a disk (the sandbox keeps secret files in memory)."""
    secret_id = mount.id or mount.source or (posixpath.basename(mount.target) if mount.target else "")
    source = ctx.secrets.get(secret_id)
    if source is None:
        if mount.required:
            raise BuildError(f"secret {secret_id} is required but was not given (--secret id={secret_id},...)", where)
        return None  # BuildKit: an optional secret that is not provided is simply not mounted
    if source.path is not None:
        value = source.path.read_bytes()
    else:
        assert source.env is not None
        value = os.environ.get(source.env, "").encode()
    if mount.env:
        return mount.env, value.decode("utf-8", "replace")
    target = mount.target or f"/run/secrets/{secret_id}"
    if not posixpath.isabs(target):
        target = "/run/secrets/" + target
    return SecretMount(value, target, mount.uid or 0, mount.gid or 0, mount.mode if mount.mode is not None else 0o400)


def _ssh(
    ctx: RunContext, mount: MountFlag, index: int, scratch: Path, hold: contextlib.ExitStack, where: SourceLocation
) -> BindMount | None:
    """RUN --mount=type=ssh: the agent given with ``--ssh ID`` (default id: default), reached through a socket
    of kiln's own (kiln.sandbox.sshproxy) bind-mounted at the target (default /run/buildkit/ssh_agent.N),
    owned uid:gid with mode (default 0:0, 0600). The agent's own path never enters the step; the mount point is
    a stub the sandbox removes, so nothing of it reaches a layer; the history holds only the instruction."""
    from kiln.sandbox.sshproxy import AgentProxy, KeyAgent

    ssh_id = mount.id or "default"
    source = ctx.ssh.get(ssh_id)
    if source is None:
        if mount.required:
            raise BuildError(f"RUN --mount=type=ssh: ssh agent {ssh_id} is required but was not given "
                             f"(--ssh {ssh_id}[=SOCKET|KEY])", where)
        return None  # BuildKit: an optional agent that is not forwarded is simply not mounted
    if ctx.in_place:
        raise BuildError("RUN --mount=type=ssh cannot be honoured in --in-place mode (a socket cannot be placed "
                         "into / by copying); fetch with credentials from --secret instead", where)
    target = mount.target or f"/run/buildkit/ssh_agent.{index}"
    if not posixpath.isabs(target):
        target = "/" + target
    directory = scratch / f"ssh{index}"
    directory.mkdir(mode=0o700)
    try:
        upstream = source.socket
        if upstream is None:
            agent = KeyAgent(source.keys, directory, ssh_id)
            hold.callback(agent.close)
            upstream = agent.socket
        mode = mount.mode if mount.mode is not None else 0o600
        proxy = AgentProxy(directory / "proxy.sock", upstream, uid=mount.uid or 0, gid=mount.gid or 0, mode=mode)
    except SandboxError as e:
        raise BuildError(f"RUN --mount=type=ssh: {e}", where) from None
    hold.callback(proxy.close)
    proxy.start()
    return BindMount(proxy.listen, target, readonly=False)


def _one_mount(
    ctx: RunContext, mount: MountFlag, scratch: Path, hold: contextlib.ExitStack, where: SourceLocation
) -> Mount:
    if mount.type not in ("tmpfs", "cache", "bind"):
        raise NotSupportedYet(f"RUN --mount=type={mount.type}")
    target = mount.target or ""
    if not target:
        raise BuildError("RUN --mount needs a target", where)
    if not posixpath.isabs(target):
        target = "/" + target
    if mount.type == "tmpfs":
        return TmpfsMount(target, mount.size)
    if mount.type == "cache":
        cache_id = mount.id if mount.id is not None else target
        base = cache_mount_dir(ctx.cache_root, cache_id)
        # In place a cache's directory is moved to the target for the step: no other step may have it meanwhile.
        sharing = "locked" if ctx.in_place and mount.sharing in (None, "shared") else mount.sharing
        cache_dir, new = acquire_cache_dir(base, sharing, hold)
        if new:
            if mount.from_ is not None:
                seed(cache_dir, resolve_in_root(ctx.mount_root(mount.from_), mount.source or "/"))
            os.chmod(cache_dir, mount.mode if mount.mode is not None else 0o755)
            owners.chown(cache_dir, mount.uid or 0, mount.gid or 0, follow_symlinks=True)
        return BindMount(cache_dir, target, readonly=mount.readonly, movable=True)
    # type=bind
    source_root = ctx.mount_root(mount.from_)
    src = resolve_in_root(source_root, mount.source or "/")
    if not src.exists():
        raise BuildError(f"RUN --mount=type=bind: source {mount.source or '/'} not found", where)
    if not mount.readonly:
        # A writable bind mount must not change the context or another stage: give it a private copy.
        copy = scratch / f"bind{len(os.listdir(scratch))}"
        copy_tree(src, copy)
        return BindMount(copy, target, readonly=False, movable=True)
    return BindMount(src, target, readonly=mount.readonly)


def _network(ctx: RunContext, instr: Run, where: SourceLocation) -> Literal["host", "none"]:
    """RUN --network: default is the build's --network (the host's unless told otherwise, as kaniko)."""
    if instr.network in (None, "default"):
        return ctx.network
    if instr.network == "host" and ctx.network == "none" and "network.host" not in ctx.allow:
        raise BuildError("RUN --network=host in a build with --network none needs --allow network.host", where)
    return "none" if instr.network == "none" else "host"


def _privileged(ctx: RunContext, instr: Run, where: SourceLocation) -> bool:
    """RUN --security=insecure runs with every capability, only when the person building allows it."""
    if instr.security != "insecure":
        return False
    if "security.insecure" not in ctx.allow:
        raise BuildError("RUN --security=insecure needs the entitlement: build with --allow security.insecure", where)
    if ctx.in_place:
        raise BuildError("RUN --security=insecure cannot be honoured in --in-place mode", where)
    return True


def _check_targets(root: StageRoot, mounts: list[Mount], where: SourceLocation) -> None:
    """A mount may not cover what is not the image's (in place: kiln's own directories, the container's mounts)."""
    for m in mounts:
        reason = root.covers_foreign(m.target)
        if reason is not None:
            raise BuildError(f"RUN --mount target {m.target}: {reason}", where)


def run_step(
    ctx: RunContext, instr: Run, root: StageRoot, scope: StageScope, meta: MetaState, where: SourceLocation
) -> None:
    network = _network(ctx, instr, where)
    privileged = _privileged(ctx, instr, where)
    with tempfile.TemporaryDirectory(dir=ctx.work_dir, prefix="run-") as tmp, contextlib.ExitStack() as hold:
        scratch = Path(tmp)
        cmd = command_line(instr, meta.shell, scratch)
        step_mounts, secret_env = _mounts(ctx, instr, scratch, hold, where)
        mounts = [*step_mounts, *cmd.extra_mounts]
        _check_targets(root, mounts, where)
        spec = RunSpec(
            rootfs=root.path,
            argv=cmd.argv,
            env={**scope.run_env(), **secret_env},
            user=meta.config.user,
            workdir=meta.config.working_dir or "/",
            network=network,
            mounts=tuple(mounts),
            runtime_dir=ctx.work_dir / "sandbox",
            privileged=privileged,
        )
        try:
            status = ctx.runner(spec, ctx.output)
        except SandboxError as e:
            raise BuildError(str(e), where) from None
    if status != 0:
        shown = " ".join(cmd.argv)
        if len(shown) > 200:
            shown = shown[:197] + "..."
        raise BuildError(f"RUN {shown!r} failed with exit status {status}", where, status)
