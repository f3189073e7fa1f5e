"""Differential fuzzing of kiln against buildah (issue 12): random build contexts and Dockerfiles.

A case is a small build context (nested and same-named directories, symlinks absolute, relative, dangling and to
directories, hardlinks, special modes, foreign owners, sometimes a tar) and a Dockerfile of at most eight
instructions on the busybox base (COPY/ADD with globs, --chown, --chmod, --exclude, --parents; RUN shell file
operations; WORKDIR; a builder stage and COPY --from). Each case is built by kiln in the overlay and the full
snapshot modes and by buildah (the reference builder here; Docker/BuildKit semantics decide who is right), and
the images are compared with kiln diff: files (type, mode, owner, size, content, link target, hardlink groups)
and config. kiln's two modes must give the same image, layers included.

buildah 1.28 has no `--exclude` or `--parents`: buildah gets an equivalent Dockerfile instead, written from the
Dockerfile reference's semantics (the files an --exclude leaves out are absent from a filtered copy of the
source in buildah's context; --parents becomes one COPY per source with its path spelled out in the
destination). Known buildah differences (docs/conformance.md) are ignored narrowly, in `known_buildah`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import io
import os
import posixpath
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
REPO = TESTS.parent
for _p in (str(TESTS), str(TESTS / "conformance")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

KILN = REPO / ".venv" / "bin" / "kiln"
MODES = ("overlay", "full")
BASE = "busybox"

# --- the case model ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One context entry: kind is file, dir, symlink or hardlink (arg: content, -, link target, link source)."""

    path: str
    kind: str
    mode: int = 0o644
    arg: str = ""
    owner: tuple[int, int] = (0, 0)


@dataclass
class Case:
    entries: list[Entry]
    lines: list[str]  # the Dockerfile, with {base} for the base image
    buildah_lines: list[str]  # what buildah builds (equivalent, for what buildah 1.28 lacks)
    buildah_extra: list[Entry] = field(default_factory=list)  # entries only buildah's context has
    tar: bool = False  # the context holds t.tar
    chmod_dirs: list[tuple[str, int]] = field(default_factory=list)  # (COPY --chmod destination dir, mode)
    wild_dests: list[str] = field(default_factory=list)  # destinations of COPY/ADD with a wildcard source
    parent_dirs: list[str] = field(default_factory=list)  # directories a COPY --parents passes through

    def dockerfile(self, base: str, buildah: bool = False) -> str:
        return "".join(line.replace("{base}", base) + "\n" for line in (self.buildah_lines if buildah else self.lines))

    def describe(self) -> str:
        ctx = "\n".join(f"  {e.path} {e.kind} {e.mode:04o} {e.owner[0]}:{e.owner[1]} {e.arg!r}" for e in self.entries)
        text = f"context:\n{ctx}\n" + ("  t.tar (tar)\n" if self.tar else "")
        text += "Dockerfile:\n" + self.dockerfile(BASE)
        if self.buildah_lines != self.lines:
            text += "buildah's Dockerfile:\n" + self.dockerfile(BASE, buildah=True)
        return text


# --- writing a context ------------------------------------------------------------------------------------


def _tar_bytes() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, arg in (
            ("tp", "dir", ""),
            ("tp/a", "dir", ""),
            ("tp/a/f", "file", "tar-f\n"),
            ("tp/l", "symlink", "a/f"),
            ("tp/h", "hardlink", "tp/a/f"),
            ("top", "file", "top\n"),
        ):
            info = tarfile.TarInfo(name)
            info.mtime, info.mode = 1_600_000_000, 0o755 if kind == "dir" else 0o640
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind in ("symlink", "hardlink"):
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = arg
            else:
                info.size = len(arg)
            tf.addfile(info, io.BytesIO(arg.encode()) if kind == "file" else None)
    return buf.getvalue()


