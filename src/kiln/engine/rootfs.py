"""A stage's root filesystem, and how a step's changes are captured from it.

Two kinds, one interface:
- OverlayRoot (the default where overlay mounts are allowed): the image's layers, unpacked once in the layer
  store, are the lower directories; each writing step gets a fresh upper directory, which is the change itself,
  and then joins the lowers without a copy.
- FlatRoot (no overlay, or kaniko's walking snapshot modes): the layers are extracted into one directory and a
  step's changes are found by walking it.
"""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import BinaryIO, TypeVar

from kiln.layers.extract import extract_layer
from kiln.oci.config import chain_id
from kiln.snapshot.changes import Changes, expand_declared
from kiln.snapshot.ignore import IgnoreRules
from kiln.snapshot.overlay import OverlaySnapshotter
from kiln.snapshot.walk import SnapshotMode, WalkSnapshotter
from kiln.store.layerstore import LayerStore
from kiln.store.overlaymount import mount_overlay, unmount

T = TypeVar("T")
LayerOpener = Callable[[], BinaryIO]


class StageRoot(ABC):
    """The directory steps run in and write to (``path``), and the capture of each step's changes."""

    path: Path

    @abstractmethod
    def begin_step(self) -> None:
        """Before a step that writes to the root."""

    @abstractmethod
    def finish_step(self, declared: Iterable[str] | None, make_layer: Callable[[Changes], T]) -> T | None:
        """After it: find the changes (declared paths always included) and turn them into a layer while they can
        still be read. Returns None, and keeps nothing, when the step changed nothing."""

    @abstractmethod
    def add_layer(self, diff_id: str, open_blob: LayerOpener) -> None:
        """Lay one more image layer on top (a base layer, or a cached one)."""

    def add_layers(self, layers: Sequence[tuple[str, LayerOpener]]) -> None:
        """Lay a base image's layers, bottom first. A root that can unpack several at once overrides this."""
        for diff_id, open_blob in layers:
            self.add_layer(diff_id, open_blob)

    @abstractmethod
    def view(self) -> Path:
        """The root, ready to be read (COPY --from, RUN --mount from=) or written."""

    @abstractmethod
    def close(self) -> None:
        """Unmount; the directories stay until the work directory is cleaned."""

    def covers_foreign(self, target: str) -> str | None:
        """Why a RUN --mount at `target` would cover something that is not the image's, or None. Only a root
        kiln shares with other things (in place) has any."""
        return None


