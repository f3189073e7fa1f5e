"""Mount stubs are removed after a step and their parents get their times back."""

from __future__ import annotations

import os
from pathlib import Path

from kiln.sandbox.stubs import MountStubs

OLD = (1_600_000_000_000_000_000, 1_500_000_000_000_000_000)  # (atime, mtime) in ns


def _times(p: Path) -> tuple[int, int]:
    st = os.lstat(p)
    return st.st_atime_ns, st.st_mtime_ns


def test_stubs_and_missing_parents_are_removed_and_parent_times_restored(tmp_path: Path) -> None:
    os.utime(tmp_path, ns=OLD)
    stubs = MountStubs()
    stubs.add(tmp_path / "etc" / "hosts", is_dir=False)
    stubs.add(tmp_path / "etc" / "resolv.conf", is_dir=False)
    stubs.add(tmp_path / "proc", is_dir=True)
    assert (tmp_path / "etc" / "hosts").is_file() and (tmp_path / "proc").is_dir()
    assert _times(tmp_path)[1] != OLD[1]
    stubs.sealed()
    assert stubs.remove() == []
    assert _times(tmp_path) == OLD  # before listing: reading a directory updates its atime
    assert os.listdir(tmp_path) == []


def test_existing_paths_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    os.utime(tmp_path, ns=OLD)
    stubs = MountStubs()
    stubs.add(tmp_path / "proc", is_dir=True)
    stubs.sealed()
    stubs.remove()
    assert (tmp_path / "proc").is_dir()
    assert _times(tmp_path) == OLD


def test_a_parent_the_command_changed_keeps_the_command_times(tmp_path: Path) -> None:
    os.utime(tmp_path, ns=OLD)
    stubs = MountStubs()
    stubs.add(tmp_path / "sys", is_dir=True)
    stubs.sealed()
    (tmp_path / "made-by-command").write_text("x")
    commanded = (1_700_000_000_000_000_000, 1_700_000_000_000_000_000)
    os.utime(tmp_path, ns=commanded)
    stubs.remove()
    assert _times(tmp_path) == commanded
    assert os.listdir(tmp_path) == ["made-by-command"]


def test_a_stub_directory_the_command_wrote_into_is_kept(tmp_path: Path) -> None:
    stubs = MountStubs()
    stubs.add(tmp_path / "etc" / "hosts", is_dir=False)
    stubs.sealed()
    (tmp_path / "etc" / "motd").write_text("hello")
    assert stubs.remove() == [tmp_path / "etc"]
    assert os.listdir(tmp_path / "etc") == ["motd"]


def test_removal_without_seal_still_restores_original_times(tmp_path: Path) -> None:
    os.utime(tmp_path, ns=OLD)
    stubs = MountStubs()
    stubs.add(tmp_path / "dev", is_dir=True)
    stubs.remove()
    assert _times(tmp_path) == OLD
    assert os.listdir(tmp_path) == []
