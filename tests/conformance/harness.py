"""Running one conformance case: prepare its context, build it with kiln and with buildah, compare.

A case is a directory under cases/ with a Dockerfile, its context files and an optional case.toml:

    description = "what the case checks"
    base = "busybox" | "debian" | "scratch"        # informational; FROM lines say what is used
    build_args = { NAME = "value" }
    target = "stage"
    generate = ["many-small-files", "big-file", "long-paths", "tars", "unicode-names"]
    serve = true                                   # {{HTTP}} in the Dockerfile -> http://127.0.0.1:PORT/<case>
    expect = "same"                                # default: kiln and buildah agree (after the ignores)
           | "both-fail"                           # every builder must refuse the Dockerfile
           | "kiln-fails"                          # kiln must refuse it (buildah cannot judge: no feature)
           | "kiln-only"                           # buildah 1.28 lacks the feature or gets it wrong: kiln's
                                                   # image is checked against expected.txt (see below)
    reason = "why expect/ignores are what they are (docs/conformance.md has the long form)"
    ignore_paths = ["/path"]                       # known differences, each explained in docs/conformance.md
    ignore_config = ["Field" | "Field:key"]
    layers = true                                  # also build buildah with --layers and compare layer counts
    slow = true

FROM lines name the test bases as `busybox` or `debian`; the harness rewrites them (and `--from=busybox`) to
the test registry's references, so both builders pull the very same image over plain HTTP.

expected.txt (kiln-only cases), one path per line, written from the Dockerfile reference:
    /path file 0644 0:0 content=text with \\n escapes
    /path dir 0755 0:0
    /path symlink - 0:0 -> target
    !absent /path
and [expected_config] in case.toml: image config fields (Cmd, Env, User, ...) with their expected values.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases"
REPO = HERE.parent.parent
META_FILES = {"case.toml", "expected.txt"}

# Differences every case has, for reasons that have nothing to do with the Dockerfile (docs/conformance.md).
GLOBAL_IGNORE_CONFIG = ("Labels:io.buildah.version",)
GLOBAL_IGNORE_PATHS: tuple[str, ...] = ()
# buildah 1.28 leaves the mount points of the files it bind-mounts into every RUN container behind in the image
# (empty, mode 0755), plus /run for /run/.containerenv, when the base image lacks them. BuildKit and Docker do
# not: the image holds only what the instructions made. Dropped only when buildah alone has them, empty.
BUILDAH_RUN_LEFTOVERS = {
    "/etc/hostname": "file 0755 0:0 size=0",
    "/etc/hosts": "file 0755 0:0 size=0",
    "/etc/resolv.conf": "file 0755 0:0 size=0",
    "/run": "dir 0755 0:0",
}


def drop_buildah_leftovers(differences: tuple[Any, ...]) -> tuple[Any, ...]:
    """The report's differences without buildah's RUN leftovers (A is buildah)."""
    return tuple(
        d for d in differences
        if not (d.section == "files" and d.change == "only-a" and d.where in BUILDAH_RUN_LEFTOVERS
                and str(d.a).startswith(BUILDAH_RUN_LEFTOVERS[d.where]))
    )  # fmt: skip


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    meta: dict[str, Any]

    @property
    def expect(self) -> str:
        return str(self.meta.get("expect", "same"))

    @property
    def debian(self) -> bool:
        text = (self.path / "Dockerfile").read_text()
        return self.meta.get("base") == "debian" or bool(re.search(r"(?im)^\s*FROM\s+debian\b|--from=debian\b", text))


def load_cases() -> list[Case]:
    cases = []
    for path in sorted(p for p in CASES.iterdir() if (p / "Dockerfile").is_file()):
        meta_file = path / "case.toml"
        meta = tomllib.loads(meta_file.read_text()) if meta_file.exists() else {}
        cases.append(Case(path.name, path, meta))
    return cases


@dataclass
class Bases:
    busybox: str
    debian_getter: Callable[[], str]
    _debian: str | None = None

    @property
    def debian(self) -> str:
        if self._debian is None:
            self._debian = self.debian_getter()
        return self._debian


class ServedFiles:
    """A plain HTTP file server on 127.0.0.1 over one directory, in a thread of the test process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        directory = str(root)

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=directory, **kwargs)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- preparing a context --------------------------------------------------------------------------------

_FROM = re.compile(r"(?im)^(\s*FROM\s+(?:--platform=\S+\s+)?)(busybox|debian)(?=\s|$)")
_COPY_FROM = re.compile(r"--from=(busybox|debian)(?=\s)")