class OverlayRoot(StageRoot):
    def __init__(self, workdir: Path, store: LayerStore, ignore: IgnoreRules) -> None:
        self.workdir = workdir
        self.store = store
        self.ignore = ignore
        self.path = workdir / "root"
        self.lowers: list[Path] = []  # top first, as overlayfs wants them
        self._chain_ids: list[str] = []
        self._mounted = False
        self._upper: Path | None = None
        self._steps = 0
        self.path.mkdir(parents=True, exist_ok=True)

    def _chain_id_with(self, diff_id: str) -> str:
        return chain_id(self._chain_ids[-1] if self._chain_ids else None, diff_id)

    def _push(self, layer_dir: Path, diff_id: str) -> None:
        self.lowers.insert(0, layer_dir)
        self._chain_ids.append(self._chain_id_with(diff_id))

    def add_layer(self, diff_id: str, open_blob: LayerOpener) -> None:
        self._unmount()
        # The layers below go along: a layer written through a lower symlink or hardlinking a lower file unpacks
        # as it would onto them (the flat root's result), not as a tree of its own.
        layer = self.store.ensure_layer(self._chain_id_with(diff_id), open_blob, diff_id=diff_id, lowers=self.lowers)
        self._push(layer, diff_id)

    def _mount(self) -> None:
        if self._mounted:
            return
        self._steps += 1
        upper = self.workdir / f"u{self._steps}"
        work = self.workdir / f"w{self._steps}"
        for d in (upper, work):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
        lowers = self.lowers or [self._empty_lower()]
        mount_overlay(lowers, upper, work, self.path)
        self._upper = upper
        self._mounted = True

    def _empty_lower(self) -> Path:
        # overlayfs needs at least one lower directory; a stage FROM scratch starts on an empty one.
        empty = self.workdir / "empty"
        empty.mkdir(exist_ok=True)
        return empty

    def _unmount(self) -> None:
        if self._mounted:
            unmount(self.path)
            self._mounted = False

    def view(self) -> Path:
        """The root, mounted, for reading (COPY --from) or writing."""
        self._mount()
        return self.path

    def begin_step(self) -> None:
        self._mount()
        assert self._upper is not None
        OverlaySnapshotter(self._upper, self.lowers, merged=self.path, ignore=self.ignore).begin()

    def finish_step(self, declared: Iterable[str] | None, make_layer: Callable[[Changes], T]) -> T | None:
        assert self._mounted and self._upper is not None
        upper = self._upper
        snap = OverlaySnapshotter(upper, self.lowers, merged=self.path, ignore=self.ignore)
        changes = snap.changes(declared)
        if changes.empty:
            self._unmount()
            self._discard(upper)
            return None
        layer = make_layer(changes)
        self._unmount()
        diff_id = getattr(layer, "diff_id")  # noqa: B009 - every layer kind carries its diff_id
        self._push(self.store.adopt(self._chain_id_with(diff_id), upper), diff_id)
        self._upper = None
        shutil.rmtree(self.workdir / f"w{self._steps}", ignore_errors=True)
        return layer

    def _discard(self, upper: Path) -> None:
        shutil.rmtree(upper, ignore_errors=True)
        shutil.rmtree(self.workdir / f"w{self._steps}", ignore_errors=True)
        self._upper = None

    def close(self) -> None:
        self._unmount()


class FlatRoot(StageRoot):
    def __init__(self, workdir: Path, ignore: IgnoreRules, mode: SnapshotMode) -> None:
        self.workdir = workdir
        self.path = workdir / "rootfs"
        self.path.mkdir(parents=True, exist_ok=True)
        self.ignore = ignore
        self.mode = mode
        self._snap: WalkSnapshotter | None = None
        self._walker: WalkSnapshotter | None = None

    def add_layer(self, diff_id: str, open_blob: LayerOpener) -> None:
        with open_blob() as blob:
            extract_layer(blob, self.path, mode="apply")

    def view(self) -> Path:
        return self.path

    def begin_step(self) -> None:
        self._snap = None

    def begin_discovery(self) -> None:
        """Before a RUN: record the tree, so its changes can be found afterwards. One walker for the root's
        life: its content hashes carry over, so a step's walks read only the files that changed since."""
        if self._walker is None:
            self._walker = WalkSnapshotter(self.path, mode=self.mode, ignore=self.ignore)
        self._snap = self._walker
        self._snap.begin()

    def finish_step(self, declared: Iterable[str] | None, make_layer: Callable[[Changes], T]) -> T | None:
        if declared is not None and self._snap is None:
            # COPY, ADD and WORKDIR know what they wrote: no walk needed.
            changes = Changes(self.path, tuple(sorted(expand_declared(self.path, declared))), ())
        else:
            assert self._snap is not None, "begin_discovery() must precede a step that declares nothing"
            changes = self._snap.changes(declared)
        self._snap = None
        # A step that declares a directory above an ignored path (COPY x /etc/ with /etc/resolv.conf mounted
        # in place, or an --ignore-path) brings in all below it: what is not the image's stays out.
        ignored = self.ignore.is_ignored
        changes = Changes(
            changes.root,
            tuple(p for p in changes.paths if not ignored(p)),
            tuple(p for p in changes.deletions if not ignored(p)),
        )
        if changes.empty:
            return None
        return make_layer(changes)

    def close(self) -> None:
        pass
