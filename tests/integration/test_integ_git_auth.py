"""`ADD <git url>` authenticates as BuildKit's git sources do, against servers on 127.0.0.1: an ssh URL through the
agent of the build's `--ssh default` (never kiln's own SSH_AUTH_SOCK; refused without it), an http(s) URL with the
build secrets GIT_AUTH_HEADER[.HOST] / GIT_AUTH_TOKEN[.HOST] (BuildKit's names and order); and the fetch takes the
very commit the layer cache key was made from, even when the branch moves in between."""

from __future__ import annotations

import base64
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from integ_helpers import Kiln, Outcome, write_context

from support import leaks
from support.gitserver import HttpGit, Repo, git, git_http, make_repo
from support.sshd import Agent, Sshd, require_sshd, ssh_agent, sshd

TOKEN = "ghp-kiln-t0ken-value"


@dataclass
class SshServer:
    daemon: Sshd
    repo: Repo
    decoy: Agent  # an agent holding a key the sshd does not accept: what kiln's own SSH_AUTH_SOCK points at
    authorized: Path


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    require_sshd()
    base = tmp_path_factory.mktemp("gitssh")
    repo = make_repo(base / "srv", "app.git", [("v1", {"a.txt": "one\n", "d/b.txt": "bee\n"}),
                                               ("v2", {"a.txt": "two\n"})], branches={"rel": 0})
    with ssh_agent(base / "agent") as agent, ssh_agent(base / "decoy") as decoy, \
            sshd(base / "sshd", agent) as daemon:
        yield SshServer(daemon, repo, decoy, base / "sshd" / "authorized_keys")


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HttpGit, Repo]]:
    srv = tmp_path_factory.mktemp("gittok")
    repo = make_repo(srv, "private.git", [("p1", {"p.txt": "private\n"}), ("p2", {"q.txt": "more\n"})])
    with git_http(srv, ("x-access-token", TOKEN)) as http:
        yield http, repo


def built_files(outcome: Outcome) -> dict[str, bytes]:
    """Every file of the image (FROM scratch: all the build's), the topmost version."""
    return leaks.built_files(outcome.layout, outcome.tag)


under = leaks.files_under


def found_in(kiln: Kiln, outcome: Outcome, needles: list[bytes]) -> list[str]:
    """Where any of ``needles`` is: kiln's output, its directory, the outputs."""
    return leaks.found_in((outcome.stdout, outcome.stderr), (kiln.kiln_dir, kiln.out_dir), needles)


def errors_of(outcome: Outcome) -> list[str]:
    return [ln for ln in outcome.stderr.splitlines() if ln.startswith("error:")]


# -- ssh -------------------------------------------------------------------------------------------------------


def test_add_over_ssh_uses_the_agent_of_ssh_default_not_kilns(kiln: Kiln, ssh_server: SshServer,
                                                               tmp_path: Path) -> None:
    daemon, repo = ssh_server.daemon, ssh_server.repo
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "\n".join([
        "FROM scratch",
        f"ADD root@127.0.0.1:{repo.bare}#rel /scp",
        f"ADD ssh://root@127.0.0.1{repo.bare}#main:d /url",
        "",
    ])})
    sock = str(daemon.agent.socket)
    # kiln's own agent holds a key the sshd refuses: only the build's --ssh default gets in.
    env = {"SSH_AUTH_SOCK": str(ssh_server.decoy.socket), "GIT_SSH_COMMAND": daemon.ssh_command}
    out = kiln.build(ctx, "--ssh", f"default={sock}", env=env).ok()
    files = built_files(out)
    assert under(files, "scp") == repo.trees["v1"]
    assert under(files, "url") == {"b.txt": "bee\n"}
    needles = [sock.encode(), str(daemon.agent.socket.parent).encode(), daemon.agent.private_body[:40].encode()]
    assert found_in(kiln, out, needles) == []