def write_context(case: Case, root: Path, dockerfile: Path, base: str, *, buildah: bool = False) -> None:
    """The case's context at root (fresh) and its Dockerfile at dockerfile (outside the context)."""
    root.mkdir(parents=True)
    entries = case.entries + (case.buildah_extra if buildah else [])
    for e in entries:
        p = root / e.path
        p.parent.mkdir(parents=True, exist_ok=True)
        if e.kind == "dir":
            p.mkdir(exist_ok=True)
        elif e.kind == "file":
            p.write_text(e.arg)
        elif e.kind == "symlink":
            os.symlink(e.arg, p)
        elif e.kind == "hardlink":
            os.link(root / e.arg, p)
    if case.tar:
        (root / "t.tar").write_bytes(_tar_bytes())
    # Owners and modes last, deepest first: a 0000 directory must not stop its children being made.
    for e in sorted(entries, key=lambda e: -e.path.count("/")):
        p = root / e.path
        if e.kind == "symlink":
            os.lchown(p, *e.owner)
        elif e.kind != "hardlink":
            os.chown(p, *e.owner)
            os.chmod(p, e.mode)
    dockerfile.write_text(case.dockerfile(base, buildah=buildah))


# --- generating cases -------------------------------------------------------------------------------------

CTX_POOL = ["a", "a/a", "a/a/a", "a/a/a/f", "a/f", "a/b", "a/b/g.txt", "b", "b/a", "b/a/f", "f.txt", "g.txt",
            "d", "d/e", "d/e/f.txt", "l"]  # fmt: skip
SYMLINK_TARGETS = ["f.txt", "../f.txt", "a", "../a", "/etc/passwd", "/a", "missing", ".", "a/f", "/t/a"]
FILE_MODES = [0o644, 0o644, 0o755, 0o600, 0o4755, 0o2755, 0o0000, 0o1644]
DIR_MODES = [0o755, 0o755, 0o700, 0o1777, 0o2775, 0o750, 0o0000]
OWNERS = [(0, 0), (0, 0), (1000, 1000), (1234, 5678)]
IMG_PATHS = ["/t", "/t/a", "/t/a/a", "/t/a/a/a", "/t/b", "/t/a/f", "/t/b/f", "/t/l", "/t/w", "/t/d/e",
             "a", "a/a", "x", "/t/l/x"]  # fmt: skip
LINK_TARGETS = ["/t/a", "a", "../b", "/missing", "f", "/t/b/f", ".", "/t/l"]
RUN_MODES = ["0000", "0700", "4755", "2755", "1777", "0644", "755", "u-w"]
CHOWNS = ["1000:1000", "1:2", "app", "0:0", "app:nobody", "4242"]
CHMODS = ["0755", "0600", "0700", "4755", "0777", "0640"]
DESTS = ["/t/", "/t/a/", "/t/a/a/", "/t/n/m/", "/t/d", "r/", ".", "/t/l/", "/t/a/a/a/", "/t/w/"]
WORKDIRS = ["/t/w", "/t/a", "/t/a/a", "r", "/t/l/x", "/t/n/w"]
USERS = ["root", "app", "1000", "1000:1000", "0:0", "9999"]
# A start the other instructions can work on: nested same-named directories, a file, a symlink to a directory
# (COPY and RUN write through it), a setgid directory.
PRELUDE = (
    "RUN mkdir -p /t/a/a /t/b /t/w && echo x > /t/b/f && ln -s /t/a /t/l && ln -s b/f /t/rel"
    " && chmod 2775 /t/b && chown 1000:1000 /t/w"
)


