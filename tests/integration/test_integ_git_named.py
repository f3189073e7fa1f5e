"""Named build contexts of files (--build-context NAME=DIR|GIT-URL|TARBALL-URL) read by COPY --from and RUN
--mount=from=, and the layer cache of ADD <git url> keyed by the resolved commit. Needs the engine wiring of
buildenv.named_context, dispatch's remote_cache_inputs and images.py's refusal of FROM NAME."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from integ_helpers import Kiln, write_context

from support.gitserver import git, git_daemon, git_http, make_repo
from support.images import read_layer_file


def test_named_contexts_of_files_are_read_by_copy_from_and_mount_from(kiln_bb: Kiln, tmp_path: Path) -> None:
    srv = tmp_path / "srv"
    srv.mkdir()
    www = tmp_path / "www"
    www.mkdir()
    repo = make_repo(srv, "lib.git", [("l1", {"lib.txt": "lib one\n"}), ("l2", {"lib.txt": "lib two\n"})],
                     tags={"v1": 0})
    with tarfile.open(www / "t.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("t.txt")
        info.size = 8
        tar.addfile(info, io.BytesIO(b"tarball\n"))
    local = write_context(tmp_path / "local", {"f.txt": "local\n", "x.log": "ignored\n", ".dockerignore": "*.log\n"})
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "\n".join([
        "FROM busybox",
        "COPY --from=loc . /loc/",
        "COPY --from=lib lib.txt /lib.txt",
        "COPY --from=tb t.txt /t.txt",
        "RUN --mount=from=loc,target=/m cat /m/f.txt > /mounted.txt",
        "",
    ])})
    with git_daemon(srv) as daemon, git_http(srv, static_dir=www) as http:
        out = kiln_bb.build(ctx, "--build-context", f"loc={local}", "--build-context", f"lib={daemon}/lib.git#v1",
                            "--build-context", f"tb={http.url}/t.tar.gz").ok()
        assert read_layer_file(out.layout, out.tag, "lib.txt") == b"lib one\n"
        assert read_layer_file(out.layout, out.tag, "t.txt") == b"tarball\n"
        assert read_layer_file(out.layout, out.tag, "loc/f.txt") == b"local\n"
        assert read_layer_file(out.layout, out.tag, "mounted.txt") == b"local\n"
        assert not any(e.name == "loc/x.log" for layer in out.layers() for e in layer)
        # FROM a context of files: its files (.dockerignore applied) are the stage's root, one layer made at the
        # FROM line, as BuildKit's FROM on a local named context; from git alike.
        based = kiln_bb.build(write_context(tmp_path / "ctx2", {"Dockerfile": "FROM loc\nFROM lib\n"
                                                                "COPY --from=0 f.txt /from-loc.txt\n"}),
                              "--build-context", f"loc={local}", "--build-context", f"lib={daemon}/lib.git#v1").ok()
        files = [sorted(e.name for e in layer) for layer in based.layers()]
        assert files == [["lib.txt"], ["from-loc.txt"]]
        assert read_layer_file(based.layout, based.tag, "from-loc.txt") == b"local\n"
        assert [h["created_by"] for h in based.config()["history"]] == ["FROM lib", "COPY --from=0 f.txt /from-loc.txt"]
    assert repo.commits


def _events(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_add_git_is_cached_by_the_commit_its_ref_names(kiln: Kiln, tmp_path: Path) -> None:
    srv = tmp_path / "srv"
    srv.mkdir()
    repo = make_repo(srv, "app.git", [("a1", {"f": "1\n"}), ("a2", {"f": "2\n"})], branches={"rel": 0})
    with git_daemon(srv) as daemon:
        ctx = write_context(tmp_path / "ctx", {"Dockerfile": f"FROM scratch\nADD {daemon}/app.git#rel /src\n"})
        flags = ("--cache", "--cache-copy-layers", "--log-format", "json")

        def hits() -> list[object]:
            out = kiln.build(ctx, *flags).ok()
            return [e["cached"] for e in _events(out.stderr) if e.get("event") == "step_done"]

        assert hits() == [False]
        assert hits() == [True]
        git("update-ref", "refs/heads/rel", repo.commits["a2"], cwd=repo.bare)
        assert hits() == [False]
