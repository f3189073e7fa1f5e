"""What a build step changed in a rootfs: the value every snapshotter produces and layers/ turns into a tar."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kiln.errors import SnapshotError


@dataclass(frozen=True)
class Changes:
    """The paths a step added or modified and the paths it deleted.

    root is the directory the content of `paths` is read from (an overlay upper dir, or the rootfs itself).
    Paths are image-relative ("usr/bin/x", no leading slash), sorted, without duplicates: exactly what
    kiln.layers.tarwriter.write_layer_tar takes. Deletions name only the topmost deleted path.
    """

    root: Path
    paths: tuple[str, ...]
    deletions: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.paths and not self.deletions


class Snapshotter(Protocol):
    def begin(self) -> None:
        """Record the state before a step."""

    def changes(self, declared: Iterable[str] | None) -> Changes:
        """What the step changed since begin().

        declared: the paths the step wrote itself (COPY, ADD, WORKDIR); they always enter the result, changed
        bytes or not, a directory with everything beneath it. RUN passes None and the snapshotter finds out.
        """
        ...


def image_path(path: str) -> str:
    """An image path ("/usr/bin/x", "usr//bin/./x") in the form Changes uses ("usr/bin/x"); "" is the root."""
    norm = posixpath.normpath("/" + path).lstrip("/")
    if norm.startswith(".."):
        # normpath of "/.." is "/", so this cannot happen; kept as a guard against future edits.
        raise SnapshotError(f"path {path!r} leaves the root")
    return "" if norm == "." else norm


def parent_of(path: str) -> str:
    return path.rpartition("/")[0]


def ancestors(path: str) -> Iterable[str]:
    """The proper ancestors of an image path, nearest first, excluding the root."""
    while "/" in path:
        path = path.rpartition("/")[0]
        yield path


def expand_declared(root: Path, declared: Iterable[str]) -> set[str]:
    """The declared paths as they exist under root, each directory with everything beneath it."""
    found: set[str] = set()
    for raw in declared:
        rel = image_path(raw)
        if rel == "":
            raise SnapshotError("a step declared the whole root as written; declare the paths it wrote")
        full = root / rel
        if not os.path.lexists(full):
            raise SnapshotError(f"declared path /{rel} does not exist after the step")
        found.add(rel)
        if os.path.isdir(full) and not os.path.islink(full):
            for dirpath, dirnames, filenames in os.walk(full):
                base = os.path.relpath(dirpath, root)
                found.update(f"{base}/{name}" for name in dirnames)
                found.update(f"{base}/{name}" for name in filenames)
    return found


def prune_nested(deletions: Iterable[str]) -> list[str]:
    """Deletions without those beneath another deleted path, sorted."""
    out: list[str] = []
    kept: set[str] = set()
    # Sorted order puts "a" before "a/b" but also "a-b" between them; the ancestor check handles that.
    for path in sorted(set(deletions)):
        if any(a in kept for a in ancestors(path)):
            continue
        kept.add(path)
        out.append(path)
    return out