def _normalize(raw: list[tuple[str, str, int, str, tuple[int, int]]]) -> list[Entry]:
    """Context entries in creation order; a path below a non-directory is dropped, parents become dirs."""
    kinds: dict[str, Entry] = {}
    for path, kind, mode, arg, owner in sorted(raw, key=lambda r: r[0].count("/")):
        parents = [posixpath.dirname(path)]
        while parents[-1]:
            parents.append(posixpath.dirname(parents[-1]))
        if any(p in kinds and kinds[p].kind != "dir" for p in parents if p):
            continue
        if kind == "hardlink":
            files = [e.path for e in kinds.values() if e.kind == "file"]
            if not files:
                kind, arg = "file", f"{path}\n"
            else:
                arg = files[int(arg) % len(files)]
        kinds[path] = Entry(path, kind, mode if kind != "symlink" else 0o777, arg, owner)
    # Implicit parents are plain directories.
    out: dict[str, Entry] = {}
    for e in kinds.values():
        p = posixpath.dirname(e.path)
        chain = []
        while p:
            if p not in kinds and p not in out:
                chain.append(Entry(p, "dir", 0o755))
            p = posixpath.dirname(p)
        for parent in reversed(chain):
            out[parent.path] = parent
        out[e.path] = e
    return list(out.values())


@st.composite
def contexts(draw: st.DrawFn) -> list[Entry]:
    paths = draw(st.lists(st.sampled_from(CTX_POOL), min_size=1, max_size=7, unique=True))
    raw = []
    for path in paths:
        kind = draw(st.sampled_from(["file", "file", "file", "dir", "symlink", "hardlink"]))
        if kind == "dir":
            mode, arg = draw(st.sampled_from(DIR_MODES)), ""
        elif kind == "symlink":
            mode, arg = 0o777, draw(st.sampled_from(SYMLINK_TARGETS))
        elif kind == "hardlink":
            mode, arg = 0o644, str(draw(st.integers(0, 7)))
        else:
            mode, arg = draw(st.sampled_from(FILE_MODES)), draw(st.sampled_from(["", "x\n", f"{path}\n"]))
        raw.append((path, kind, mode, arg, draw(st.sampled_from(OWNERS))))
    return _normalize(raw)


def _sources(entries: list[Entry], tar: bool) -> list[str]:
    names = [e.path for e in entries]
    if tar:
        names.append("t.tar")
    return names


def _glob_of(path: str, how: int) -> str:
    head, name = posixpath.split(path)
    pattern = [name[0] + "*", "?" + name[1:], "*" + name[-1:], "*"][how]
    return posixpath.join(head, pattern)


def _wild(name: str) -> bool:
    return "*" in name or "?" in name


def _matches(pattern: str, names: Iterable[str]) -> list[str]:
    """Context paths a Dockerfile source pattern matches (Go's filepath.Match, component by component)."""
    parts = pattern.split("/")
    out = []
    for name in names:
        segs = name.split("/")
        if len(segs) == len(parts) and all(fnmatch.fnmatchcase(s, p) for s, p in zip(segs, parts, strict=True)):
            out.append(name)
    return sorted(out)


@dataclass
class _Gen:
    """What the instruction strategies need to know about the case so far."""

    entries: list[Entry]
    tar: bool
    extra: list[Entry] = field(default_factory=list)
    chmod_dirs: list[tuple[str, int]] = field(default_factory=list)
    wild_dests: list[str] = field(default_factory=list)
    parent_dirs: list[str] = field(default_factory=list)
    n_extra: int = 0
    workdir: str = "/"
    # In the builder stage s0: no --chmod there, as the directories a --chmod creates differ with buildah
    # (known, ignored where they are made) and COPY --from would carry them where the comparison cannot tell.
    builder: bool = False


def _ex_filter(gen: _Gen, src: str, patterns: list[str]) -> str | None:
    """A copy of the context tree src without what `--exclude=patterns` leaves out, for buildah's context.

    BuildKit matches an exclude pattern against each path relative to the source it was found under (the
    directory named, or the file itself); a matching directory is left out with everything below it.
    """
    by_path = {e.path: e for e in gen.entries}
    root = by_path.get(src)
    if root is None or root.kind != "dir":
        return None  # only directories are filtered (a file source matching a pattern is another case)
    gen.n_extra += 1
    new_root = f"_x{gen.n_extra}"
    kept: list[Entry] = [dataclasses.replace(root, path=new_root)]
    dropped: set[str] = set()
    for e in gen.entries:
        if not e.path.startswith(src + "/"):
            continue
        rel = e.path[len(src) + 1 :]
        if any(rel.startswith(d + "/") for d in dropped):
            continue
        if any(fnmatch.fnmatchcase(rel, p) and rel.count("/") == p.count("/") for p in patterns):
            dropped.add(rel)
            continue
        if e.kind == "hardlink":
            target = e.arg
            if not target.startswith(src + "/") or any(target[len(src) + 1 :].startswith(d) for d in dropped):
                return None  # a hardlink leaving the filtered tree: not worth translating
            kept.append(dataclasses.replace(e, path=f"{new_root}/{rel}", arg=f"{new_root}/{target[len(src) + 1 :]}"))
        else:
            kept.append(dataclasses.replace(e, path=f"{new_root}/{rel}"))
    gen.extra.extend(kept)
    return new_root


