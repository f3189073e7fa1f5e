from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest

from kiln.snapshot.ignore import IgnoreRules
from kiln.store.mountinfo import mount_points_under


def test_defaults_and_prefix_semantics(tmp_path: Path) -> None:
    rules = IgnoreRules.for_root(tmp_path, mountinfo=None)
    assert rules.paths == frozenset({"proc", "sys", "dev", "var/run"})
    for path in ("proc", "/proc", "proc/1/stat", "dev/null", "/var/run/x.pid", "sys/"):
        assert rules.is_ignored(path), path
    for path in ("", "/", "process", "devices/x", "var", "var/running", "usr/proc"):
        assert not rules.is_ignored(path), path


def test_var_run_can_be_kept_and_extra_paths(tmp_path: Path) -> None:
    rules = IgnoreRules.for_root(tmp_path, ignore_paths=["/opt/cache/", "tmp//x"], ignore_var_run=False,
                                 mountinfo=None)  # fmt: skip
    assert not rules.is_ignored("var/run/x")
    assert rules.is_ignored("opt/cache/a/b")
    assert rules.is_ignored("tmp/x")
    assert not rules.is_ignored("opt/cache2")


def test_work_dir_only_if_inside_root(tmp_path: Path) -> None:
    inside = IgnoreRules.for_root(tmp_path, work_dir=tmp_path / "kiln" / "work", mountinfo=None)
    assert inside.is_ignored("kiln/work/x") and not inside.is_ignored("kiln")
    outside = IgnoreRules.for_root(tmp_path / "root", work_dir=tmp_path / "work", mountinfo=None)
    assert not any(p.startswith("..") or p == "work" for p in outside.paths)


def test_mountinfo_parsing(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
        "40 27 0:30 / /build/root rw - overlay overlay rw\n"
        "41 40 0:31 / /build/root/proc rw - proc proc rw\n"
        "42 40 0:32 / /build/root/my\\040dir rw - tmpfs tmpfs rw\n"
        "43 40 0:33 / /build/rootless rw - tmpfs tmpfs rw\n"
    )
    assert mount_points_under(Path("/build/root"), mountinfo) == ["proc", "my dir"]
    rules = IgnoreRules.for_root(Path("/build/root"), mountinfo=mountinfo)
    assert rules.is_ignored("my dir/x")


@pytest.mark.root
def test_real_mount_inside_root_is_ignored(tmp_path: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    point = tmp_path / "mnt" / "cache"
    point.mkdir(parents=True)
    assert libc.mount(b"tmpfs", os.fsencode(point), b"tmpfs", 0, b"size=1m") == 0
    try:
        rules = IgnoreRules.for_root(tmp_path)
        assert rules.is_ignored("mnt/cache/anything")
        assert not rules.is_ignored("mnt")
    finally:
        assert libc.umount2(os.fsencode(point), 2) == 0
