from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from snapshot_scenarios import CAP_XATTR, DELETIONS, FULL_PATHS, Overlay, apply_step, build_base

from kiln.errors import SnapshotError
from kiln.snapshot.ignore import IgnoreRules
from kiln.snapshot.overlay import OverlaySnapshotter

pytestmark = pytest.mark.root

DEFAULT_IGNORE = IgnoreRules.for_root(Path("/nonexistent-root"), mountinfo=None)


def whiteout(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(0, 0))


def test_scenario(tmp_path: Path, make_overlay: Callable[[list[Path]], Overlay]) -> None:
    lower = tmp_path / "lower"
    lower.mkdir()
    build_base(lower)
    ov = make_overlay([lower])
    snap = OverlaySnapshotter(ov.upper, ov.lowers, merged=ov.merged, ignore=DEFAULT_IGNORE)
    snap.begin()
    apply_step(ov.merged)
    changes = snap.changes(None)
    assert changes.root == ov.upper
    assert changes.paths == FULL_PATHS
    assert changes.deletions == DELETIONS
    # The upper really has what the test relies on: the kernel made redo opaque, quiet/deep a copy-up.
    assert os.getxattr(ov.upper / "redo", "trusted.overlay.opaque") == b"y"
    assert (ov.upper / "quiet" / "deep").is_dir()
    assert os.getxattr(ov.upper / "cap", "security.capability") == CAP_XATTR


def test_declared_paths_always_enter(tmp_path: Path, make_overlay: Callable[[list[Path]], Overlay]) -> None:
    lower = tmp_path / "lower"
    lower.mkdir()
    build_base(lower)
    ov = make_overlay([lower])
    snap = OverlaySnapshotter(ov.upper, ov.lowers, merged=ov.merged)
    snap.begin()
    (ov.merged / "mod.txt").write_bytes(b"old")  # same bytes written again: copied up, mtime moved
    changes = snap.changes(["/mod.txt"])
    assert changes == type(changes)(ov.upper, ("mod.txt",), ())

    # A declared directory that exists only in the lowers: its whole subtree, read from the merged view.
    snap2 = OverlaySnapshotter(ov.upper, ov.lowers, merged=ov.merged)
    changes = snap2.changes(["quiet"])
    assert changes.root == ov.merged
    assert changes.paths == ("mod.txt", "quiet", "quiet/deep", "quiet/deep/q")


def test_declared_missing_is_an_error(tmp_path: Path, make_overlay: Callable[[list[Path]], Overlay]) -> None:
    lower = tmp_path / "lower"
    lower.mkdir()
    ov = make_overlay([lower])
    snap = OverlaySnapshotter(ov.upper, ov.lowers, merged=ov.merged)
    snap.begin()
    with pytest.raises(SnapshotError, match="/nope"):
        snap.changes(["nope"])


def test_begin_refuses_used_upper(tmp_path: Path) -> None:
    (tmp_path / "upper").mkdir()
    (tmp_path / "upper" / "x").write_text("x")
    with pytest.raises(SnapshotError, match="not fresh"):
        OverlaySnapshotter(tmp_path / "upper", []).begin()


def test_copy_up_without_change_is_skipped(tmp_path: Path, make_overlay: Callable[[list[Path]], Overlay]) -> None:
    lower = tmp_path / "lower"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc" / "passwd").write_bytes(b"root:x:0:0::/root:/bin/sh\n")
    st = os.stat(lower / "etc")
    ov = make_overlay([lower])
    snap = OverlaySnapshotter(ov.upper, ov.lowers)
    snap.begin()
    # A mount stub made and removed, the directory's times put back; a file opened for writing, unwritten.
    (ov.merged / "etc" / "resolv.conf").write_bytes(b"")
    (ov.merged / "etc" / "resolv.conf").unlink()
    os.utime(ov.merged / "etc", ns=(st.st_atime_ns, st.st_mtime_ns))
    with open(ov.merged / "etc" / "passwd", "r+b"):
        pass
    assert (ov.upper / "etc" / "passwd").exists()  # the kernel did copy both up
    changes = snap.changes(None)
    assert changes.paths == ()
    assert changes.deletions == ()


def test_copy_up_with_changed_mtime_is_a_change(tmp_path: Path, make_overlay: Callable[[list[Path]], Overlay]) -> None:
    lower = tmp_path / "lower"
    (lower / "etc").mkdir(parents=True)
    ov = make_overlay([lower])
    snap = OverlaySnapshotter(ov.upper, ov.lowers)
    snap.begin()
    (ov.merged / "etc" / "tmp").write_bytes(b"")
    (ov.merged / "etc" / "tmp").unlink()
    assert snap.changes(None).paths == ("etc",)


def test_lowers_whiteouts_and_opaque_dirs(tmp_path: Path, make_overlay: Callable[[list[Path]], Overlay]) -> None:
    """Deletions under an opaque upper dir are what the lowers *show*: not what a higher lower deleted, not
    what a higher lower's opaque dir hides."""
    bottom, top = tmp_path / "bottom", tmp_path / "top"
    for rel in ("d/a", "d/b", "e/x", "e/keep"):
        (bottom / rel).parent.mkdir(parents=True, exist_ok=True)
        (bottom / rel).write_bytes(b"1")
    whiteout(top / "d" / "a")
    (top / "e").mkdir(parents=True)
    os.setxattr(top / "e", "trusted.overlay.opaque", b"y")
    (top / "e" / "y").write_bytes(b"2")
    ov = make_overlay([top, bottom])
    assert sorted(os.listdir(ov.merged / "d")) == ["b"]
    assert sorted(os.listdir(ov.merged / "e")) == ["y"]
    snap = OverlaySnapshotter(ov.upper, ov.lowers)
    snap.begin()
    for name in ("d", "e"):
        for child in os.listdir(ov.merged / name):
            (ov.merged / name / child).unlink()
        os.rmdir(ov.merged / name)
        os.mkdir(ov.merged / name)
    (ov.merged / "e" / "new").write_bytes(b"3")
    changes = snap.changes(None)
    assert changes.paths == ("d", "e", "e/new")
    assert changes.deletions == ("d/b", "e/y")


def test_metacopy_upper_is_refused(tmp_path: Path) -> None:
    upper, lower = tmp_path / "upper", tmp_path / "lower"
    upper.mkdir()
    lower.mkdir()
    (lower / "f").write_bytes(b"data")
    (upper / "f").write_bytes(b"")
    os.setxattr(upper / "f", "trusted.overlay.metacopy", b"")
    with pytest.raises(SnapshotError, match="metacopy"):
        OverlaySnapshotter(upper, [lower]).changes(None)


def test_ignored_paths_and_whiteouts(tmp_path: Path, make_overlay: Callable[[list[Path]], Overlay]) -> None:
    lower = tmp_path / "lower"
    (lower / "var" / "run").mkdir(parents=True)
    (lower / "var" / "run" / "old.pid").write_bytes(b"1")
    (lower / "dev").mkdir()
    ov = make_overlay([lower])
    snap = OverlaySnapshotter(ov.upper, ov.lowers, ignore=IgnoreRules(frozenset({"dev", "var/run"})))
    snap.begin()
    (ov.merged / "var" / "run" / "old.pid").unlink()
    (ov.merged / "var" / "run" / "new.pid").write_bytes(b"2")
    (ov.merged / "dev" / "null").write_bytes(b"")
    (ov.merged / "kept").write_bytes(b"")
    changes = snap.changes(None)
    # var itself was only copied up on the way to var/run, which is ignored.
    assert changes.paths == ("kept",)
    assert changes.deletions == ()