def _pruned(gen: _Gen, matched: list[str]) -> str | None:
    """A copy of the context holding only ``matched`` (with everything below a matched directory) and the
    directories leading to them, for buildah's context: what COPY --parents copies."""
    by_path = {e.path: e for e in gen.entries}
    if not all(m in by_path for m in matched):
        return None  # t.tar, or something the context lacks

    def wanted(path: str) -> bool:
        return any(path == m or m.startswith(path + "/") or path.startswith(m + "/") for m in matched)

    gen.n_extra += 1
    new_root = f"_p{gen.n_extra}"
    kept = [Entry(new_root, "dir", 0o755)]
    for e in gen.entries:
        if not wanted(e.path):
            continue
        if e.kind == "hardlink":
            target = by_path[e.arg]
            if wanted(target.path):
                kept.append(dataclasses.replace(e, path=f"{new_root}/{e.path}", arg=f"{new_root}/{e.arg}"))
            else:  # the link's other name is not copied: a file of the same content, mode and owner
                kept.append(Entry(f"{new_root}/{e.path}", "file", target.mode, target.arg, target.owner))
        else:
            kept.append(dataclasses.replace(e, path=f"{new_root}/{e.path}"))
    gen.extra.extend(kept)
    return new_root


@st.composite
def copy_like(draw: st.DrawFn, gen: _Gen, stage_names: list[str]) -> tuple[str, str]:
    """A COPY or ADD instruction: (kiln's line, buildah's line)."""
    names = _sources(gen.entries, gen.tar)
    from_stage = stage_names and draw(st.integers(0, 2)) == 0
    if from_stage:
        src = [draw(st.sampled_from(["/t", "/t/a", "/t/a/a", "/t/b/f", "/t/l", "/t/w", "/t/*"]))]
        kind = "COPY"
    else:
        kind = draw(st.sampled_from(["COPY", "COPY", "COPY", "ADD"]))
        src = []
        for _ in range(draw(st.integers(1, 2))):
            name = draw(st.sampled_from(names))
            if draw(st.integers(0, 3)) == 0:
                pattern = _glob_of(name, draw(st.integers(0, 3)))
                kinds = {e.path: e.kind for e in gen.entries}
                # A wildcard matching a symlink of the context is not generated: buildah's Dockerfile spells a
                # wildcard out as separate sources, which changes which copied files share hardlinks there.
                # (kiln's own rule for it, an error for a dangling match as in BuildKit, is tested in
                # tests/context/test_context_sources.py.)
                if all(kinds.get(m) != "symlink" for m in _matches(pattern, names)):
                    name = pattern
            src.append(name)
        src = list(dict.fromkeys(src))
    multi = len(src) > 1 or any("*" in s or "?" in s for s in src)
    dest = draw(st.sampled_from(DESTS))
    if multi and not dest.endswith("/") and dest != ".":
        dest += "/"
    flags = []
    if draw(st.integers(0, 3)) == 0:
        flags.append(f"--chown={draw(st.sampled_from(CHOWNS))}")
    chmod = None
    if not gen.builder and draw(st.integers(0, 3)) == 0:
        chmod = draw(st.sampled_from(CHMODS))
        flags.append(f"--chmod={chmod}")
    if from_stage:
        flags.insert(0, "--from=s0")
    kiln_line = f"{kind} {' '.join([*flags, *src, dest])}".replace("  ", " ")
    # buildah's context also holds the trees made for --exclude and --parents (_x1, _p1, ...), which a wildcard
    # of the first level would match: buildah gets the context paths the wildcard matches, spelled out.
    spelled = [m for s in src for m in (_matches(s, names) if not from_stage and _wild(s.split("/")[0]) else [s])]
    buildah_line = f"{kind} {' '.join([*flags, *spelled, dest])}".replace("  ", " ")
    # --exclude (both COPY and ADD, local sources): buildah copies a filtered tree instead.
    if not from_stage and len(src) == 1 and "*" not in src[0] and "?" not in src[0] and draw(st.integers(0, 4)) == 0:
        patterns = [draw(st.sampled_from(["a", "*.txt", "f", "a/*", "?"]))]
        filtered = _ex_filter(gen, src[0], patterns)
        if filtered is not None:
            kiln_line = f"{kind} {' '.join([*flags, *[f'--exclude={p}' for p in patterns], src[0], dest])}"
            buildah_line = f"{kind} {' '.join([*flags, filtered, dest])}"
    # --parents (COPY, local sources): BuildKit copies from the context's root with the source as an include
    # pattern, so the directories on the way are copied (their modes and owners, by the copy's rules) and a
    # symlink named is copied as the link. buildah gets the same as the contents of a pruned copy of the context.
    elif kind == "COPY" and not from_stage and chmod is None and dest.startswith("/") and draw(st.integers(0, 4)) == 0:
        # One pruned tree per source: BuildKit copies each source apart (hardlinks are kept within one only).
        matches = [_matches(s, names) for s in src]
        pruned = [_pruned(gen, m) if m else None for m in matches]
        if all(p is not None for p in pruned):
            d = dest if dest.endswith("/") else dest + "/"
            kiln_line = f"{kind} {' '.join(['--parents', *flags, *src, d])}"
            base = posixpath.normpath(posixpath.join(gen.workdir, d))
            for m in (m for ms in matches for m in ms):
                parts = m.split("/")[:-1]
                gen.parent_dirs += [posixpath.join(base, *parts[: i + 1]) for i in range(len(parts))]
            buildah_line = "\n".join(f"{kind} {' '.join([*flags, str(p), d])}" for p in pruned)
    if chmod is not None:
        gen.chmod_dirs.append((posixpath.normpath(posixpath.join(gen.workdir, dest)), int(chmod, 8)))
    if not from_stage and any(_wild(s) for s in src):
        gen.wild_dests.append(posixpath.normpath(posixpath.join(gen.workdir, dest)))
    return kiln_line, buildah_line


