"""`ADD <git url>` against git daemon and git http-backend on 127.0.0.1: tag, branch, commit, subdirectory,
submodule, --keep-git-dir, --checksum good and bad, and the one-line errors of a wrong ref or an unreachable
server."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from integ_helpers import Kiln, write_context

from support.gitserver import Repo, free_port, git_daemon, git_http, make_repo
from support.images import TarEntry, read_layer_file

USER, PASSWORD = "adder", "add-pa55-secret"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Repo]]:
    srv = tmp_path_factory.mktemp("gitsrv")
    with git_daemon(srv) as daemon, git_http(srv, (USER, PASSWORD)) as http:
        make_repo(srv, "lib.git", [("l1", {"lib.txt": "lib\n"})])
        app = make_repo(srv, "app.git", [
            ("v1", {"a.txt": "one\n", "sub/s.txt": "sub one\n"}),
            ("v2", {"a.txt": "two\n", "sub/t.txt": "tee\n"}),
            ("v3", {"c.txt": "three\n"}),
        ], branches={"stable": 1}, tags={"v1.0": 0}, annotated={"v2.0": 1},
            submodule=("vendor/lib", f"{daemon}/lib.git"))
        yield daemon, http.url, app


def under(outcome: object, prefix: str) -> dict[str, TarEntry]:
    entries: dict[str, TarEntry] = {}
    for layer in outcome.layers():  # type: ignore[attr-defined]
        for e in layer:
            if e.name.startswith(prefix + "/"):
                entries[e.name[len(prefix) + 1:]] = e
    return entries


def files_under(outcome: object, prefix: str) -> dict[str, str]:
    return {name: read_layer_file(outcome.layout, outcome.tag, f"{prefix}/{name}").decode()  # type: ignore[attr-defined]
            for name, e in under(outcome, prefix).items() if e.type == "file" and not name.startswith(".git/")}


def test_add_git_forms(kiln: Kiln, served: tuple[str, str, Repo], tmp_path) -> None:  # type: ignore[no-untyped-def]
    daemon, http, app = served
    authed = http  # the credentials come from kiln's environment (kaniko's variables), not the Dockerfile
    v1 = app.commits["v1"]
    dockerfile = "\n".join([
        "FROM scratch",
        f"ADD {daemon}/app.git#v1.0 /tag",
        f"ADD {daemon}/app.git#stable /branch",
        f"ADD {daemon}/app.git#{app.commits['v2']} /commit",
        f"ADD {daemon}/app.git#v2.0:sub /subdir",
        f"ADD {daemon}/app.git /head",
        f"ADD --keep-git-dir=true {authed}/app.git#stable /kept",
        f"ADD --checksum={v1} {authed}/app.git#v1.0 /checked",
        f"ADD --checksum={v1[:12]} {daemon}/app.git#{v1[:10]} /short",
        "",
    ])
    started = time.time()
    env = {"GIT_USERNAME": USER, "GIT_PASSWORD": PASSWORD}
    out = kiln.build(write_context(tmp_path / "ctx", {"Dockerfile": dockerfile}), env=env).ok()
    assert files_under(out, "tag") == app.trees["v1"]
    assert files_under(out, "branch") == app.trees["v2"]
    assert files_under(out, "commit") == app.trees["v2"]
    assert files_under(out, "subdir") == {"s.txt": "sub one\n", "t.txt": "tee\n"}
    head = files_under(out, "head")
    assert head.pop("vendor/lib/lib.txt") == "lib\n" and ".gitmodules" in head  # the submodule, checked out
    head.pop(".gitmodules")
    assert head == app.trees["v3"]
    for prefix in ("tag", "branch", "commit", "subdir", "head", "checked", "short"):
        assert not any(n == ".git" or n.startswith(".git/") or n.endswith("/.git") for n in under(out, prefix))
    assert files_under(out, "checked") == files_under(out, "short") == app.trees["v1"]
    kept = under(out, "kept")
    assert ".git/HEAD" in kept and files_under(out, "kept") == app.trees["v2"]
    assert read_layer_file(out.layout, out.tag, "kept/.git/HEAD") == b"ref: refs/heads/stable\n"
    config = read_layer_file(out.layout, out.tag, "kept/.git/config").decode()
    assert f"url = {http}/app.git" in config
    # Files as the checkout left them (BuildKit 1.x: checkout times, git's modes), owned by root.
    entry = under(out, "tag")["a.txt"]
    assert entry.mtime >= started - 2 and entry.mode & 0o777 == 0o644 and (entry.uid, entry.gid) == (0, 0)
    # The credentials are nowhere: not in the kept .git, the history, the output or kiln's dir.
    assert PASSWORD not in out.stdout + out.stderr
    assert PASSWORD not in str(out.config())
    for path in (kiln.kiln_dir, kiln.out_dir):
        for file in path.rglob("*"):
            if file.is_file() and not file.is_symlink():
                assert PASSWORD.encode() not in file.read_bytes(), file
    for name in kept:
        if kept[name].type == "file":
            assert PASSWORD.encode() not in read_layer_file(out.layout, out.tag, f"kept/{name}"), name


@pytest.mark.parametrize("line, message", [
    ("ADD --checksum=0123456789abcdef {daemon}/app.git#v1.0 /x",
     "ADD {daemon}/app.git#v1.0: checksum mismatch: expected commit 0123456789abcdef, got {v1}"),
    ("ADD {daemon}/app.git#no-such-tag /x", "ADD {daemon}/app.git#no-such-tag: no branch, tag or ref named "
     "'no-such-tag'"),
    ("ADD --keep-git-dir=true ctx.txt /x", "ADD --keep-git-dir applies to git sources only"),
])
def test_add_git_errors_are_one_line_at_the_instruction(
    kiln: Kiln, served: tuple[str, str, Repo], tmp_path, line: str, message: str  # type: ignore[no-untyped-def]
) -> None:
    daemon, _, app = served
    line = line.format(daemon=daemon)
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": f"FROM scratch\n{line}\n", "ctx.txt": "c\n"})
    out = kiln.build(ctx).failed()
    assert out.returncode == 1
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: Dockerfile:2: {message.format(daemon=daemon, v1=app.commits['v1'])}"], out.stderr


def test_add_from_an_unreachable_server_names_the_line_and_host(kiln: Kiln, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": f"FROM scratch\nADD http://127.0.0.1:{port}/r.git /x\n"})
    out = kiln.build(ctx).failed()
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(f"error: Dockerfile:2: ADD http://127.0.0.1:{port}/r.git: ")
    assert "Traceback" not in out.stderr


def test_cache_inputs_of_a_git_add_follow_the_resolved_commit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What dispatch keys a git ADD by: the commit the ref names now (git ls-remote), not the ref's text."""
    from kiln.dockerfile.instructions import Add
    from kiln.dockerfile.parse import parse_dockerfile
    from kiln.engine.steps.add import remote_cache_inputs
    from support.gitserver import git

    srv = tmp_path / "srv"
    srv.mkdir()
    repo = make_repo(srv, "moving.git", [("m1", {"f": "1\n"}), ("m2", {"f": "2\n"})], branches={"rel": 0})

    def inputs(text: str) -> dict[str, str] | None:
        instr = parse_dockerfile(f"FROM scratch\n{text}\n").instructions[-1]
        assert isinstance(instr, Add)
        return remote_cache_inputs(instr)

    with git_daemon(srv) as daemon:
        before = inputs(f"ADD {daemon}/moving.git#rel /x")
        assert before is not None and repo.commits["m1"] in before["git0"]
        git("update-ref", "refs/heads/rel", repo.commits["m2"], cwd=repo.bare)
        after = inputs(f"ADD {daemon}/moving.git#rel /x")
        assert after is not None and repo.commits["m2"] in after["git0"] and after != before
        assert inputs(f"ADD --keep-git-dir=true {daemon}/moving.git#rel /x") != after
        assert inputs(f"ADD {daemon}/moving.git#rel http://127.0.0.1:1/plain.txt /x/") is None
