"""kaniko's way of working: the stage's root is kiln's own "/" (a container without the privilege to mount).

The base image's layers are extracted onto / (skipping what must not be touched), RUN runs directly in it
(kiln.sandbox.inplace), and each step's changes are found by walking / with everything that is not the
image's left out: kernel filesystems, every mount point (the container runtime's volumes, secrets,
/etc/resolv.conf ...), kiln's work directory, kiln's own installation (its Python and its package), the
build context, and the marker file below.

Safety: this rewrites the root it runs in, so it is refused unless two things hold:
- kiln is inside a container or a chroot: /.dockerenv or /run/.containerenv exists, or the ``container`` or
  ``KUBERNETES_SERVICE_HOST`` environment variable is set, or kiln's / is not PID 1's root;
- and the root declares itself disposable with the file ``/.kiln-in-place`` (made in the image kiln runs
  from). The first alone is not enough: a development container has /.dockerenv too, and its / is precious.
kiln's installation must live in directories of its own, since a base image may replace anything in /usr,
/lib, ...; kaniko's directory /kaniko (its executor, its registry credentials) is left alone too.

Several stages, one "/": stages are built one after another, as kaniko does. Before a stage starts, the stage
that held / so far is handed over to a root of kiln's own (SavedStageRoot: laid out again from its image's
layers under kiln's work directory, only if a later stage reads it with COPY --from or RUN --mount from=), and
everything in / that is not left alone is removed, so that the next stage starts from its base alone.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

import kiln
from kiln.engine.options import BuildOptions
from kiln.engine.rootfs import FlatRoot, LayerOpener
from kiln.errors import UsageError
from kiln.layers.extract import extract_layer
from kiln.rootfs.paths import resolve_in_root
from kiln.snapshot.changes import image_path
from kiln.snapshot.ignore import IgnoreRules
from kiln.snapshot.walk import SnapshotMode

T = TypeVar("T")

MARKER = ".kiln-in-place"
FLAG = "--in-place"

# Directories images fill: kiln's installation may not be (or contain) one of them, since it is never
# snapshotted nor overwritten, and a Dockerfile's changes there would be lost.
_SHARED_DIRS = frozenset(
    image_path(p)
    for p in (
        "/", "/bin", "/boot", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/opt", "/root", "/sbin",
        "/srv", "/tmp", "/usr", "/usr/bin", "/usr/lib", "/usr/lib64", "/usr/libexec", "/usr/local",
        "/usr/local/bin", "/usr/local/lib", "/usr/local/sbin", "/usr/sbin", "/usr/share", "/var", "/var/lib",
    )
)  # fmt: skip


def container_evidence(
    root: Path = Path("/"), environ: Mapping[str, str] = os.environ, proc: Path = Path("/proc")
) -> str | None:
    """What shows that kiln runs inside a container or a chroot, or None."""
    for name in (".dockerenv", "run/.containerenv"):
        if (root / name).exists():
            return f"/{name} exists"
    for var in ("container", "KUBERNETES_SERVICE_HOST"):
        if environ.get(var):
            return f"${var} is set"
    try:
        mine, init = os.stat(root), os.stat(proc / "1" / "root")
    except OSError:
        return None  # PID 1's root is not ours to look at: no evidence either way
    if (mine.st_dev, mine.st_ino) != (init.st_dev, init.st_ino):
        return "kiln's / is not PID 1's root"
    return None


def in_place_refusal(
    root: Path = Path("/"), environ: Mapping[str, str] = os.environ, proc: Path = Path("/proc")
) -> str | None:
    """Why a build in place must not run here, or None when it may."""
    evidence = container_evidence(root, environ, proc)
    if evidence is None:
        return "kiln is not inside a container or a chroot: a build in place would rewrite this machine's own /"
    if not (root / MARKER).is_file():
        return (
            f"a build in place rewrites / ({evidence}, so this looks like a container), but /{MARKER} is "
            f"missing: create it in the image kiln runs from to declare its root disposable"
        )
    return None


# kaniko's own directory: images that run kaniko's pipelines keep the executor and /kaniko/.docker there.
KANIKO_DIR = "/kaniko"


def kiln_installation() -> list[str]:
    """kiln's own files: its Python (the venv and the interpreter's prefix) and its package."""
    dirs = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, os.path.dirname(kiln.__file__)}
    return sorted(os.path.realpath(d) for d in dirs)


def _check_own_dir(path: str, what: str) -> None:
    rel = image_path(os.path.realpath(path))
    if rel in _SHARED_DIRS or any(shared.startswith(rel + "/") for shared in _SHARED_DIRS if rel):
        raise UsageError(
            f"{what} is in {'/' + rel}, which images use too: for a build in place it must live in a directory "
            f"of its own (kiln never snapshots nor overwrites it)",
            FLAG,
        )


def in_place_ignore(
    opts: BuildOptions,
    context_dir: Path | None,
    install: Iterable[str] | None = None,
    mountinfo: Path = Path("/proc/self/mountinfo"),
) -> IgnoreRules:
    """What a build in place leaves alone: see the module docstring."""
    own = list(kiln_installation() if install is None else install)
    for path in own:
        _check_own_dir(path, "kiln's installation")
    extra = [*own, "/" + MARKER, KANIKO_DIR]
    if context_dir is not None:
        _check_own_dir(str(context_dir), "the build context")
        extra.append(os.path.realpath(context_dir))
    return IgnoreRules.for_root(
        Path("/"),
        ignore_paths=(*opts.ignore_paths, *extra),
        work_dir=opts.kiln_dir,
        ignore_var_run=opts.ignore_var_run,
        mountinfo=mountinfo,
    )


def _ancestors_of(paths: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for p in paths:
        while "/" in p:
            p = p.rpartition("/")[0]
            out.add(p)
    return out


class InPlaceRoot(FlatRoot):
    """The stage's root is "/": layers extracted onto it, changes found by walking it (see the module)."""

    def __init__(self, ignore: IgnoreRules, mode: SnapshotMode) -> None:
        # No FlatRoot.__init__: it would make a directory of its own.
        self.workdir = Path("/")
        self.path = Path("/")
        self.ignore = ignore
        self.mode = mode
        self._snap = None
        self._walker = None
        self._above = _ancestors_of(ignore.paths)

    def skip(self, path: str) -> bool:
        return bool(path) and (path in self._above or self.ignore.is_ignored(path))

    def add_layer(self, diff_id: str, open_blob: LayerOpener) -> None:
        with open_blob() as blob:
            extract_layer(blob, self.path, mode="apply", label=diff_id, skip=self.skip)

    def covers_foreign(self, target: str) -> str | None:
        path = image_path(os.path.realpath(resolve_in_root(self.path, target)))
        if not path:
            return "it would cover all of /"
        if self.skip(path):
            return "in place it would cover kiln's own files or the container's (kiln, its work directory, the " \
                   "context, a mount of the container)"
        return None

    def clear(self) -> int:
        """Remove everything in / that is not left alone; returns how many entries went. Never crosses into
        another filesystem (a mount kiln was not told about stays, with all below it)."""
        return _clear_dir(self.path, "", os.lstat(self.path).st_dev, self.ignore.is_ignored, self._above)

    def close(self) -> None:
        pass