@st.composite
def run_op(draw: st.DrawFn) -> str:
    p = st.sampled_from(IMG_PATHS)
    op = draw(st.integers(0, 11))
    if op == 0:
        return f"mkdir -p {draw(p)}"
    if op == 1:
        return f"rm -rf {draw(p)}"
    if op == 2:
        return f"echo {draw(st.integers(0, 9))} > {draw(p)}"
    if op == 3:
        return f"ln -s {draw(st.sampled_from(LINK_TARGETS))} {draw(p)}"
    if op == 4:
        return f"ln -sfn {draw(st.sampled_from(LINK_TARGETS))} {draw(p)}"
    if op == 5:
        return f"ln {draw(p)} {draw(p)}"
    if op == 6:
        return f"mv {draw(p)} {draw(p)}"
    if op == 7:
        return f"cp -a {draw(p)} {draw(p)}"
    if op == 8:
        return f"chmod {draw(st.sampled_from(RUN_MODES))} {draw(p)}"
    if op == 9:
        return f"touch -d '2001-02-03 04:05:06' {draw(p)}"
    if op == 10:
        return f"chown {draw(st.sampled_from(['1000:1000', '7:7', '-h 5:5']))} {draw(p)}"
    return f"echo {draw(st.integers(0, 9))} >> {draw(p)}"