def rewrite_dockerfile(text: str, bases: Bases, http_url: str) -> str:
    def ref(name: str) -> str:
        return bases.busybox if name == "busybox" else bases.debian

    text = _FROM.sub(lambda m: m.group(1) + ref(m.group(2)), text)
    text = _COPY_FROM.sub(lambda m: "--from=" + ref(m.group(1)), text)
    return text.replace("{{HTTP}}", http_url)


def _many_small_files(ctx: Path) -> None:
    for i in range(2000):
        sub = ctx / "many" / f"d{i % 20:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05d}.txt").write_text(f"file {i}\n" * (i % 7))


def _big_file(ctx: Path) -> None:
    # 64 MiB that does not compress to nothing: a repeating 1 MiB block of pseudo-random bytes.
    import random

    block = random.Random(1).randbytes(1 << 20)
    with open(ctx / "big.bin", "wb") as f:
        for i in range(64):
            f.write(block[i:] + block[:i])


def _long_paths(ctx: Path) -> None:
    deep = ctx / "long" / "/".join(f"{i:02d}-" + "x" * 60 for i in range(14))  # ~900 bytes
    deep.mkdir(parents=True)
    (deep / ("n" * 250)).write_text("deep\n")


def _unicode_names(ctx: Path) -> None:
    d = ctx / "uni"
    d.mkdir()
    for name in ("café.txt", "日本語.txt", "emoji-🎉.txt", "ελληνικά", "space name.txt", "tab\tname", "quote'\"s"):
        (d / name).write_text(name + "\n")


def _tars(ctx: Path) -> None:
    src = ctx / "_tarsrc"
    (src / "pkg" / "sub").mkdir(parents=True)
    (src / "pkg" / "a.txt").write_text("a\n")
    (src / "pkg" / "sub" / "b.txt").write_text("b\n")
    os.chmod(src / "pkg" / "a.txt", 0o600)
    os.symlink("a.txt", src / "pkg" / "link")
    for suffix, mode in (("tar", "w"), ("tar.gz", "w:gz"), ("tar.bz2", "w:bz2"), ("tar.xz", "w:xz")):
        with tarfile.open(ctx / f"archive.{suffix}", mode) as tf:  # type: ignore[call-overload]
            tf.add(src / "pkg", arcname="pkg")
    # A file named like an archive that is not one: ADD copies it as-is.
    (ctx / "fake.tar.gz").write_text("not really a tarball\n")
    shutil.rmtree(src)


def _empty_dirs(ctx: Path) -> None:
    # git keeps no empty directories, so they are made here.
    (ctx / "empty").mkdir()
    (ctx / "withempty" / "inner-empty").mkdir(parents=True)
    (ctx / "withempty" / "f").write_text("f\n")
    os.chmod(ctx / "withempty" / "inner-empty", 0o750)


def _hardlinks(ctx: Path) -> None:
    (ctx / "hl").mkdir()
    (ctx / "hl" / "a").write_text("shared\n")
    os.link(ctx / "hl" / "a", ctx / "hl" / "b")
    (ctx / "hl" / "c").write_text("alone\n")


def _served_tar(ctx: Path) -> None:
    (ctx / "served").mkdir(exist_ok=True)
    with tarfile.open(ctx / "served" / "pkg.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo("inside.txt")
        info.size = 7
        import io

        tf.addfile(info, io.BytesIO(b"inside\n"))


GENERATORS: dict[str, Callable[[Path], None]] = {
    "empty-dirs": _empty_dirs,
    "hardlinks": _hardlinks,
    "served-tar": _served_tar,
    "many-small-files": _many_small_files,
    "big-file": _big_file,
    "long-paths": _long_paths,
    "unicode-names": _unicode_names,
    "tars": _tars,
}


def prepare(case: Case, work: Path, bases: Bases, served: ServedFiles | None) -> Path:
    """A fresh context directory for the case, with generated files and the Dockerfile rewritten."""
    ctx = work / "context"
    shutil.copytree(case.path, ctx, symlinks=True, ignore=lambda _d, names: [n for n in names if n in META_FILES])
    for name in case.meta.get("generate", []):
        GENERATORS[name](ctx)
    http_url = ""
    if case.meta.get("serve"):
        assert served is not None
        dest = served.root / case.name
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(ctx / "served", dest)
        http_url = f"{served.url}/{case.name}"
    dockerfile = ctx / "Dockerfile"
    dockerfile.write_text(rewrite_dockerfile(dockerfile.read_text(), bases, http_url))
    return ctx


# --- building -------------------------------------------------------------------------------------------


@dataclass
class BuildResult:
    ok: bool
    seconds: float
    output: str = ""
    layout: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def kiln_build(case: Case, ctx: Path, out: Path, kiln_dir: Path, timeout: float = 900) -> BuildResult:
    """`kiln build` as a user runs it (a subprocess), writing an OCI layout."""
    argv = [sys.executable, "-m", "kiln", "build", "--context", str(ctx), "--dockerfile", str(ctx / "Dockerfile"),
            "--no-push", "--oci-layout-path", str(out), "--kiln-dir", str(kiln_dir), "--insecure-pull"]  # fmt: skip
    for key, value in case.meta.get("build_args", {}).items():
        argv += ["--build-arg", f"{key}={value}"]
    if case.meta.get("target"):
        argv += ["--target", case.meta["target"]]
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, timeout=timeout, check=False, cwd=ctx)
    output = (proc.stdout + proc.stderr).decode(errors="replace")
    return BuildResult(proc.returncode == 0, time.monotonic() - start, output, out if proc.returncode == 0 else None)