def test_add_over_ssh_with_key_files_given_to_ssh_default(kiln: Kiln, ssh_server: SshServer, tmp_path: Path) -> None:
    daemon, repo = ssh_server.daemon, ssh_server.repo
    key = tmp_path / "deploy_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    original = ssh_server.authorized.read_text()
    ssh_server.authorized.write_text(original + (tmp_path / "deploy_key.pub").read_text())
    try:
        ctx = write_context(tmp_path / "ctx", {"Dockerfile": f"FROM scratch\nADD root@127.0.0.1:{repo.bare} /src\n"})
        env = {"SSH_AUTH_SOCK": str(ssh_server.decoy.socket), "GIT_SSH_COMMAND": daemon.ssh_command}
        out = kiln.build(ctx, "--ssh", f"default={key}", env=env).ok()
    finally:
        ssh_server.authorized.write_text(original)
    assert under(built_files(out), "src") == repo.trees["v2"]
    body = "".join(ln for ln in key.read_text().splitlines() if not ln.startswith("-----"))
    assert found_in(kiln, out, [body[:40].encode()]) == []


def test_add_over_ssh_without_ssh_default_is_refused_in_one_line(kiln: Kiln, ssh_server: SshServer,
                                                                 tmp_path: Path) -> None:
    daemon, repo = ssh_server.daemon, ssh_server.repo
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": f"FROM scratch\nADD root@127.0.0.1:{repo.bare}#rel /x\n"})
    # kiln's own agent would get in: it is not used, as BuildKit uses only what the build forwards.
    env = {"SSH_AUTH_SOCK": str(daemon.agent.socket), "GIT_SSH_COMMAND": daemon.ssh_command}
    out = kiln.build(ctx, env=env).failed()
    assert out.returncode == 1
    assert errors_of(out) == [f"error: Dockerfile:2: ADD root@127.0.0.1:{repo.bare}#rel: an ssh git source is "
                              "fetched with the build's ssh agent: pass --ssh default[=SOCKET|KEY]"], out.stderr
    assert "Traceback" not in out.stderr


# -- tokens from build secrets ---------------------------------------------------------------------------------


def _header(token: str) -> str:
    return "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()


@pytest.mark.parametrize("secrets", [
    pytest.param({"GIT_AUTH_TOKEN": TOKEN}, id="token"),
    pytest.param({"GIT_AUTH_HEADER": _header(TOKEN), "GIT_AUTH_TOKEN": "wrong-token"}, id="header-before-token"),
    pytest.param({"GIT_AUTH_TOKEN.{host}": TOKEN + "\n", "GIT_AUTH_TOKEN": "wrong-token",
                  "GIT_AUTH_HEADER": _header("wrong-token")}, id="host-token-before-any"),
    pytest.param({"GIT_AUTH_HEADER.{host}": _header(TOKEN), "GIT_AUTH_TOKEN.{host}": "wrong-token"},
                 id="host-header-before-host-token"),
])
def test_add_over_http_takes_the_token_from_build_secrets(
    kiln: Kiln, token_server: tuple[HttpGit, Repo], tmp_path: Path, secrets: dict[str, str]
) -> None:
    http, repo = token_server
    host = http.url.removeprefix("http://")
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": f"FROM scratch\nADD {http.url}/private.git /src\n"})
    flags: list[str] = []
    env = {"PATH": f"{_git_spy(tmp_path)}:/usr/local/bin:/usr/bin:/bin", "KILN_TEST_GIT_LOG": str(tmp_path / "argv")}
    for i, (name, value) in enumerate(secrets.items()):
        if value.endswith("\n"):  # a file, as `echo TOKEN > file` leaves it
            (tmp_path / f"secret{i}").write_text(value)
            flags += ["--secret", f"id={name.format(host=host)},src={tmp_path / f'secret{i}'}"]
        else:
            env[f"SECRET_{i}"] = value
            flags += ["--secret", f"id={name.format(host=host)},env=SECRET_{i}"]
    out = kiln.build(ctx, *flags, env=env).ok()
    assert under(built_files(out), "src") == repo.trees["p2"]
    needles = [TOKEN.encode(), _header(TOKEN).encode(), _header(TOKEN).split()[1].encode()]
    assert found_in(kiln, out, needles) == []
    argv = (tmp_path / "argv").read_text()
    assert f"--config-env=http.{http.url}/.extraHeader=KILN_GIT_AUTH_HEADER" in argv  # how it went: the environment
    assert not [n for n in needles if n.decode() in argv]  # never a command line


