"""RUN --mount=type=ssh and git over SSH, against an sshd of the test's own on 127.0.0.1 whose only accepted key
is held by an ssh-agent the test started (the key's file is gone once loaded).

The step runs ``git clone`` over SSH (the debian test base with git and openssh-client: support.base_images.
debian_git_image) through the forwarded agent. Checks: the clone holds the repository's files at the ref (the
agent signed), the step saw SSH_AUTH_SOCK at the mount's target, and neither the key nor the agent's socket path
is in the image, its history, kiln's output or kiln's directory."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from integ_helpers import Kiln, Outcome, layer_count, write_context

from support import leaks
from support.base_images import OciImage
from support.gitserver import Repo, make_repo
from support.images import read_layer_file
from support.sshd import Sshd, require_sshd, ssh_agent, sshd


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sshd, Repo]]:
    require_sshd()
    base = tmp_path_factory.mktemp("ssh")
    repo = make_repo(base / "srv", "app.git", [
        ("v1", {"a.txt": "over ssh\n", "d/Dockerfile": "FROM scratch\nCOPY . /ctx/\n", "d/n/deep.txt": "deep\n"}),
        ("v2", {"a.txt": "moved on\n", "b.txt": "later\n"}),
    ], branches={"rel": 0})
    with ssh_agent(base / "agent") as agent, sshd(base / "sshd", agent) as daemon:
        yield daemon, repo


@pytest.fixture
def kiln_git(kiln: Kiln, debian_git_image: OciImage) -> Kiln:
    """kiln with `FROM debian-git` naming the debian test layout with git and openssh-client."""
    kiln.contexts["debian-git"] = debian_git_image
    return kiln


def clone_line(daemon: Sshd, repo: Repo, ref: str, into: str) -> str:
    """A RUN command cloning ``ref`` of the repository over SSH with the step's agent (no key of its own)."""
    ssh = (f"ssh -F /dev/null -p {daemon.port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
           "-o BatchMode=yes -o LogLevel=ERROR -o IdentityFile=none")
    return f"GIT_SSH_COMMAND='{ssh}' git clone -q --branch {ref} root@127.0.0.1:{repo.bare} {into}"


def built_files(outcome: Outcome, base: OciImage) -> dict[str, bytes]:
    """The files the build's own layers hold (the base's are big and not read), the topmost version of each."""
    return leaks.built_files(outcome.layout, outcome.tag, layer_count(base))


under = leaks.files_under


def found_in(kiln: Kiln, outcome: Outcome, needles: list[bytes], base: OciImage | None = None) -> list[str]:
    """Where any of ``needles`` is in what the build left: its output, kiln's directory and the outputs. The
    base image's own blobs (named by their digest, made before the test) are skipped."""
    skip = frozenset(p.name for p in (base.layout / "blobs" / "sha256").iterdir()) if base is not None else frozenset()
    return leaks.found_in((outcome.stdout, outcome.stderr), (kiln.kiln_dir, kiln.out_dir), needles, skip)


def test_git_clone_over_ssh_inside_run_with_the_agent_leaves_nothing(
    kiln_git: Kiln, server: tuple[Sshd, Repo], tmp_path: Path
) -> None:
    daemon, repo = server
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "\n".join([
        "FROM debian-git",
        f"RUN --mount=type=ssh {clone_line(daemon, repo, 'rel', '/clone')} && "
        "git -C /clone rev-parse HEAD > /head.txt && "
        "echo \"$SSH_AUTH_SOCK\" > /sock.txt && ls -l \"$SSH_AUTH_SOCK\" > /ls.txt",
        "RUN --mount=type=ssh,id=deploy,target=/agent.sock,mode=0660,uid=1,gid=2 \\",
        "    stat -c '%a %u %g %F' /agent.sock > /stat.txt && echo \"$SSH_AUTH_SOCK\" >> /stat.txt",
        "RUN --mount=type=ssh,id=absent echo \"[$SSH_AUTH_SOCK]\" > /absent.txt",
        "",
    ])})
    sock = str(daemon.agent.socket)
    out = kiln_git.build(ctx, "--ssh", "default", "--ssh", f"deploy={sock}", env={"SSH_AUTH_SOCK": sock}).ok()
    files = built_files(out, kiln_git.contexts["debian-git"])
    assert under(files, "clone") == repo.trees["v1"]  # the branch's files, not main's
    assert files["head.txt"].decode().strip() == repo.commits["v1"]
    assert files["sock.txt"] == b"/run/buildkit/ssh_agent.0\n"
    assert files["ls.txt"].startswith(b"srw-------")
    assert files["stat.txt"] == b"660 1 2 socket\n/agent.sock\n"
    assert files["absent.txt"] == b"[]\n"  # optional and not given: not mounted
    names = {name for layer in out.new_layers(layer_count(kiln_git.contexts["debian-git"])) for name in layer}
    assert not any(n.startswith(("run/buildkit", "agent.sock")) for n in names), names
    needles = [sock.encode(), str(daemon.agent.socket.parent).encode(), daemon.agent.private_body[:40].encode()]
    assert found_in(kiln_git, out, needles, kiln_git.contexts["debian-git"]) == []


def test_without_the_agent_the_clone_is_refused(kiln_git: Kiln, server: tuple[Sshd, Repo], tmp_path: Path) -> None:
    """The sshd accepts nothing but the agent's key: the clone above worked through the forwarded agent."""
    daemon, repo = server
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM debian-git\n"
                                                         f"RUN {clone_line(daemon, repo, 'rel', '/clone')}\n"})
    out = kiln_git.build(ctx, env={"SSH_AUTH_SOCK": str(daemon.agent.socket)}).failed()
    assert "Permission denied (publickey)" in out.stderr, out.stderr


def test_ssh_keys_given_as_files_are_loaded_into_an_agent_of_kilns(
    kiln_git: Kiln, server: tuple[Sshd, Repo], tmp_path: Path
) -> None:
    daemon, repo = server
    # A second key, authorised too, given as a file: kiln's own ssh-agent holds it for the step.
    key = tmp_path / "deploy_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    authorized = Path(str(daemon.agent.socket.parent).replace("agent", "sshd")) / "authorized_keys"
    original = authorized.read_text()
    authorized.write_text(original + (tmp_path / "deploy_key.pub").read_text())
    try:
        ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM debian-git\n"
                            f"RUN --mount=type=ssh {clone_line(daemon, repo, 'main', '/clone')}\n"})
        out = kiln_git.build(ctx, "--ssh", f"default={key}", env={"SSH_AUTH_SOCK": ""}).ok()
    finally:
        authorized.write_text(original)
    assert under(built_files(out, kiln_git.contexts["debian-git"]), "clone") == repo.trees["v2"]
    body = "".join(ln for ln in key.read_text().splitlines() if not ln.startswith("-----"))
    assert found_in(kiln_git, out, [body[:40].encode()], kiln_git.contexts["debian-git"]) == []


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
    assert found_in(kiln, out, [str(daemon.agent.socket).encode()]) == []


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
