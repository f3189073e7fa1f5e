"""extract_layer(skip=...): paths the caller protects (kiln's in-place mode) are neither written, replaced,
whited out nor pruned by an opaque directory, also when a symlink in the root leads there."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from layertree import make_tar, tar_entry

from kiln.layers import extract_layer


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "keep").mkdir(parents=True)
    (root / "keep/own").write_text("kiln's\n")
    (root / "top/keep2").mkdir(parents=True)
    (root / "top/keep2/own").write_text("kiln's\n")
    (root / "top/other").write_text("image's\n")
    os.symlink("keep", root / "alias")  # a path in the layer that leads into a protected directory
    return root


def _skip(seen: list[str]) -> object:
    protected = {"keep", "top/keep2", "top"}  # "top" holds a protected path: never replaced whole

    def skip(path: str) -> bool:
        seen.append(path)
        return path in protected or any(path.startswith(p + "/") for p in protected if p != "top")

    return skip


def _extract(root: Path, tar: bytes, seen: list[str]) -> None:
    extract_layer(io.BytesIO(tar), root, mode="apply", skip=_skip(seen))  # type: ignore[arg-type]


def test_entries_on_skipped_paths_are_not_written(tmp_path: Path) -> None:
    root = _root(tmp_path)
    seen: list[str] = []
    tar = make_tar(
        tar_entry("keep/own", data=b"layer\n"),
        tar_entry("keep/new", data=b"layer\n"),
        tar_entry("alias/via-link", data=b"layer\n"),
        tar_entry("alias/newdir/deep", data=b"layer\n"),
        tar_entry("top", tarfile.SYMTYPE, linkname="elsewhere"),  # would replace top/ (and keep2) whole
        tar_entry("free/file", data=b"layer\n"),
    )
    _extract(root, tar, seen)
    assert (root / "keep/own").read_text() == "kiln's\n"
    assert sorted(os.listdir(root / "keep")) == ["own"]  # nothing new, no directory made on the way
    assert (root / "top").is_dir() and (root / "top/keep2/own").read_text() == "kiln's\n"
    assert (root / "free/file").read_text() == "layer\n"
    # skip() is asked about the real path (through the symlink), not the name in the layer.
    assert "keep/via-link" in seen and "alias/via-link" not in seen
    assert "keep/newdir/deep" in seen


def test_whiteouts_and_opaque_dirs_leave_skipped_paths(tmp_path: Path) -> None:
    root = _root(tmp_path)
    tar = make_tar(
        tar_entry(".wh.keep"),
        tar_entry("keep/.wh.own"),
        tar_entry("top/.wh..wh..opq"),
        tar_entry("top/new", data=b"layer\n"),
    )
    _extract(root, tar, [])
    assert (root / "keep/own").read_text() == "kiln's\n"
    # The opaque directory is "top", which is protected (it holds keep2): nothing below it is pruned.
    assert (root / "top/keep2/own").exists() and (root / "top/other").exists()
    assert (root / "top/new").read_text() == "layer\n"


def test_opaque_dir_prunes_all_but_skipped_children(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d/kiln").mkdir(parents=True)
    (root / "d/kiln/f").write_text("x")
    (root / "d/old").write_text("old")

    def skip(path: str) -> bool:
        return path == "d/kiln" or path.startswith("d/kiln/")

    tar = make_tar(tar_entry("d/.wh..wh..opq"), tar_entry("d/new", data=b"n"))
    extract_layer(io.BytesIO(tar), root, mode="apply", skip=skip)
    assert sorted(os.listdir(root / "d")) == ["kiln", "new"]


def test_hardlink_to_a_skipped_file_is_not_made(tmp_path: Path) -> None:
    root = _root(tmp_path)
    tar = make_tar(tar_entry("link", tarfile.LNKTYPE, linkname="keep/own"), tar_entry("plain", data=b"p"))
    _extract(root, tar, [])
    assert not os.path.lexists(root / "link")
    assert (root / "plain").read_text() == "p"


def test_without_skip_the_same_layer_replaces_everything(tmp_path: Path) -> None:
    # The control: the protections above come from skip, not from the layer.
    root = _root(tmp_path)
    tar = make_tar(tar_entry("keep/own", data=b"layer\n"), tar_entry(".wh.top"))
    extract_layer(io.BytesIO(tar), root, mode="apply")
    assert (root / "keep/own").read_text() == "layer\n"
    assert not (root / "top").exists()