@st.composite
def instruction(draw: st.DrawFn, gen: _Gen, stage_names: list[str]) -> tuple[str, str]:
    which = draw(st.integers(0, 10))
    if which <= 3:
        return draw(copy_like(gen, stage_names))
    if which == 10:
        line = f"USER {draw(st.sampled_from(USERS))}"
        return line, line
    if which <= 7:
        ops = draw(st.lists(run_op(), min_size=1, max_size=4))
        line = f"RUN {' ; '.join(ops)} ; true"
        return line, line
    workdir = draw(st.sampled_from(WORKDIRS))
    gen.workdir = posixpath.normpath(posixpath.join(gen.workdir, workdir))
    line = f"WORKDIR {workdir}"
    return line, line


@st.composite
def cases(draw: st.DrawFn) -> Case:
    entries = draw(contexts())
    gen = _Gen(entries, tar=draw(st.integers(0, 3)) == 0)
    lines: list[tuple[str, str]] = []
    stage_names: list[str] = []
    budget = 8
    if draw(st.integers(0, 3)) == 0:
        n = draw(st.integers(1, 3))
        lines.append(("FROM {base} AS s0", "FROM {base} AS s0"))
        gen.builder = True
        lines += [draw(instruction(gen, [])) for _ in range(n)]
        gen.builder = False
        lines.append(("FROM {base}", "FROM {base}"))
        gen.workdir = "/"
        stage_names.append("s0")
        budget -= n
    else:
        lines.append(("FROM {base}", "FROM {base}"))
    if draw(st.booleans()):
        lines.append((PRELUDE, PRELUDE))
        budget -= 1
    lines += [draw(instruction(gen, stage_names)) for _ in range(draw(st.integers(1, budget)))]
    return Case(
        entries,
        [a for a, _ in lines],
        [b for _, b in lines],
        gen.extra,
        gen.tar,
        gen.chmod_dirs,
        gen.wild_dests,
        gen.parent_dirs,
    )


# --- building and comparing -------------------------------------------------------------------------------


@dataclass
class Built:
    ok: bool
    seconds: float
    output: str
    image: str  # an address for kiln diff


@dataclass
class Outcome:
    case: Case
    differences: list[str]
    seconds: float
    status: dict[str, bool]
    open_bugs: list[str] = field(default_factory=list)  # known kiln bugs, open (KILN_OPEN_BUGS)
    buildah_wrong: int = 0  # builds buildah made where BuildKit (and kiln) fail (KILN_FAILS_AS_BUILDKIT)

    @property
    def same(self) -> bool:
        return not self.differences


