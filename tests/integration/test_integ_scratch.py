"""FROM scratch builds: COPY and ADD of context files, the context sources, every metadata
instruction, and outputs that other tools (skopeo, umoci, podman) read."""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from integ_helpers import DESTINATION, TAG, Kiln, files_in, tar_of, write_context

from support.images import flatten_layout, skopeo_inspect
from support.mounts import remove_tree
from support.procs import run

pytestmark = pytest.mark.root


def _ctx(tmp_path: Path, dockerfile: str, files: dict[str, str | bytes] | None = None) -> Path:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": dockerfile, **(files or {})})
    return ctx


def _without_root(layer: Mapping[str, object]) -> set[str]:
    return {name for name in layer if name != "."}


def test_copy_files_dirs_wildcards_chown_chmod(kiln: Kiln, tmp_path: Path) -> None:
    ctx = _ctx(
        tmp_path,
        "FROM scratch\n"
        "COPY a.txt /a.txt\n"
        "COPY a.txt /newdir/\n"
        "COPY *.txt /txt/\n"
        "COPY dir /d2\n"
        "COPY dir/ /d3/\n"
        "COPY --chown=1234:5678 a.txt /own.txt\n"
        "COPY --chmod=0640 run.sh /run-640.sh\n"
        "COPY run.sh one.txt /multi/\n",
        {"a.txt": "alpha\n", "one.txt": "one\n", "two.txt": "two\n", "run.sh": "#!/bin/sh\necho run\n",
         "dir/y": "y\n", "dir/sub/x": "x\n", "not-copied.md": "no\n"},
    )  # fmt: skip
    os.chmod(ctx / "run.sh", 0o755)
    os.chmod(ctx / "dir/sub", 0o750)
    os.chmod(ctx / "dir/y", 0o600)
    # The owner of a context file never reaches the image: COPY without --chown gives 0:0.
    os.chown(ctx / "a.txt", 4321, 4322)
    out = kiln.build(ctx).ok()

    layers = out.new_layers(0)
    assert len(layers) == 8, [sorted(files_in(layer)) for layer in layers]
    assert _without_root(layers[0]) == {"a.txt"}
    assert _without_root(layers[1]) == {"newdir", "newdir/a.txt"}
    assert _without_root(layers[2]) == {"txt", "txt/a.txt", "txt/one.txt", "txt/two.txt"}
    # A directory source copies its contents, not the directory itself, with or without trailing slashes.
    assert _without_root(layers[3]) == {"d2", "d2/y", "d2/sub", "d2/sub/x"}
    assert _without_root(layers[4]) == {"d3", "d3/y", "d3/sub", "d3/sub/x"}

    tree = flatten_layout(out.layout, TAG, tmp_path)
    a = tree["/a.txt"]
    assert (a.type, a.mode, a.uid, a.gid, a.size) == ("file", 0o644, 0, 0, 6)
    assert tree["/newdir"].type == "dir" and tree["/newdir/a.txt"].sha256 == a.sha256
    assert {p for p in tree if p.startswith("/txt/")} == {"/txt/a.txt", "/txt/one.txt", "/txt/two.txt"}
    assert "/d2/dir" not in tree and "/not-copied.md" not in tree
    assert (tree["/d2/sub"].type, tree["/d2/sub"].mode) == ("dir", 0o750)
    assert (tree["/d2/y"].mode, tree["/d2/sub/x"].size) == (0o600, 2)
    own = tree["/own.txt"]
    assert (own.uid, own.gid, own.mode) == (1234, 5678, 0o644)
    assert tree["/run-640.sh"].mode == 0o640
    assert tree["/multi/run.sh"].mode == 0o755 and tree["/multi/one.txt"].size == 4


