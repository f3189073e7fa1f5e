"""Fixtures the extraction tests share."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, Path]:
    """A root to extract onto (tmp/a/b/root: room for ".." to climb) and a sibling "outside" directory with a
    victim file in it, which no extraction may touch."""
    root = tmp_path / "a/b/root"
    root.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("precious")
    return root, outside
