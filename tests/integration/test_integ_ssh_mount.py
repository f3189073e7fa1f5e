"""RUN --mount=type=ssh and git over SSH, against an sshd of the test's own on 127.0.0.1 whose only accepted key
is held by an ssh-agent the test started (the key's file is gone once loaded).

The step reaches the sshd with the host's own ssh client (Debian's minbase has none), bind-mounted from the
context with its libraries and run through their loader, and asks git-upload-pack on the server for the
repository's refs: what `git ls-remote` does over SSH. Checks: the refs came back (the agent signed), the
step saw SSH_AUTH_SOCK at the mount's target, and neither the key nor the agent's socket path is in the
image, its history, kiln's output or kiln's directory."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from integ_helpers import Kiln, write_context

from support.gitserver import Repo, make_repo
from support.images import read_layer_file
from support.sshd import Sshd, require_sshd, ssh_agent, sshd


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sshd, Repo]]:
    require_sshd()
    base = tmp_path_factory.mktemp("ssh")
    repo = make_repo(base / "srv", "app.git", [("v1", {"a.txt": "over ssh\n", "d/Dockerfile": "FROM scratch\n"
                                                       "COPY . /ctx/\n"})])
    with ssh_agent(base / "agent") as agent, sshd(base / "sshd", agent) as daemon:
        yield daemon, repo


def host_ssh(into: Path) -> None:
    """The host's ssh with every library it loads and the loader itself: runnable in any Linux root."""
    into.mkdir(parents=True)
    shutil.copy2("/usr/bin/ssh", into / "ssh")
    out = subprocess.run(["ldd", "/usr/bin/ssh"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 3 else parts[0]
        if path.startswith("/"):
            shutil.copy2(path, into / os.path.basename(path))


def ssh_line(daemon: Sshd, remote: str) -> str:
    # A flush packet ends git-upload-pack's conversation once it has listed the refs (as ls-remote does).
    return ("printf 0000 | /hostssh/ld-linux-x86-64.so.2 --library-path /hostssh /hostssh/ssh -F /dev/null "
            f"-p {daemon.port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes "
            f"-o LogLevel=ERROR root@127.0.0.1 {remote}")


def all_bytes(kiln: Kiln, outcome: object) -> bytes:
    """Everything the build left: kiln's directory and the outputs, layers decompressed, plus its output."""
    chunks = [outcome.stdout.encode(), outcome.stderr.encode()]  # type: ignore[attr-defined]
    for top in (kiln.kiln_dir, kiln.out_dir):
        for file in top.rglob("*"):
            if file.is_file() and not file.is_symlink():
                data = file.read_bytes()
                chunks.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return b"\n".join(chunks)


def test_run_with_the_ssh_agent_reaches_the_sshd_and_leaves_nothing(
    kiln_deb: Kiln, server: tuple[Sshd, Repo], tmp_path: Path
) -> None:
    daemon, repo = server
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "\n".join([
        "FROM debian",
        "RUN --mount=type=bind,source=hostssh,target=/hostssh --mount=type=ssh \\",
        f"    {ssh_line(daemon, repr('git-upload-pack ' + str(repo.bare)))} > /refs.txt && "
        "echo \"$SSH_AUTH_SOCK\" > /sock.txt && ls -l \"$SSH_AUTH_SOCK\" > /ls.txt",
        "RUN --mount=type=ssh,id=deploy,target=/agent.sock,mode=0660,uid=1,gid=2 \\",
        "    stat -c '%a %u %g %F' /agent.sock > /stat.txt && echo \"$SSH_AUTH_SOCK\" >> /stat.txt",
        "RUN --mount=type=ssh,id=absent echo \"[$SSH_AUTH_SOCK]\" > /absent.txt",
        "",
    ])})
    host_ssh(ctx / "hostssh")
    sock = str(daemon.agent.socket)
    out = kiln_deb.build(ctx, "--ssh", "default", "--ssh", f"deploy={sock}", env={"SSH_AUTH_SOCK": sock}).ok()
    refs = read_layer_file(out.layout, out.tag, "refs.txt").decode()
    assert f"{repo.commits['v1']} refs/heads/main" in refs.replace("\t", " ").replace("\0", " "), refs
    assert read_layer_file(out.layout, out.tag, "sock.txt") == b"/run/buildkit/ssh_agent.0\n"
    assert read_layer_file(out.layout, out.tag, "ls.txt").startswith(b"srw-------")
    assert read_layer_file(out.layout, out.tag, "stat.txt") == b"660 1 2 socket\n/agent.sock\n"
    assert read_layer_file(out.layout, out.tag, "absent.txt") == b"[]\n"  # optional and not given: not mounted
    names = {e.name for layer in out.layers() for e in layer}
    assert not any(n.startswith(("run/buildkit", "agent.sock", "hostssh")) for n in names), names
    everything = all_bytes(kiln_deb, out)
    assert sock.encode() not in everything
    assert str(daemon.agent.socket.parent).encode() not in everything
    assert daemon.agent.private_body[:40].encode() not in everything