class Builders:
    """kiln (one work directory, reused: the base is unpacked once) and buildah, both on the busybox base."""

    def __init__(self, work: Path, busybox: Any, buildah: Any, modes: tuple[str, ...] = MODES) -> None:
        self.work = work
        self.busybox = busybox
        self.buildah = buildah
        self.buildah_base = buildah.oci_ref(busybox)
        self.kiln_dir = work / "kiln"
        self.kiln_dir.mkdir(parents=True, exist_ok=True)
        self.modes = modes
        self.n = 0

    def kiln(self, ctx: Path, dockerfile: Path, out: Path, mode: str) -> Built:
        argv = [str(KILN), "build", "--context", str(ctx), "--dockerfile", str(dockerfile), "--no-push",
                "--oci-layout-path", str(out), "--kiln-dir", str(self.kiln_dir), f"--snapshot-mode={mode}",
                "--build-context", f"{BASE}=oci-layout://{self.busybox.layout}:{self.busybox.tag}"]  # fmt: skip
        start = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, timeout=300, check=False, cwd=ctx)
        output = (proc.stdout + proc.stderr).decode(errors="replace")
        return Built(proc.returncode == 0, time.monotonic() - start, output, f"oci-layout:{out}")

    def buildah_build(self, ctx: Path, dockerfile: Path, out: Path) -> Built:
        from support.procs import ToolError

        iidfile = out.with_suffix(".iid")
        argv = ["build", "--layers=false", "--format", "docker", "-f", str(dockerfile), "--iidfile", str(iidfile),
                "--network=host", "--pull=never"]  # fmt: skip
        start = time.monotonic()
        try:
            self.buildah(*argv, str(ctx), timeout=300)
            image_id = iidfile.read_text().strip().removeprefix("sha256:")
            self.buildah("push", "--quiet", image_id, f"docker-archive:{out}")
            self.buildah("rmi", "--force", image_id, check=False)
        except ToolError as e:
            return Built(False, time.monotonic() - start, str(e), "")
        return Built(True, time.monotonic() - start, "", f"docker-archive:{out}")

    def run(self, case: Case) -> Outcome:
        self.n += 1
        d = self.work / f"case-{self.n}"
        start = time.monotonic()
        try:
            return self._run(case, d, start)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def _run(self, case: Case, d: Path, start: float) -> Outcome:
        from kiln.diff import DiffOptions, diff_images

        d.mkdir(parents=True)
        write_context(case, d / "kctx", d / "Dockerfile.kiln", BASE)
        write_context(case, d / "bctx", d / "Dockerfile.buildah", self.buildah_base, buildah=True)
        built = {m: self.kiln(d / "kctx", d / "Dockerfile.kiln", d / f"kiln-{m}", m) for m in self.modes}
        theirs = self.buildah_build(d / "bctx", d / "Dockerfile.buildah", d / "buildah.tar")
        status = {**{f"kiln-{m}": b.ok for m, b in built.items()}, "buildah": theirs.ok}
        diffs: list[str] = []
        open_bugs: list[str] = []
        buildah_wrong = 0
        first = self.modes[0]
        for m, b in built.items():
            if b.ok != built[first].ok:
                diffs.append(f"status: kiln {first} ok={built[first].ok}, kiln {m} ok={b.ok}\n{b.output[-1500:]}")
        if theirs.ok != built[first].ok:
            why = built[first].output[-1500:] if not built[first].ok else theirs.output[-1500:]
            bug = open_kiln_bug(theirs.ok, built[first].output)
            if bug:
                open_bugs.append(bug)
            elif known_buildah_failure(case, theirs.ok, built[first].output):
                buildah_wrong += 1
            else:
                diffs.append(f"status: buildah ok={theirs.ok}, kiln ok={built[first].ok}\n{why}")
        if not diffs and theirs.ok and built[first].ok:
            opts = DiffOptions(ignore_config=("Labels:io.buildah.version",), workdir=d / "diff")
            report = diff_images(theirs.image, built[first].image, opts)
            for x in known_buildah(case, report.differences):
                diffs.append(f"buildah (a) vs kiln {first} (b): {_fmt(x)}")
            for m in self.modes[1:]:
                opts = DiffOptions(workdir=d / "diff", layers=True)
                report = diff_images(built[first].image, built[m].image, opts)
                diffs += [f"kiln {first} (a) vs kiln {m} (b): {_fmt(x)}" for x in report.differences]
        return Outcome(case, diffs, time.monotonic() - start, status, open_bugs, buildah_wrong)


def _fmt(d: Any) -> str:
    return f"{d.section} {d.where} {d.change} {d.attribute} a={d.a!r} b={d.b!r}"


# --- known buildah differences (docs/conformance.md, "Differential fuzzing") -------------------------------


# kiln's errors where BuildKit fails too and buildah 1.28 builds something.
KILN_FAILS_AS_BUILDKIT = (
    # A file copied onto a directory (fsutil's ensureEmptyFileTarget: "cannot replace to directory ... with
    # file"); buildah replaces the directory.
    "cannot replace a directory with a non-directory",
)


# Known kiln bugs that make kiln fail where buildah builds, by a line of kiln's message: counted apart, as open, so
# that the rest of the comparison goes on; remove an entry once it is fixed. None is open now (the last one,
# "context-symlink-scoped", is fixed: context/sources.py resolves symlinks with the context as the root).
KILN_OPEN_BUGS: dict[str, str] = {}