def _git_spy(tmp_path: Path) -> Path:
    """A directory whose ``git`` records its arguments, then runs git: what /proc/PID/cmdline showed."""
    spy = tmp_path / "spy"
    spy.mkdir()
    script = spy / "git"
    script.write_text('#!/bin/sh\nprintf \'%s\\n\' "$*" >> "$KILN_TEST_GIT_LOG"\nexec /usr/bin/git "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return spy


def test_add_over_http_with_a_wrong_token_fails_in_one_line_without_it(
    kiln: Kiln, token_server: tuple[HttpGit, Repo], tmp_path: Path
) -> None:
    http, _ = token_server
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": f"FROM scratch\nADD {http.url}/private.git /src\n"})
    wrong = "wrong-t0ken-value"
    out = kiln.build(ctx, "--secret", "id=GIT_AUTH_TOKEN,env=T", env={"T": wrong}).failed()
    [line] = errors_of(out)
    assert line.startswith(f"error: Dockerfile:2: ADD {http.url}/private.git: "), out.stderr
    assert wrong not in out.stdout + out.stderr and _header(wrong).split()[1] not in out.stderr


# -- the commit of the cache key is the commit fetched -----------------------------------------------------------


@pytest.fixture
def moving(tmp_path: Path) -> Iterator[tuple[HttpGit, Repo]]:
    srv = tmp_path / "srv"
    srv.mkdir()
    repo = make_repo(srv, "moving.git", [("m1", {"f.txt": "1\n"}), ("m2", {"f.txt": "2\n", "g.txt": "g\n"})],
                     branches={"rel": 0})
    with git_http(srv) as http:
        yield http, repo


def _move_after(http: HttpGit, repo: Repo, method: str) -> list[str]:
    """Move branch rel from m1 to m2 once the first ``method`` request to the repository is answered (the
    listing the cache key is made from); the requests seen, in order."""
    seen: list[str] = []

    def hook(request_method: str, path: str) -> None:
        seen.append(f"{request_method} {path}")
        if request_method == method and sum(s.startswith(method) for s in seen) == 1:
            git("update-ref", "refs/heads/rel", repo.commits["m2"], cwd=repo.bare)

    http.before_reply(hook)
    return seen


def test_the_fetch_takes_the_commit_the_cache_key_resolved(kiln: Kiln, moving: tuple[HttpGit, Repo],
                                                            tmp_path: Path) -> None:
    http, repo = moving
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": f"FROM scratch\nADD {http.url}/moving.git#rel /src\n"})
    seen = _move_after(http, repo, "POST")  # protocol v2: ls-remote's refs come in answer to a POST
    cache = ("--cache=true", "--cache-copy-layers=true")  # the layer cache (and so its key) is on
    first = kiln.build(ctx, *cache).ok()
    assert git("rev-parse", "rel", cwd=repo.bare) == repo.commits["m2"] and len(seen) >= 4, seen  # it moved
    assert under(built_files(first), "src") == repo.trees["m1"]  # what the key says, not where rel went
    http.before_reply(None)
    second = kiln.build(ctx, *cache).ok()  # the key now names m2: no cache hit on m1's layer
    assert under(built_files(second), "src") == repo.trees["m2"]


def test_a_branch_moved_on_a_server_that_hands_out_only_its_refs_is_one_line(
    kiln: Kiln, moving: tuple[HttpGit, Repo], tmp_path: Path
) -> None:
    http, repo = moving
    git("config", "uploadpack.allowAnySHA1InWant", "false", cwd=repo.bare)
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": f"FROM scratch\nADD {http.url}/moving.git#rel /src\n"})
    _move_after(http, repo, "GET")  # protocol v0: the refs come in answer to the first GET
    v0 = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "protocol.version", "GIT_CONFIG_VALUE_0": "0"}
    out = kiln.build(ctx, "--cache=true", env=v0).failed()
    m1, m2 = repo.commits["m1"][:12], repo.commits["m2"][:12]
    assert errors_of(out) == [f"error: Dockerfile:2: ADD {http.url}/moving.git#rel: the branch rel moved from {m1} "
                              f"to {m2} since the build resolved it, and the server hands out only the commits its "
                              "refs name: build again"], out.stderr
