"""resolve_in_root never leaves the root, whatever the symlinks say."""

from __future__ import annotations

import os
from pathlib import Path

from kiln.rootfs.paths import resolve_in_root


def test_plain_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    assert resolve_in_root(tmp_path, "/a") == tmp_path / "a"
    assert resolve_in_root(tmp_path, "/a/b/c") == tmp_path / "a" / "b" / "c"
    assert resolve_in_root(tmp_path, "/") == tmp_path
    assert resolve_in_root(tmp_path, "/../../x") == tmp_path / "x"


def test_absolute_symlink_restarts_at_root(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink("/real", tmp_path / "link")
    os.symlink("/etc", tmp_path / "hostetc")
    assert resolve_in_root(tmp_path, "/link/f") == tmp_path / "real" / "f"
    assert resolve_in_root(tmp_path, "/hostetc/passwd") == tmp_path / "etc" / "passwd"


def test_relative_symlink_cannot_climb_out(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    os.symlink("../../../../etc", tmp_path / "d" / "up")
    assert resolve_in_root(tmp_path, "/d/up/hosts") == tmp_path / "etc" / "hosts"


def test_dangling_symlink_resolves_to_its_target_inside_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    os.symlink("../run/resolv.conf", tmp_path / "etc" / "resolv.conf")
    assert resolve_in_root(tmp_path, "/etc/resolv.conf") == tmp_path / "run" / "resolv.conf"