def buildah_build(case: Case, ctx: Path, out: Path, buildah: Any, *, layers: bool = False) -> BuildResult:
    """`buildah build --format docker`, saved as a docker-archive at ``out``.

    Docker format, not OCI: buildah drops HEALTHCHECK, ONBUILD and SHELL from OCI images (the OCI config has no
    such fields) and then ignores SHELL for RUN; the Dockerfile reference describes Docker's image format.
    """
    from support.procs import ToolError

    iidfile = out.with_suffix(".iid")
    argv = ["build", f"--layers={'true' if layers else 'false'}", "--format", "docker", "-f", str(ctx / "Dockerfile"),
            "--iidfile", str(iidfile), "--tls-verify=false", "--network=host"]  # fmt: skip
    # --network=host: kiln's RUN default too; buildah's own bridge would turn on the host's ip_forward.
    for key, value in (case.meta.get("build_args") or {}).items():
        argv += ["--build-arg", f"{key}={value}"]
    if case.meta.get("target"):
        argv += ["--target", case.meta["target"]]
    start = time.monotonic()
    try:
        buildah(*argv, str(ctx))
        image_id = iidfile.read_text().strip().removeprefix("sha256:")
        buildah("push", "--quiet", image_id, f"docker-archive:{out}")
    except ToolError as e:
        return BuildResult(False, time.monotonic() - start, str(e))
    return BuildResult(True, time.monotonic() - start, "", out)


def image_layer_count(spec: str) -> int:
    import tempfile

    from kiln.diff.sources import open_image
    from kiln.transports.address import ImageAddress

    with tempfile.TemporaryDirectory() as tmp:
        return len(open_image(ImageAddress.parse(spec), Path(tmp)).layers)


def layer_count(layout: Path) -> int:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][-1]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    return len(manifest["layers"])


# --- expectations written by hand -------------------------------------------------------------------------


def check_expected_files(case: Case, tree: dict[str, Any]) -> list[str]:
    """Problems of kiln's flattened tree against the case's expected.txt (empty when it matches)."""
    problems = []
    for raw in (case.path / "expected.txt").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("!absent "):
            path = line.split(None, 1)[1]
            if path in tree:
                problems.append(f"{path}: should not exist")
            continue
        path, kind, mode, owner, *rest = line.split(None, 4)
        entry = tree.get(path)
        if entry is None:
            problems.append(f"{path}: missing")
            continue
        if entry.type != kind:
            problems.append(f"{path}: type {entry.type}, expected {kind}")
            continue
        if mode != "-" and entry.mode != int(mode, 8):
            problems.append(f"{path}: mode {entry.mode:04o}, expected {mode}")
        if owner != "-" and f"{entry.uid}:{entry.gid}" != owner:
            problems.append(f"{path}: owner {entry.uid}:{entry.gid}, expected {owner}")
        if rest:
            extra = rest[0]
            if extra.startswith("content="):
                import hashlib

                want = extra[len("content=") :].encode().decode("unicode_escape").encode()
                if entry.sha256 != hashlib.sha256(want).hexdigest():
                    problems.append(f"{path}: content differs from {want!r}")
            elif extra.startswith("-> ") and entry.link != extra[3:]:
                problems.append(f"{path}: link {entry.link!r}, expected {extra[3:]!r}")
    return problems


def check_expected_config(case: Case, config: Any) -> list[str]:
    from kiln.diff.compare import plain_fields

    expected = case.meta.get("expected_config", {})
    plain = plain_fields(config)
    actual = {**plain, "Env": list(config.config.env), "Labels": dict(config.config.labels),
              "ExposedPorts": list(config.config.exposed_ports), "Volumes": list(config.config.volumes)}  # fmt: skip
    return [f"config {k}: {actual.get(k)!r}, expected {v!r}" for k, v in expected.items() if actual.get(k) != v]