def _clear_dir(directory: Path, prefix: str, device: int, keep: Callable[[str], bool],
               above: set[str]) -> int:
    """Remove what is in `directory` except what `keep` says; recurse into the directories above kept ones."""
    removed = 0
    with os.scandir(directory) as it:
        entries = list(it)
    for entry in entries:
        rel = prefix + entry.name
        st = entry.stat(follow_symlinks=False)
        if keep(rel) or st.st_dev != device:
            continue
        if stat.S_ISDIR(st.st_mode):
            removed += _clear_dir(Path(entry.path), rel + "/", device, keep, above)
            if rel not in above:
                os.rmdir(entry.path)
                removed += 1
        else:
            os.unlink(entry.path)
            removed += 1
    return removed


class SavedStageRoot(FlatRoot):
    """A stage built in place, after / has moved on: its image laid out again under kiln's work directory, the
    first time a later stage reads it (COPY --from, RUN --mount from=)."""

    def __init__(self, workdir: Path, ignore: IgnoreRules, mode: SnapshotMode,
                 layers: list[tuple[str, LayerOpener]]) -> None:
        super().__init__(workdir, ignore, mode)
        self._pending = layers

    def view(self) -> Path:
        while self._pending:
            diff_id, opener = self._pending.pop(0)
            self.add_layer(diff_id, opener)
        return self.path


def make_in_place_root(opts: BuildOptions, context_dir: Path | None, walk: SnapshotMode, *,
                       clear: bool) -> InPlaceRoot:
    """The root of a stage built in place, once every check has passed (nothing is written before). clear:
    another stage held / until now; its files go first."""
    refusal = in_place_refusal()
    if refusal is not None:
        raise UsageError(refusal, FLAG)
    root = InPlaceRoot(in_place_ignore(opts, context_dir), walk)
    if clear:
        root.clear()
    return root
