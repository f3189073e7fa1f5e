"""Changes fed to kiln.layers' tar writer, the tar read back by GNU tar: both snapshotters, one scenario."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from snapshot_scenarios import CAP_XATTR, Overlay, apply_step, build_base

from kiln.layers.tarwriter import write_layer_tar
from kiln.snapshot.changes import Changes
from kiln.snapshot.ignore import IgnoreRules
from kiln.snapshot.overlay import OverlaySnapshotter
from kiln.snapshot.walk import SnapshotMode, WalkSnapshotter

pytestmark = pytest.mark.root

DEFAULT_IGNORE = IgnoreRules.for_root(Path("/nonexistent-root"), mountinfo=None)

# Hand-written from the scenario: entries in the tar, as `tar -tv` prints the name column.
EXPECTED_NAMES = [
    ".wh.gone.txt",
    ".wh.gonedir",
    "cap",
    "chmod.txt",
    "chown.txt",
    "d2l -> keep.txt",
    "f2d/",
    "f2d/inner",
    "hard",
    "link-src link to hard",
    "mod.txt",
    "new.txt",
    "newdir/",
    "newdir/n2",
    "redo/",
    "redo/.wh.x",
    "redo/new",
    "redo/sub/",
    "redo/sub/.wh.y",
    "redo/sub/z",
]


def write_tar(changes: Changes, out: Path) -> None:
    with open(out, "wb") as f:
        write_layer_tar(changes.root, changes.paths, changes.deletions, f, timestamp=0)


def tar_listing(tar: Path) -> list[str]:
    lines = subprocess.run(["tar", "-tvf", str(tar)], check=True, capture_output=True, text=True).stdout
    # perms owner size date time name...
    return [line.split(None, 5)[5] for line in lines.splitlines()]


def tar_owners(tar: Path) -> dict[str, str]:
    lines = subprocess.run(["tar", "-tvf", str(tar)], check=True, capture_output=True, text=True).stdout
    return {line.split(None, 5)[5]: f"{line.split()[0]} {line.split()[1]}" for line in lines.splitlines()}


def test_overlay_and_walk_give_the_same_tar(tmp_path: Path, make_overlay: Callable[[list[Path]], Overlay]) -> None:
    lower, plain = tmp_path / "lower", tmp_path / "plain"
    for d in (lower, plain):
        d.mkdir()
        build_base(d)
    ov = make_overlay([lower])
    osnap = OverlaySnapshotter(ov.upper, ov.lowers, merged=ov.merged, ignore=DEFAULT_IGNORE)
    wsnap = WalkSnapshotter(plain, SnapshotMode.FULL, DEFAULT_IGNORE)
    osnap.begin()
    wsnap.begin()
    apply_step(ov.merged)
    apply_step(plain)
    otar, wtar = tmp_path / "overlay.tar", tmp_path / "walk.tar"
    write_tar(osnap.changes(None), otar)
    write_tar(wsnap.changes(None), wtar)

    assert tar_listing(otar) == EXPECTED_NAMES
    owners = tar_owners(otar)
    assert owners["chmod.txt"] == "-rwxr-xr-x 0/0"
    assert owners["chown.txt"] == "-rw-r--r-- 1000/1000"
    assert owners["hard"] == "-rw-r--r-- 0/0"
    assert owners["link-src link to hard"].startswith("hrw-r--r--")
    assert owners[".wh.gonedir"].startswith("-")
    # The same scenario on a plain tree, walked: byte for byte the same layer.
    assert otar.read_bytes() == wtar.read_bytes()

    # The capability survives into the layer (GNU tar reads the PAX SCHILY.xattr records).
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "-xf", str(otar), "-C", str(out)], check=True)
    assert os.getxattr(out / "cap", "security.capability") == CAP_XATTR
    assert (out / "redo" / "sub" / "z").read_bytes() == b"z"
    assert os.readlink(out / "d2l") == "keep.txt"
    assert os.stat(out / "hard").st_ino == os.stat(out / "link-src").st_ino
