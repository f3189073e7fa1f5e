"""After a step, nothing of the sandbox is left in the rootfs: not on a directory, not in an overlay's upper."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.sandbox import BindMount, RunSpec, TmpfsMount, run_in_sandbox

pytestmark = pytest.mark.root

Entry = tuple[int, int, int, int, int, int, str]


def listing(root: Path, dir_nlink: bool = True) -> dict[str, Entry]:
    """Every path below root with type+mode, uid, gid, size (files), nlink, mtime, link target.

    dir_nlink=False: overlayfs reports nlink 1 for a directory merged from upper and lower, so a copied-up
    directory's link count changes though nothing in it did (and a layer tar does not record it)."""
    out: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in ["."] + dirnames + filenames:
            p = os.path.normpath(os.path.join(dirpath, name))
            st = os.lstat(p)
            target = os.readlink(p) if stat.S_ISLNK(st.st_mode) else ""
            size = st.st_size if stat.S_ISREG(st.st_mode) else 0
            nlink = st.st_nlink if dir_nlink or not stat.S_ISDIR(st.st_mode) else 0
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_gid, size, nlink, st.st_mtime_ns, target)
    return out


def dir_times(root: Path, *names: str) -> list[tuple[int, int]]:
    return [(os.lstat(root / n).st_atime_ns, os.lstat(root / n).st_mtime_ns) for n in names]


def complete_mount_points(root: Path) -> None:
    for d in ("proc", "dev", "sys"):
        (root / d).mkdir()
    (root / "etc" / "hosts").write_text("")
    (root / "etc" / "resolv.conf").write_text("")


@pytest.fixture
def overlay(tmp_path: Path, rootfs: Path) -> Iterator[tuple[Path, Path, Path]]:
    """(lower, upper, merged): the busybox rootfs as the lower dir of an overlay mounted for the test."""
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={rootfs},upperdir={upper},workdir={work}", str(merged)], check=True)
    try:
        yield rootfs, upper, merged
    finally:
        subprocess.run(["umount", str(merged)], check=False)


def run_noop(root: Path, **kwargs: object) -> None:
    assert run_in_sandbox(RunSpec(root, ("true",), **kwargs), None) == 0  # type: ignore[arg-type]


def test_directory_rootfs_is_unchanged_by_a_noop_step(rootfs: Path) -> None:
    listing(rootfs)  # the first read of each directory moves its atime; settle that before measuring
    times = dir_times(rootfs, ".", "etc")
    before = listing(rootfs)
    run_noop(rootfs, mounts=(TmpfsMount("/cache"), BindMount(Path("/etc/os-release"), "/etc/x/os-release")))
    assert dir_times(rootfs, ".", "etc") == times
    assert listing(rootfs) == before
    assert not (rootfs / "proc").exists() and not (rootfs / "etc" / "hosts").exists()


def test_directory_rootfs_with_all_mount_points_is_unchanged(rootfs: Path) -> None:
    complete_mount_points(rootfs)
    listing(rootfs)
    times = dir_times(rootfs, ".", "etc", "proc", "dev", "sys")
    before = listing(rootfs)
    run_noop(rootfs, network="none")
    assert dir_times(rootfs, ".", "etc", "proc", "dev", "sys") == times
    assert listing(rootfs) == before


def test_overlay_upper_holds_only_unchanged_copies_of_stub_parents(overlay: tuple[Path, Path, Path]) -> None:
    lower, upper, merged = overlay
    before = listing(merged, dir_nlink=False)
    run_noop(merged)
    assert listing(merged, dir_nlink=False) == before
    subprocess.run(["umount", str(merged)], check=True)
    up, low = listing(upper, dir_nlink=False), listing(lower, dir_nlink=False)
    del up["."]  # the upper dir itself is the merged root; its times were restored (checked via `before`)
    # /etc/hosts and /etc/resolv.conf needed stubs: creating them copied /etc up. Its metadata (mtime
    # included) must equal the lower's, so a snapshot of the upper dir can tell it is unchanged.
    assert set(up) <= {"etc"}
    for path, entry in up.items():
        assert entry == low[path]


def test_overlay_upper_is_empty_when_the_rootfs_has_its_mount_points(rootfs: Path, tmp_path: Path) -> None:
    complete_mount_points(rootfs)
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={rootfs},upperdir={upper},workdir={work}", str(merged)], check=True)
    try:
        run_noop(merged)
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    assert os.listdir(upper) == []
