"""Fixtures for snapshot tests: a real overlay mount over lower layers built in a temp dir."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from snapshot_scenarios import Overlay

from kiln.store.overlaymount import mount_overlay, unmount


@pytest.fixture
def make_overlay(tmp_path: Path) -> Iterator[Callable[[list[Path]], Overlay]]:
    """make_overlay(lowers) mounts a fresh overlay on them; unmounted at teardown."""
    mounted: list[Path] = []

    def make(lowers: list[Path]) -> Overlay:
        n = len(mounted)
        ov = Overlay(lowers, tmp_path / f"upper{n}", tmp_path / f"work{n}", tmp_path / f"merged{n}")
        for d in (ov.upper, ov.work, ov.merged):
            d.mkdir()
        mount_overlay(lowers, ov.upper, ov.work, ov.merged)
        mounted.append(ov.merged)
        return ov

    try:
        yield make
    finally:
        for target in reversed(mounted):
            unmount(target, lazy=True)
        for n in range(len(mounted)):
            shutil.rmtree(tmp_path / f"work{n}", ignore_errors=True)
