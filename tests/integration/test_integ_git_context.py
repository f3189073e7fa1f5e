"""`kiln build` from remote contexts served on 127.0.0.1: kaniko's git:// (over http with GIT_PULL_METHOD=http,
with --git and --context-sub-path), BuildKit's https://…/REPO.git#REF:DIR behind basic auth, a tarball URL.
The image's files are the repository's at the ref; credentials appear nowhere in the image, the kiln dir or
kiln's output."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator

import pytest
from integ_helpers import Kiln

from support.gitserver import Repo, git_http, make_repo
from support.images import read_layer_file

USER, PASSWORD = "ci-bot", "s3cr3t-pa55word"
DOCKERFILE = "FROM scratch\nCOPY . /src/\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Repo]]:
    srv = tmp_path_factory.mktemp("gitsrv")
    www = tmp_path_factory.mktemp("www")
    app = make_repo(srv, "app.git", [
        ("v1", {"Dockerfile": DOCKERFILE, "a.txt": "one\n", "svc/Dockerfile": DOCKERFILE, "svc/s.txt": "svc\n",
                "svc/.dockerignore": "*.tmp\n", "svc/junk.tmp": "junk\n"}),
        ("v2", {"a.txt": "two\n"}),
    ], branches={"release": 0}, tags={"v1.0": 0})
    with tarfile.open(www / "ctx.tar.gz", "w:gz") as tar:
        for name, body in (("Dockerfile", DOCKERFILE.encode()), ("t.txt", b"tarball\n")):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    with git_http(srv, (USER, PASSWORD), static_dir=www) as server:
        yield server.url, app


def image_files(outcome: object) -> dict[str, str]:
    entries = {e.name: e for layer in outcome.layers() for e in layer}  # type: ignore[attr-defined]
    return {name[len("src/"):]: read_layer_file(outcome.layout, outcome.tag, name).decode()  # type: ignore[attr-defined]
            for name, e in entries.items() if e.type == "file" and name.startswith("src/")}


def assert_no_secret(kiln: Kiln, *texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text
    for path in [kiln.kiln_dir, kiln.out_dir]:
        for file in path.rglob("*"):
            if file.is_file() and not file.is_symlink():
                data = file.read_bytes()
                assert PASSWORD.encode() not in data, file


def test_kaniko_git_context_with_git_options_and_sub_path(kiln: Kiln, served: tuple[str, Repo]) -> None:
    url, app = served
    spec = url.replace("http://", "git://") + "/app.git"
    env = {"GIT_PULL_METHOD": "http", "GIT_USERNAME": USER, "GIT_PASSWORD": PASSWORD}
    out = kiln.build(spec, "--git", "branch=release,single-branch=true,depth=1", "--context-sub-path", "svc",
                     env=env).ok()
    assert image_files(out) == {"Dockerfile": DOCKERFILE, "s.txt": "svc\n", ".dockerignore": "*.tmp\n"}
    assert_no_secret(kiln, out.stdout, out.stderr)
    out = kiln.build(spec + "#refs/heads/main", env=env).ok()
    assert image_files(out) == {k: v for k, v in app.trees["v2"].items()}


def test_buildkit_https_git_url_with_userinfo_and_subdir(kiln: Kiln, served: tuple[str, Repo]) -> None:
    url, app = served
    spec = url.replace("http://", f"http://{USER}:{PASSWORD}@") + "/app.git#v1.0:svc"
    out = kiln.build(spec).ok()
    assert image_files(out) == {"Dockerfile": DOCKERFILE, "s.txt": "svc\n", ".dockerignore": "*.tmp\n"}
    assert_no_secret(kiln, out.stdout, out.stderr)


def test_wrong_credentials_and_wrong_ref_fail_in_one_line_without_the_secret(
    kiln: Kiln, served: tuple[str, Repo]
) -> None:
    url, _ = served
    bad = kiln.build(url.replace("http://", f"http://{USER}:wrong-{PASSWORD}@") + "/app.git").failed()
    assert bad.returncode == 1 and PASSWORD not in bad.stderr
    assert len([ln for ln in bad.stderr.splitlines() if ln.startswith("error:")]) == 1, bad.stderr
    spec = url.replace("http://", f"http://{USER}:{PASSWORD}@") + "/app.git#no-such-branch"
    bad = kiln.build(spec).failed()
    assert bad.stderr.strip() == f"error: {url}/app.git#no-such-branch: no branch, tag or ref named 'no-such-branch'"


def test_tarball_url_context(kiln: Kiln, served: tuple[str, Repo]) -> None:
    url, _ = served
    out = kiln.build(url.replace("http://", f"http://{USER}:{PASSWORD}@") + "/ctx.tar.gz").ok()
    assert image_files(out) == {"Dockerfile": DOCKERFILE, "t.txt": "tarball\n"}
    assert_no_secret(kiln, out.stdout, out.stderr)


def test_bucket_context_is_refused_with_one_line(kiln: Kiln) -> None:
    out = kiln.build("s3://bucket/ctx.tar.gz").failed()
    assert out.returncode == 2
    assert out.stderr.startswith("error: --context: not supported yet: s3:// bucket contexts"), out.stderr


def test_a_named_context_that_is_no_directory_is_refused_before_building(kiln: Kiln, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY --from=lib f /f\n")
    out = kiln.build(ctx, "--build-context", f"lib={tmp_path / 'missing'}").failed()
    assert out.returncode == 2
    assert [ln for ln in out.stderr.splitlines() if ln.startswith("error:")] == [
        f"error: --build-context lib: '{tmp_path / 'missing'}' is not a directory (nor an image address: "
        "oci-layout://, docker-archive://, docker-image://)"]
    out = kiln.build(ctx, "--build-context", "lib=s3://bucket/lib.tar.gz").failed()
    assert out.returncode == 2 and "--build-context lib: not supported yet: bucket contexts" in out.stderr