def test_ssh_keys_given_as_files_are_loaded_into_an_agent_of_kilns(
    kiln_deb: Kiln, server: tuple[Sshd, Repo], tmp_path: Path
) -> None:
    daemon, repo = server
    # A second key, authorised too, given as a file: kiln's own ssh-agent holds it for the step.
    key = tmp_path / "deploy_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    authorized = Path(str(daemon.agent.socket.parent).replace("agent", "sshd")) / "authorized_keys"
    original = authorized.read_text()
    authorized.write_text(original + (tmp_path / "deploy_key.pub").read_text())
    try:
        ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM debian\n"
                            "RUN --mount=type=bind,source=hostssh,target=/hostssh --mount=type=ssh "
                            f"{ssh_line(daemon, repr('git-upload-pack ' + str(repo.bare)))} > /refs.txt\n"})
        host_ssh(ctx / "hostssh")
        out = kiln_deb.build(ctx, "--ssh", f"default={key}", env={"SSH_AUTH_SOCK": ""}).ok()
    finally:
        authorized.write_text(original)
    assert repo.commits["v1"].encode() in read_layer_file(out.layout, out.tag, "refs.txt")
    body = "".join(ln for ln in key.read_text().splitlines() if not ln.startswith("-----"))
    assert body[:40].encode() not in all_bytes(kiln_deb, out)


def test_a_required_agent_that_was_not_given_fails_at_its_line(kiln_bb: Kiln, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN true\n"
                                                         "RUN --mount=type=ssh,required=true true\n"})
    out = kiln_bb.build(ctx, env={"SSH_AUTH_SOCK": ""}).failed()
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert errors == ["error: Dockerfile:3: RUN --mount=type=ssh: ssh agent default is required but was not "
                      "given (--ssh default[=SOCKET|KEY])"], out.stderr


def test_ssh_flag_errors_name_the_flag_and_not_the_socket(kiln_bb: Kiln, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN true\n"})
    out = kiln_bb.build(ctx, "--ssh", "default", env={"SSH_AUTH_SOCK": ""}).failed()
    assert out.returncode == 2 and "--ssh: default: no socket or key given, and SSH_AUTH_SOCK is not set" in out.stderr
    missing = str(tmp_path / "no-such-agent.sock")
    out = kiln_bb.build(ctx, "--ssh", "default", env={"SSH_AUTH_SOCK": missing}).failed()
    assert out.returncode == 2 and "--ssh: default:" in out.stderr and missing not in out.stderr


def test_git_context_over_ssh_with_the_agent(kiln: Kiln, server: tuple[Sshd, Repo]) -> None:
    daemon, repo = server
    env = {"SSH_AUTH_SOCK": str(daemon.agent.socket), "GIT_SSH_COMMAND": daemon.ssh_command}
    out = kiln.build(f"root@127.0.0.1:{repo.bare}#main:d", env=env).ok()
    assert read_layer_file(out.layout, out.tag, "ctx/Dockerfile").startswith(b"FROM scratch")
    assert str(daemon.agent.socket).encode() not in all_bytes(kiln, out)


def test_in_place_refuses_an_ssh_mount_in_one_line(tmp_path: Path) -> None:
    """In place, mounts are placed by copying (sandbox/placed.py): a socket cannot be, so kiln says so."""
    import contextlib

    from kiln.dockerfile.flags import Mount
    from kiln.engine.options import SshSource
    from kiln.engine.steps.run import RunContext, _ssh
    from kiln.errors import BuildError, SourceLocation

    ctx = RunContext(secrets={}, cache_root=tmp_path, network="host", allow=(), in_place=True, work_dir=tmp_path,
                     runner=lambda spec, out: 0, output=None, mount_root=lambda name: tmp_path,
                     ssh={"default": SshSource("default", socket=tmp_path / "agent.sock")})
    with contextlib.ExitStack() as hold, pytest.raises(BuildError) as err:
        _ssh(ctx, Mount(type="ssh"), 0, tmp_path, hold, SourceLocation("Dockerfile", 4))
    assert str(err.value).startswith("Dockerfile:4: RUN --mount=type=ssh cannot be honoured in --in-place mode")
    assert "agent.sock" not in str(err.value) and not (tmp_path / "ssh0").exists()
