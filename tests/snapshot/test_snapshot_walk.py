from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from snapshot_scenarios import DELETIONS, FULL_PATHS, REDO_PATHS, TIME_PATHS, apply_step, build_base

from kiln.errors import SnapshotError
from kiln.snapshot.changes import Changes
from kiln.snapshot.ignore import IgnoreRules
from kiln.snapshot.walk import SnapshotMode, WalkSnapshotter

DEFAULT_IGNORE = IgnoreRules.for_root(Path("/nonexistent-root"), mountinfo=None)
EXPECTED = {SnapshotMode.FULL: FULL_PATHS, SnapshotMode.REDO: REDO_PATHS, SnapshotMode.TIME: TIME_PATHS}


@pytest.mark.root  # chown and security.capability
@pytest.mark.parametrize("mode", list(SnapshotMode))
def test_scenario(tmp_path: Path, mode: SnapshotMode) -> None:
    build_base(tmp_path)
    snap = WalkSnapshotter(tmp_path, mode, DEFAULT_IGNORE)
    snap.begin()
    apply_step(tmp_path)
    changes = snap.changes(None)
    assert changes.root == tmp_path
    assert changes.paths == EXPECTED[mode]
    assert changes.deletions == DELETIONS


@pytest.mark.parametrize("mode", list(SnapshotMode))
def test_no_change_is_empty_and_state_moves_on(tmp_path: Path, mode: SnapshotMode) -> None:
    (tmp_path / "a").write_bytes(b"a")
    snap = WalkSnapshotter(tmp_path, mode)
    snap.begin()
    assert snap.changes(None).empty
    (tmp_path / "b").write_bytes(b"b")
    assert snap.changes(None).paths == ("b",)
    assert snap.changes(None).empty  # compared against the last changes(), not the first begin()


def test_full_mode_sees_same_size_same_mtime_content_change(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"aaaa")
    os.utime(f, ns=(10**18, 10**18))
    snap = WalkSnapshotter(tmp_path, SnapshotMode.FULL)
    snap.begin()
    f.write_bytes(b"bbbb")
    os.utime(f, ns=(10**18, 10**18))
    assert snap.changes(None).paths == ("f",)
    # time mode cannot see it: kaniko's documented trade-off.
    snap_t = WalkSnapshotter(tmp_path, SnapshotMode.TIME)
    snap_t.begin()
    f.write_bytes(b"cccc")
    os.utime(f, ns=(10**18, 10**18))
    assert snap_t.changes(None).empty


def test_full_mode_hash_cache_does_not_hide_changes(tmp_path: Path) -> None:
    """Old ctimes are trusted across scans; a rewrite (which moves ctime) is still seen."""
    f = tmp_path / "f"
    f.write_bytes(b"aaaa")
    snap = WalkSnapshotter(tmp_path, SnapshotMode.FULL)
    snap.begin()
    assert snap.changes(None).empty
    f.write_bytes(b"bbbb")
    os.utime(f, ns=(10**18, 10**18))
    snap.begin()
    f.write_bytes(b"cccc")
    os.utime(f, ns=(10**18, 10**18))
    assert snap.changes(None).paths == ("f",)


def test_declared_paths(tmp_path: Path) -> None:
    (tmp_path / "app" / "lib").mkdir(parents=True)
    (tmp_path / "app" / "lib" / "x").write_bytes(b"x")
    (tmp_path / "other").write_bytes(b"o")
    snap = WalkSnapshotter(tmp_path, SnapshotMode.FULL)
    snap.begin()
    changes = snap.changes(["/app", "other"])
    assert changes == Changes(tmp_path, ("app", "app/lib", "app/lib/x", "other"), ())
    with pytest.raises(SnapshotError):
        snap.changes(["missing"])


def test_ignored_paths_are_never_reported(tmp_path: Path) -> None:
    for rel in ("proc/1/stat", "var/run/a.pid", "work/state", "kept"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"1")
    rules = IgnoreRules.for_root(tmp_path, work_dir=tmp_path / "work", mountinfo=None)
    snap = WalkSnapshotter(tmp_path, SnapshotMode.FULL, rules)
    snap.begin()
    for rel in ("proc/1/stat", "var/run/a.pid", "work/state", "kept"):
        (tmp_path / rel).unlink()
    (tmp_path / "proc" / "2").mkdir()
    (tmp_path / "var" / "run" / "b.pid").write_bytes(b"2")
    changes = snap.changes(None)
    assert changes.paths == ()  # var/run changed inside, var itself did not
    assert changes.deletions == ("kept",)


def test_deleting_base_files_reports_topmost(tmp_path: Path) -> None:
    for rel in ("usr/share/doc/a/copyright", "usr/share/doc/b/copyright", "usr/share/man/x.1"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"1")
    snap = WalkSnapshotter(tmp_path, SnapshotMode.REDO)
    snap.begin()
    import shutil

    shutil.rmtree(tmp_path / "usr" / "share" / "doc")
    (tmp_path / "usr" / "share" / "man" / "x.1").unlink()
    changes = snap.changes(None)
    assert changes.deletions == ("usr/share/doc", "usr/share/man/x.1")
    assert changes.paths == ("usr/share", "usr/share/man")


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(SnapshotMode))
def test_twenty_thousand_files(tmp_path: Path, mode: SnapshotMode) -> None:
    root = tmp_path / "root"
    base = [root / f"base{i // 1000:02d}" / f"f{i:05d}" for i in range(2000)]
    for p in base:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(10240))
    snap = WalkSnapshotter(root, mode)
    t0 = time.perf_counter()
    snap.begin()
    t1 = time.perf_counter()
    data = os.urandom(10240)
    expected = set()
    for i in range(20_000):
        d = f"new/d{i // 500:03d}"
        if i % 500 == 0:
            (root / d).mkdir(parents=True)
            expected.add(d)
        rel = f"{d}/f{i:05d}"
        (root / rel).write_bytes(data[i % 100 :] + data[: i % 100])
        expected.add(rel)
    expected.add("new")
    t2 = time.perf_counter()
    changes = snap.changes(None)
    t3 = time.perf_counter()
    assert set(changes.paths) == expected
    assert len(changes.paths) == 20_000 + 40 + 1
    print(
        f"\n[{mode.value}] 2000 base files begin(): {t1 - t0:.2f}s; "
        f"20000 new 10KiB files written in {t2 - t1:.2f}s, changes(): {t3 - t2:.2f}s"
    )


def test_full_mode_follows_overlay_on_links_made_and_names_removed(tmp_path: Path) -> None:
    """overlayfs copies a file up when a link to it is made (the file is in that layer), not when another of its
    names is removed (it is not): the walk reports the same."""
    (tmp_path / "a").write_bytes(b"shared")
    os.link(tmp_path / "a", tmp_path / "b")
    snap = WalkSnapshotter(tmp_path, SnapshotMode.FULL)
    snap.begin()
    (tmp_path / "b").unlink()
    (tmp_path / "b").write_bytes(b"own")
    changes = snap.changes(None)
    assert changes.paths == ("b",)
    os.link(tmp_path / "a", tmp_path / "c")
    assert snap.changes(None).paths == ("a", "c")
    os.chmod(tmp_path / "c", 0o600)
    (tmp_path / "a").unlink()  # one name fewer, and a mode changed: a change
    changes = snap.changes(None)
    assert changes.paths == ("c",)
    assert changes.deletions == ("a",)
