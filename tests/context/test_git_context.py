"""Remote build contexts against real servers on 127.0.0.1: git daemon, git http-backend (with basic auth), a
tarball over HTTP. Trees are compared with what the test repositories hold at each ref."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.context import git as kgit
from kiln.context.git import GitOptions, is_git_url, parse_git_url, parse_kaniko_context
from kiln.context.opener import BuildContext, ContextSpec, open_context
from kiln.errors import ContextError, NotSupportedYet, UsageError
from support.gitserver import Repo, free_port, git_daemon, git_http, make_repo

USER, PASSWORD, TOKEN = "builder", "pa55-w0rd-xyz", "tok-123456789"


def files_of(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    srv = tmp_path_factory.mktemp("gitsrv")
    www = tmp_path_factory.mktemp("www")
    with git_daemon(srv) as daemon, git_http(srv) as open_http, \
            git_http(srv, (USER, PASSWORD), static_dir=www) as auth_http, \
            git_http(srv, ("x-access-token", TOKEN)) as token_http:
        lib = make_repo(srv, "lib.git", [("l1", {"lib.txt": "lib one\n"})])
        app = make_repo(
            srv, "app.git",
            [("v1", {"a.txt": "one\n", "app/Dockerfile": "FROM scratch\n", "app/x.txt": "x\n",
                     "app/.dockerignore": "*.log\n", "app/debug.log": "noise\n"}),
             ("v2", {"a.txt": "two\n", "b.txt": "bee\n"}),
             ("v3", {"c.txt": "sea\n"})],
            branches={"stable": 0}, tags={"v1.0": 0}, annotated={"v2.0": 1},
            submodule=("vendor/lib", f"{daemon}/lib.git"),
        )
        with tarfile.open(www / "ctx.tar.gz", "w:gz") as tar:
            data = b"FROM scratch\nCOPY f /f\n"
            for name, body in (("Dockerfile", data), ("f", b"from a tarball\n")):
                info = tarfile.TarInfo(name)
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
        yield {"daemon": daemon, "http": open_http.url, "auth": auth_http, "token": token_http.url,
               "app": app, "lib": lib}


@pytest.mark.parametrize("ref, label", [
    (None, "v3"), ("main", "v3"), ("stable", "v1"), ("v1.0", "v1"), ("v2.0", "v2"), ("refs/heads/stable", "v1"),
    ("COMMIT:v2", "v2"), ("SHORT:v1", "v1"),
])
def test_buildkit_git_url_over_git_daemon_gives_the_tree_at_the_ref(
    servers: dict, tmp_path: Path, ref: str | None, label: str  # type: ignore[type-arg]
) -> None:
    app: Repo = servers["app"]
    if ref and ref.startswith("COMMIT:"):
        ref = app.commits[ref[7:]]
    elif ref and ref.startswith("SHORT:"):
        ref = app.commits[ref[6:]][:10]
    url = f"{servers['daemon']}/app.git" + (f"#{ref}" if ref else "")
    with _buildkit(url, tmp_path) as ctx:  # git:// as BuildKit means it (git's protocol): ADD, named contexts
        got = files_of(ctx.root)
        want = dict(app.trees[label])
        if label == "v3":  # the submodule is in the last version: checked out at its recorded commit
            want["vendor/lib/lib.txt"] = "lib one\n"
            assert ".gitmodules" in got
            got.pop(".gitmodules")
        assert got == want
        assert not (ctx.root / ".git").exists() and not (ctx.root / "vendor/lib/.git").exists()
        owned = ctx.owned_dir
        assert owned is not None and owned.is_relative_to(tmp_path / "work")
    assert not owned.exists()


def _buildkit(url: str, tmp_path: Path) -> BuildContext:
    from kiln.context.opener import open_remote

    return open_remote(url, tmp_path / "work", kaniko_git=False)


def test_https_git_url_with_subdir_uses_the_subdirectorys_dockerignore(servers: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    url = f"{servers['http']}/app.git#stable:app"
    assert is_git_url(url)
    with open_context(url, tmp_path / "work") as ctx:
        assert files_of(ctx.root) == {"Dockerfile": "FROM scratch\n", "x.txt": "x\n", ".dockerignore": "*.log\n",
                                      "debug.log": "noise\n"}
        assert ctx.ignore.matches("debug.log") and not ctx.ignore.matches("x.txt")
        assert ctx.name == url


def test_kaniko_git_context_over_http_with_basic_auth_from_kanikos_variables(
    servers: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # type: ignore[type-arg]
) -> None:
    auth = servers["auth"]
    spec = auth.url.replace("http://", "git://") + "/app.git#refs/heads/stable"
    monkeypatch.setenv("GIT_PULL_METHOD", "http")
    with pytest.raises(ContextError) as err:
        open_context(spec, tmp_path / "work")
    assert "127.0.0.1" in str(err.value) and "\n" not in str(err.value)
    monkeypatch.setenv("GIT_USERNAME", USER)
    monkeypatch.setenv("GIT_PASSWORD", PASSWORD)
    calls: list[list[str]] = []
    real_run = subprocess.run

    def spy(argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
        calls.append(list(argv))
        return real_run(argv, **kw)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(kgit.subprocess, "run", spy)
    with open_context(spec, tmp_path / "work") as ctx:
        assert files_of(ctx.root) == dict(servers["app"].trees["v1"])
    # The credentials reached git through its environment only: no command line held them.
    assert calls and all(PASSWORD not in arg and "Basic " not in arg for argv in calls for arg in argv)


def test_git_auth_token_and_url_userinfo_are_used_and_never_shown(
    servers: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # type: ignore[type-arg]
) -> None:
    url = f"{servers['token']}/app.git#v1.0"
    monkeypatch.setenv("GIT_AUTH_TOKEN", TOKEN)
    with open_context(url, tmp_path / "work") as ctx:
        assert files_of(ctx.root) == dict(servers["app"].trees["v1"])
    monkeypatch.delenv("GIT_AUTH_TOKEN")
    auth = servers["auth"]
    with_info = auth.url.replace("http://", f"http://{USER}:{PASSWORD}@") + "/app.git#v1.0"
    with open_context(with_info, tmp_path / "work") as ctx:
        assert files_of(ctx.root) == dict(servers["app"].trees["v1"])
        assert PASSWORD not in ctx.name
    with pytest.raises(ContextError) as err:
        open_context(with_info.replace("#v1.0", "#no-such-ref"), tmp_path / "work")
    message = str(err.value)
    assert "no-such-ref" in message and PASSWORD not in message and USER not in message


def test_kaniko_ref_and_commit_git_options_and_sub_path(
    servers: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # type: ignore[type-arg]
) -> None:
    app: Repo = servers["app"]
    monkeypatch.setenv("GIT_PULL_METHOD", "http")
    base = servers["http"].replace("http://", "git://") + "/app.git"
    # #REF#COMMIT: the commit is checked out after fetching the ref.
    with open_context(f"{base}#refs/heads/main#{app.commits['v2']}", tmp_path / "work") as ctx:
        assert files_of(ctx.root) == dict(app.trees["v2"])
    # --git branch= names a tag too; --context-sub-path is the subdirectory; submodules only when asked.
    spec = ContextSpec(base, GitOptions.parse("branch=v1.0,single-branch=true,depth=2"), "app")
    with open_context(spec, tmp_path / "work") as ctx:
        assert set(files_of(ctx.root)) == {"Dockerfile", "x.txt", ".dockerignore", "debug.log"}
    with open_context(ContextSpec(base), tmp_path / "work") as ctx:
        assert not (ctx.root / "vendor/lib/lib.txt").exists()
    with open_context(ContextSpec(base, GitOptions.parse("recurse-submodules=true")), tmp_path / "work") as ctx:
        assert (ctx.root / "vendor/lib/lib.txt").read_text() == "lib one\n"


def test_git_options_parse_and_refuse_nonsense() -> None:
    opts = GitOptions.parse("branch=dev,single-branch=false,recurse-submodules=true,depth=5")
    assert opts == GitOptions("dev", False, True, 5)
    for bad in ("depth=x", "colour=blue", "recurse-submodules=maybe", "branch"):
        with pytest.raises(UsageError) as err:
            GitOptions.parse(bad)
        assert err.value.flag == "--git"


def test_url_forms_parse_as_buildkit_and_kaniko_do(monkeypatch: pytest.MonkeyPatch) -> None:
    s = parse_git_url("git@example.com:org/repo.git#v1.2:sub/dir")
    assert (s.url, s.ref, s.subdir, s.userinfo) == ("git@example.com:org/repo.git", "v1.2", "sub/dir", None)
    s = parse_git_url("https://u:p@example.com/r.git#main")
    assert (s.url, s.userinfo, s.display) == ("https://example.com/r.git", ("u", "p"), "https://example.com/r.git#main")
    monkeypatch.delenv("GIT_PULL_METHOD", raising=False)
    s = parse_kaniko_context("git://example.com/org/repo#refs/pull/1/head#abc")
    assert (s.url, s.ref, s.commit, s.submodules) == ("https://example.com/org/repo", "refs/pull/1/head", "abc", False)
    assert is_git_url("https://example.com/r.git#x") and not is_git_url("https://example.com/ctx.tar.gz")
    with pytest.raises(ContextError):
        parse_git_url("https://example.com/r.git#main:../up")


def test_wrong_ref_and_unreachable_server_are_one_line_errors(servers: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    with pytest.raises(ContextError) as err:
        open_context(f"{servers['http']}/app.git#nope", tmp_path / "work")
    assert str(err.value) == f"{servers['http']}/app.git#nope: no branch, tag or ref named 'nope'"
    with pytest.raises(ContextError) as err:
        open_context(f"{servers['http']}/app.git#{'0' * 40}", tmp_path / "work")
    assert "no commit" in str(err.value) and "\n" not in str(err.value)
    port = free_port()
    with pytest.raises(ContextError) as err:
        open_context(f"http://127.0.0.1:{port}/app.git", tmp_path / "work")
    assert f"127.0.0.1:{port}" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ContextError):
        open_context(f"{servers['http']}/app.git#main:no/such/dir", tmp_path / "work")
    assert not any((tmp_path / "work").iterdir())


def test_tarball_over_http_is_a_context(servers: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    auth = servers["auth"]
    url = auth.url.replace("http://", f"http://{USER}:{PASSWORD}@") + "/ctx.tar.gz"
    with open_context(url, tmp_path / "work") as ctx:
        assert files_of(ctx.root) == {"Dockerfile": "FROM scratch\nCOPY f /f\n", "f": "from a tarball\n"}
        assert PASSWORD not in ctx.name
    with pytest.raises(ContextError) as err:
        open_context(auth.url + "/missing.tar.gz", tmp_path / "work")
    assert "HTTP 401" in str(err.value) or "HTTP 404" in str(err.value)


@pytest.mark.parametrize("spec", ["s3://bucket/ctx.tar.gz", "gs://bucket/ctx.tar.gz"])
def test_bucket_contexts_are_refused_clearly(spec: str, tmp_path: Path) -> None:
    with pytest.raises(NotSupportedYet) as err:
        open_context(spec, tmp_path / "work")
    assert str(err.value).startswith("--context: not supported yet: ") and "bucket" in str(err.value)


def test_ssh_url_uses_the_environments_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # git@HOST:PATH goes to ssh, which here is a script recording its arguments: the scp-like URL reaches it
    # as user@host and the path, with no password anywhere.
    log = tmp_path / "ssh.log"
    fake = tmp_path / "fake-ssh"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\nexit 128\n")
    os.chmod(fake, 0o755)
    monkeypatch.setenv("GIT_SSH_COMMAND", str(fake))
    with pytest.raises(ContextError) as err:
        open_context("git@example.invalid:org/repo.git#main", tmp_path / "work")
    assert "git@example.invalid:org/repo.git#main" in str(err.value)
    assert "git@example.invalid" in log.read_text() and "org/repo.git" in log.read_text()


def test_named_contexts_of_files_directory_git_and_tarball(servers: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    from kiln.context.opener import names_files, open_named_context

    assert names_files("/src/lib") and names_files("https://h/r.git") and not names_files("oci-layout:///x:1")
    assert not names_files("docker-image://alpine:3") and not names_files("docker-archive:///a.tar")
    local = tmp_path / "lib"
    (local / "sub").mkdir(parents=True)
    (local / "sub" / "f.txt").write_text("f\n")
    (local / ".dockerignore").write_text("*.log\n")
    with open_named_context("lib", str(local), tmp_path / "work") as ctx:
        assert ctx.root == local and ctx.owned_dir is None and ctx.ignore.matches("x.log")
    assert local.is_dir()  # used where it is, never removed
    with open_named_context("app", f"{servers['daemon']}/app.git#v2.0", tmp_path / "work") as ctx:
        assert files_of(ctx.root) == dict(servers["app"].trees["v2"])
        owned = ctx.owned_dir
    assert owned is not None and not owned.exists()
    with open_named_context("t", servers["auth"].url.replace("http://", f"http://{USER}:{PASSWORD}@") + "/ctx.tar.gz",
                            tmp_path / "work") as ctx:
        assert (ctx.root / "f").read_text() == "from a tarball\n"
    with pytest.raises(ContextError) as err:
        open_named_context("app", f"{servers['daemon']}/app.git#nope", tmp_path / "work")
    assert str(err.value).startswith("--build-context app: ") and "nope" in str(err.value)
    with pytest.raises(UsageError) as uerr:
        open_named_context("x", str(tmp_path / "missing"), tmp_path / "work")
    assert uerr.value.flag == "--build-context x"


def test_gits_own_credential_helpers_answer_without_kiln(
    servers: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # type: ignore[type-arg]
) -> None:
    auth = servers["auth"]
    store = tmp_path / "git-credentials"
    store.write_text(auth.url.replace("http://", f"http://{USER}:{PASSWORD}@") + "\n")
    config = tmp_path / "gitconfig"
    config.write_text(f"[credential]\n\thelper = store --file={store}\n")
    for var in ("GIT_AUTH_TOKEN", "GIT_AUTH_HEADER", "GIT_TOKEN", "GIT_USERNAME", "GIT_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    with open_context(f"{auth.url}/app.git#v1.0", tmp_path / "work") as ctx:
        assert files_of(ctx.root) == dict(servers["app"].trees["v1"])


def test_kanikos_commit_part_must_be_a_commit_id(
    servers: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # type: ignore[type-arg]
) -> None:
    monkeypatch.setenv("GIT_PULL_METHOD", "http")
    spec = servers["http"].replace("http://", "git://") + "/app.git#main#--output=/tmp/x"
    with pytest.raises(ContextError) as err:
        open_context(spec, tmp_path / "work")
    assert "'--output=/tmp/x' is not a commit id" in str(err.value)


def test_buildkit_query_form(servers: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    app: Repo = servers["app"]
    s = parse_git_url("https://example.com/r.git?tag=v1&subdir=app&checksum=abcdef12")
    assert (s.url, s.ref, s.subdir, s.checksum) == ("https://example.com/r.git", "refs/tags/v1", "app", "abcdef12")
    s = parse_git_url("https://example.com/r.git?private_token=x#main")  # not BuildKit's keys: the URL's own
    assert (s.url, s.ref) == ("https://example.com/r.git?private_token=x", "main")
    with pytest.raises(ContextError):
        parse_git_url("https://example.com/r.git?tag=a&branch=b")
    base = f"{servers['http']}/app.git"
    with open_context(f"{base}?branch=stable&subdir=app&checksum={app.commits['v1'][:12]}", tmp_path / "w") as ctx:
        assert set(files_of(ctx.root)) == {"Dockerfile", "x.txt", ".dockerignore", "debug.log"}
    with open_context(f"{base}?submodules=false", tmp_path / "w") as ctx:
        assert not (ctx.root / "vendor/lib/lib.txt").exists() and (ctx.root / "c.txt").exists()
    with pytest.raises(ContextError) as err:
        open_context(f"{base}?tag=v2.0&checksum={app.commits['v1']}", tmp_path / "w")
    assert f"checksum mismatch: expected commit {app.commits['v1']}, got {app.commits['v2']}" in str(err.value)
    assert not any((tmp_path / "w").iterdir())


def test_a_git_context_takes_the_builds_git_secrets_as_buildkit_does(servers: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    """`--secret id=GIT_AUTH_TOKEN,...` reaches a git context (and a named one) as it reaches ADD's git sources;
    the build and its output never show it."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    url = f"{servers['token']}/app.git#v1.0"
    env = {**os.environ, "TOKEN_VAR": TOKEN}
    env.pop("GIT_AUTH_TOKEN", None)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY --from=app x.txt /named-x.txt\n")
    common = [sys.executable, "-m", "kiln", "build", "--kiln-dir", str(tmp_path / "kiln"), "--no-push",
              "--secret", "id=GIT_AUTH_TOKEN,env=TOKEN_VAR"]  # fmt: skip
    r = subprocess.run([*common, "--context", f"{url}:app", "--oci-layout-path", str(tmp_path / "out")],
                       capture_output=True, text=True, env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    named = subprocess.run([*common, "--context", str(ctx), "--build-context", f"app={url}:app",
                            "--oci-layout-path", str(tmp_path / "out2")],
                           capture_output=True, text=True, env=env)  # fmt: skip
    assert named.returncode == 0, named.stderr
    without = subprocess.run([*common[:-2], "--context", f"{url}:app", "--oci-layout-path", str(tmp_path / "out3")],
                             capture_output=True, text=True, env=env)  # fmt: skip
    assert without.returncode != 0 and "app.git" in without.stderr  # no token: the server refuses
    for out in (r, named, without):
        assert TOKEN not in out.stdout + out.stderr
