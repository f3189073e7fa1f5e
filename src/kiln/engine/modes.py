"""How a build lays out its roots and runs its steps, decided once at its start and then only read.

Three kinds of root: overlay (each step's changes are an overlay upper dir; the default where the kernel allows
it), flat (one directory, changes found by walking it; --snapshot-mode full/redo/time, or no overlay here), and
in place (kaniko's: the stage's root is kiln's own /, walked; --in-place). The RUN runner follows the root:
runc for overlay and flat roots, kiln's own process for in place.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from kiln.engine.inplace import MARKER, in_place_refusal
from kiln.engine.options import BuildOptions
from kiln.errors import UsageError
from kiln.sandbox import RunSpec, run_in_sandbox
from kiln.sandbox.inplace import run_in_place
from kiln.sandbox.runc import Deletions, can_create_containers
from kiln.snapshot.walk import SnapshotMode
from kiln.store.overlaymount import overlay_supported

RootKind = Literal["overlay", "flat", "in-place"]
RunFunction = Callable[[RunSpec, "BinaryIO | None"], int]


@dataclass(frozen=True)
class BuildModes:
    roots: RootKind  # the kind of a stage's root
    walk: SnapshotMode  # how flat and in-place roots find a step's changes
    single_snapshot: bool  # one layer per stage, taken at its end

    @property
    def in_place(self) -> bool:
        return self.roots == "in-place"

    @property
    def image_roots(self) -> RootKind:
        """Roots of images read by COPY --from: in place there is no mount either, so they are flat."""
        return "flat" if self.roots == "in-place" else self.roots

    def runner(self, deletions: Deletions) -> RunFunction:
        """What runs a RUN step: kiln's own process in place, else runc (its finished containers go through
        `deletions`)."""
        return run_in_place if self.in_place else functools.partial(run_in_sandbox, deletions=deletions)

    def describe(self) -> str:
        return "overlay" if self.roots == "overlay" else f"{self.roots}, walking ({self.walk.value})"


def choose_modes(opts: BuildOptions, probe_dir: Path, notice: Callable[[str], None] = lambda _m: None) -> BuildModes:
    """The build's modes from its options and what this machine allows (overlay is probed with a real mount).
    Where kiln cannot create containers but its root declares itself disposable (kiln's own image, in a pod
    without CAP_SYS_ADMIN), the build is in place, as with --in-place, and `notice` says so."""
    walk = SnapshotMode(opts.snapshot_mode if opts.snapshot_mode in ("full", "redo", "time") else "full")
    if opts.in_place:
        return BuildModes("in-place", walk, opts.single_snapshot)
    if opts.snapshot_mode != "overlay" and not can_create_containers() and in_place_refusal() is None:
        notice(f"kiln cannot create containers here (no CAP_SYS_ADMIN) and /{MARKER} marks this root as "
               "disposable: building in place (--in-place)")
        return BuildModes("in-place", walk, opts.single_snapshot)
    if opts.snapshot_mode in ("full", "redo", "time"):
        return BuildModes("flat", walk, opts.single_snapshot)
    supported = os.geteuid() == 0 and overlay_supported(probe_dir)
    if opts.snapshot_mode == "overlay" and not supported:
        raise UsageError("overlay mounts are not allowed here; use --snapshot-mode=full", "--snapshot-mode")
    return BuildModes("overlay" if supported else "flat", walk, opts.single_snapshot)