def test_same_file_copied_three_times_gives_three_layers(kiln: Kiln, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM scratch\nCOPY a.txt /a.txt\nCOPY a.txt /a.txt\nCOPY a.txt /a.txt\n", {"a.txt": "a\n"})
    out = kiln.build(ctx).ok()
    layers = out.new_layers(0)
    assert len(layers) == 3
    for layer in layers:
        assert "a.txt" in layer and layer["a.txt"].type == "file" and layer["a.txt"].size == 2
    assert len(out.config()["rootfs"]["diff_ids"]) == 3


def _tar_bytes(compression: str) -> bytes:
    """An archive made with tarfile: top/ (0755), top/f1 (0600, 7:8, 'one'), top/link -> f1."""
    buf = io.BytesIO()
    mode: Any = f"w:{compression}" if compression else "w"  # a computed mode: no Literal for typeshed
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        d = tarfile.TarInfo("top")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(d)
        f = tarfile.TarInfo("top/f1")
        f.mode, f.uid, f.gid, f.size = 0o600, 7, 8, 3
        tf.addfile(f, io.BytesIO(b"one"))
        link = tarfile.TarInfo("top/link")
        link.type, link.linkname = tarfile.SYMTYPE, "f1"
        tf.addfile(link)
    return buf.getvalue()


def test_add_local_archives_are_extracted(kiln: Kiln, tmp_path: Path) -> None:
    ctx = _ctx(
        tmp_path,
        "FROM scratch\n"
        "ADD plain.tar /p/\n"
        "ADD a.tar.gz /gz/\n"
        "ADD a.tar.bz2 /bz2\n"
        "ADD a.tar.xz /xz/\n"
        "ADD notes.txt /notes/\n",
        {"plain.tar": _tar_bytes(""), "a.tar.gz": _tar_bytes("gz"), "a.tar.bz2": _tar_bytes("bz2"),
         "a.tar.xz": _tar_bytes("xz"), "notes.txt": "not an archive\n"},
    )  # fmt: skip
    out = kiln.build(ctx).ok()
    assert len(out.new_layers(0)) == 5
    tree = flatten_layout(out.layout, TAG, tmp_path)
    for top in ("/p", "/gz", "/bz2", "/xz"):
        f1 = tree[f"{top}/top/f1"]
        # A local archive is unpacked as `tar -x` would as root: modes and owners from the archive.
        assert (f1.type, f1.mode, f1.uid, f1.gid, f1.size) == ("file", 0o600, 7, 8, 3), top
        assert (tree[f"{top}/top/link"].type, tree[f"{top}/top/link"].link) == ("symlink", "f1"), top
        assert f"{top}/a.tar.gz" not in tree and f"{top}/plain.tar" not in tree
    assert tree["/notes/notes.txt"].size == len("not an archive\n")


def test_dockerignore_double_star_and_exceptions(kiln: Kiln, tmp_path: Path) -> None:
    ctx = _ctx(
        tmp_path,
        "FROM scratch\nCOPY . /app/\n",
        {".dockerignore": "**/*.log\n!keep/important.log\nsecret\n", "a.txt": "a", "x.log": "x",
         "sub/y.log": "y", "sub/deep/z.log": "z", "sub/deep/keep.txt": "k", "keep/important.log": "i",
         "keep/other.log": "o", "secret/s.txt": "s", "sub/secret/t.txt": "t"},
    )  # fmt: skip
    out = kiln.build(ctx).ok()
    tree = flatten_layout(out.layout, TAG, tmp_path)
    got = {p for p in tree if p.startswith("/app/")}
    expected = {
        "/app/Dockerfile", "/app/.dockerignore", "/app/a.txt", "/app/keep", "/app/keep/important.log",
        "/app/sub", "/app/sub/deep", "/app/sub/deep/keep.txt", "/app/sub/secret", "/app/sub/secret/t.txt",
    }  # fmt: skip
    assert got == expected


def test_copy_of_an_ignored_file_fails(kiln: Kiln, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM scratch\nCOPY x.log /\n", {".dockerignore": "*.log\n", "x.log": "x"})
    out = kiln.build(ctx).failed()
    assert "x.log" in out.stderr and "Traceback" not in out.stderr
    assert not out.layout.exists()


CONTEXT_FILES: dict[str, str | bytes] = {
    "Dockerfile": "FROM scratch\nCOPY . /app/\nCOPY sub/f.txt /f.txt\n",
    "a.txt": "a\n",
    "sub/f.txt": "from sub\n",
    ".dockerignore": "ignored.txt\n",
    "ignored.txt": "no\n",
}
EXPECTED_APP = {"/app/Dockerfile", "/app/.dockerignore", "/app/a.txt", "/app/sub", "/app/sub/f.txt"}


@pytest.mark.parametrize("form", ["dir", "tar", "tar.gz", "stdin"])
def test_context_sources(kiln: Kiln, tmp_path: Path, form: str) -> None:
    src = write_context(tmp_path / "src", CONTEXT_FILES)
    stdin = None
    if form == "dir":
        context = str(src)
    elif form == "tar":
        context = str(tar_of(src, tmp_path / "ctx.tar"))
    elif form == "tar.gz":
        context = str(tar_of(src, tmp_path / "ctx.tar.gz", "w:gz"))
    else:
        context = "tar://stdin"
        stdin = tar_of(src, tmp_path / "ctx.tar").read_bytes()
    out = kiln.build(context, stdin=stdin).ok()
    tree = flatten_layout(out.layout, TAG, tmp_path)
    assert {p for p in tree if p.startswith("/app/")} == EXPECTED_APP
    assert tree["/f.txt"].size == len("from sub\n")
    assert tree["/app/Dockerfile"].size == len(CONTEXT_FILES["Dockerfile"])


METADATA_DOCKERFILE = """\
FROM scratch
MAINTAINER kiln tests <kiln@example.invalid>
ARG VERSION=1.2
ENV A=1 B="two words"
ENV C=$VERSION-x
LABEL org.example.version="$VERSION" "with space"="a b"
USER 1000:1000
EXPOSE 80 443/udp 8080/tcp
VOLUME ["/data", "/logs"]
WORKDIR /app
WORKDIR sub
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD wget -q -O- http://127.0.0.1/
SHELL ["/bin/ash", "-eo", "pipefail", "-c"]
ONBUILD RUN echo triggered
ENTRYPOINT ["/bin/app", "--flag"]
CMD echo $HOME
"""


def test_every_metadata_instruction(kiln: Kiln, tmp_path: Path) -> None:
    out = kiln.build(_ctx(tmp_path, METADATA_DOCKERFILE)).ok()
    config = out.config()
    c = config["config"]
    assert config["author"] == "kiln tests <kiln@example.invalid>"
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert {"A=1", "B=two words", "C=1.2-x"} <= set(c["Env"])
    assert not any(e.startswith("VERSION=") for e in c["Env"])  # ARG values are not kept in the image
    assert c["Labels"] == {"org.example.version": "1.2", "with space": "a b"}
    assert c["User"] == "1000:1000"
    assert c["ExposedPorts"] == {"80/tcp": {}, "443/udp": {}, "8080/tcp": {}}
    assert c["Volumes"] == {"/data": {}, "/logs": {}}
    assert c["WorkingDir"] == "/app/sub"
    assert c["StopSignal"] == "SIGUSR1"
    assert c["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -q -O- http://127.0.0.1/"],
        "Interval": 30_000_000_000, "Timeout": 5_000_000_000, "StartPeriod": 10_000_000_000, "Retries": 3,
    }  # fmt: skip
    assert c["Shell"] == ["/bin/ash", "-eo", "pipefail", "-c"]
    assert c["OnBuild"] == ["RUN echo triggered"]
    assert c["Entrypoint"] == ["/bin/app", "--flag"]
    # Shell-form CMD uses the SHELL in force, and $HOME is left for the shell at run time.
    assert c["Cmd"] == ["/bin/ash", "-eo", "pipefail", "-c", "echo $HOME"]

    # WORKDIR made /app and /app/sub, owned by the USER in force (numeric: scratch has no /etc/passwd).
    layers = out.new_layers(0)
    assert len(layers) == 2, [sorted(files_in(layer)) for layer in layers]
    assert "app" in layers[0] and "app/sub" in layers[1]
    assert (layers[0]["app"].type, layers[0]["app"].uid, layers[0]["app"].gid) == ("dir", 1000, 1000)
    assert (layers[1]["app/sub"].uid, layers[1]["app/sub"].gid) == (1000, 1000)

    history = config["history"]
    with_layer = [h for h in history if not h.get("empty_layer")]
    assert len(with_layer) == 2 and all(h["created_by"].startswith("WORKDIR") for h in with_layer)
    # (ARG's own entry is checked by test_history_has_one_entry_per_instruction_even_arg.)
    empty = [h["created_by"].split()[0] for h in history if h.get("empty_layer")]
    assert [k for k in empty if k != "ARG"] == [
        "MAINTAINER", "ENV", "ENV", "LABEL", "USER", "EXPOSE", "VOLUME", "STOPSIGNAL", "HEALTHCHECK",
        "SHELL", "ONBUILD", "ENTRYPOINT", "CMD",
    ]  # fmt: skip


def test_history_has_one_entry_per_instruction_even_arg(kiln: Kiln, tmp_path: Path) -> None:
    """BuildKit commits ARG to history too (dispatchArg → commitToHistory, empty layer)."""
    ctx = _ctx(tmp_path, "FROM scratch\nARG X=1\nCOPY a /a\nENV Y=$X\nCOPY a /b\n", {"a": "a"})
    out = kiln.build(ctx).ok()
    history = out.config()["history"]
    assert [(h["created_by"].split()[0], bool(h.get("empty_layer"))) for h in history] == [
        ("ARG", True),
        ("COPY", False),
        ("ENV", True),
        ("COPY", False),
    ]


def test_outputs_read_by_skopeo_umoci_and_podman(kiln: Kiln, tmp_path: Path) -> None:
    ctx = _ctx(
        tmp_path,
        'FROM scratch\nCOPY hello.txt /hello.txt\nCOPY dir /dir\nENV GREETING=hi\nCMD ["/hello"]\n',
        {"hello.txt": "hello world\n", "dir/inner": "inner\n"},
    )
    out = kiln.build(ctx, tar=True).ok()
    assert out.tar is not None

    oci = skopeo_inspect(out.ref)
    assert len(oci.manifest["layers"]) == 2
    assert oci.config["config"]["Cmd"] == ["/hello"]
    assert "GREETING=hi" in oci.config["config"]["Env"]
    archive = skopeo_inspect(f"docker-archive:{out.tar}")
    assert archive.config["config"]["Cmd"] == ["/hello"]
    assert archive.config["rootfs"]["diff_ids"] == oci.config["rootfs"]["diff_ids"]
    info = json.loads(run(["skopeo", "inspect", f"docker-archive:{out.tar}"]).stdout)
    assert len(info["Layers"]) == 2

    bundle = tmp_path / "bundle"
    run(["umoci", "unpack", "--image", f"{out.layout}:{TAG}", bundle])
    try:
        assert (bundle / "rootfs/hello.txt").read_text() == "hello world\n"
        assert (bundle / "rootfs/dir/inner").read_text() == "inner\n"
        assert json.loads((bundle / "config.json").read_text())["process"]["args"] == ["/hello"]
    finally:
        remove_tree(bundle)

    # podman refuses a runroot path longer than 50 characters: pytest's tmp_path is too long.
    short = Path(tempfile.mkdtemp(prefix="kiln-podman-", dir="/tmp"))
    root, runroot = short / "root", short / "run"
    podman = ["podman", "--root", str(root), "--runroot", str(runroot), "--storage-driver", "vfs"]
    try:
        run([*podman, "load", "-i", out.tar])
        inspected = json.loads(run([*podman, "image", "inspect", DESTINATION]).stdout)
        assert inspected[0]["Config"]["Cmd"] == ["/hello"]
        assert len(inspected[0]["RootFS"]["Layers"]) == 2
    finally:
        run([*podman, "rmi", "--all", "--force"], check=False)
        remove_tree(short)


def test_a_context_that_is_a_dockerfiles_text(kiln: Kiln, tmp_path: Path) -> None:
    """As BuildKit reads `docker build - < Dockerfile` and a URL serving plain text: the text is the Dockerfile,
    the context is empty (COPY finds nothing; the Dockerfile itself is no file of it)."""
    import http.server
    import threading

    text = b"FROM scratch\nLABEL from=text\nCOPY Dockerfile /\n"
    on_stdin = kiln.build("-", stdin=text)
    assert on_stdin.returncode != 0 and "Dockerfile:3: Dockerfile: file not found in build context" in on_stdin.stderr
    ok = kiln.build("-", stdin=b"FROM scratch\nLABEL from=text\n").ok()
    assert json.loads(run(["skopeo", "inspect", "--config", f"oci:{ok.layout}:{TAG}"]).stdout)["config"]["Labels"] \
        == {"from": "text"}  # fmt: skip
    served = tmp_path / "www"
    served.mkdir()
    (served / "Dockerfile").write_bytes(b"FROM scratch\nLABEL from=url\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/Dockerfile"
        from_url = kiln.build(url).ok()
    finally:
        server.shutdown()
        server.server_close()
    config = json.loads(run(["skopeo", "inspect", "--config", f"oci:{from_url.layout}:{TAG}"]).stdout)
    assert config["config"]["Labels"] == {"from": "url"}