def open_kiln_bug(buildah_ok: bool, kiln_output: str) -> str:
    """The name of the open kiln bug that explains kiln failing where buildah built, or ""."""
    if not buildah_ok:
        return ""
    return next((name for text, name in KILN_OPEN_BUGS.items() if text in kiln_output), "")


def known_buildah_failure(case: Case, buildah_ok: bool, kiln_output: str) -> bool:
    """kiln and buildah disagree on success for a reason docs/conformance.md lists as buildah's."""
    return buildah_ok and any(text in kiln_output for text in KILN_FAILS_AS_BUILDKIT)


def _chmod_created_dir(case: Case, d: Any) -> bool:
    """A directory a `COPY --chmod=M` created (its destination or a missing parent): BuildKit >= 0.21 gives it
    mode M, buildah 1.28 0755 (docs/conformance.md, copy-chmod-creates-dirs)."""
    if not (d.section == "files" and d.change == "changed" and d.attribute == "mode" and d.a == "0755"):
        return False
    for dest, mode in case.chmod_dirs:
        if d.b == f"{mode:04o}" and (dest == d.where or dest.startswith(d.where.rstrip("/") + "/")):
            return True
    return False


def _setid_lost(case: Case, d: Any) -> bool:
    """A copied file's setuid/setgid bits, which buildah 1.28 strips from the context's files (copier
    StripSetuidBit/StripSetgidBit, to match the legacy builder's lchown bug, moby/moby#36239); BuildKit keeps
    them (fsutil chowns first, then sets the mode)."""
    if not (d.section == "files" and d.change == "changed" and d.attribute == "mode"):
        return False
    a, b = int(d.a, 8), int(d.b, 8)
    return bool(b & 0o6000) and a == b & ~0o6000 and any(line.startswith(("COPY", "ADD")) for line in case.lines)


def _wildcard_links(case: Case, d: Any) -> bool:
    """Files a single wildcard source matched that are hardlinks of each other: BuildKit copies all of a
    wildcard's matches with one copier, which keeps them linked; buildah 1.28 copies each match apart."""
    if not (d.section == "files" and d.attribute == "hardlinks" and d.a == [] and d.b):
        return False
    return any(all(p.startswith(dest.rstrip("/") + "/") for p in d.b) for dest in case.wild_dests)


def _existing_parent(case: Case, d: Any) -> bool:
    """A directory a COPY --parents passes through: buildah, given the pruned tree's contents, sets an existing
    one's owner and mode like any directory it copies; BuildKit (fsutil createParentDirs) leaves an existing
    parent's owner alone (it only chmods it to the source's mode, which kiln does not do: docs/conformance.md)."""
    return (
        d.section == "files"
        and d.change == "changed"
        and d.attribute in ("uid", "gid", "mode")
        and (d.where in case.parent_dirs)
    )


def known_buildah(case: Case, differences: Iterable[Any]) -> list[Any]:
    """The differences left after dropping those docs/conformance.md explains as buildah's (A is buildah)."""
    from harness import drop_buildah_leftovers

    return [
        d for d in drop_buildah_leftovers(tuple(differences))
        if not (
            _chmod_created_dir(case, d) or _setid_lost(case, d) or _wildcard_links(case, d) or _existing_parent(case, d)
        )
    ]  # fmt: skip


# --- running many -----------------------------------------------------------------------------------------


def summarize(outcomes: list[Outcome]) -> str:
    bad = [o for o in outcomes if not o.same]
    secs = sum(o.seconds for o in outcomes)
    bugs = sum(bool(o.open_bugs) for o in outcomes)
    return (
        f"{len(outcomes)} cases, {len(bad)} with differences, {bugs} hitting an open kiln bug, {secs:.0f} s of builds"
    )


def report(outcome: Outcome) -> str:
    return outcome.case.describe() + "status: " + repr(outcome.status) + "\n" + "\n".join(outcome.differences)


Check = Callable[[Case], Outcome]
