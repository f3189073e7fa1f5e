"""One base, one root filesystem, whatever the mode (issue 12, item 8).

Layers extracted one by one in overlay format (each into a directory of its own, given the directories of the
layers below) and stacked by overlayfs must show the tree that applying the same layers in order onto one
directory gives: containerd's rule, applying layers in order and resolving every path inside the root, so a
layer's ``var/run/app.pid`` below a lower ``var/run -> /run`` lands in ``run/app.pid`` and a hardlink to a
lower layer's file links to that file. The flat extraction (apply mode) is the reference: it is the naive
applier of the image spec and of containerd's archive.Apply.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from layertree import describe, make_tar, tar_entry

from kiln.errors import ImageFormatError, KilnError
from kiln.layers import extract_layer
from kiln.layers.paths import sort_key, split_image_path
from kiln.store.overlaymount import mount_overlay, unmount

pytestmark = pytest.mark.root

Entry = tuple[tarfile.TarInfo, bytes]


@contextmanager
def stacked(layers: Sequence[bytes], tmp: Path, *, with_lowers: bool = True) -> Iterator[Path]:
    """The layers extracted in overlay format, each knowing those below it, and mounted: the merged view."""
    dirs: list[Path] = []
    for i, blob in enumerate(layers):
        d = tmp / f"layer{i}"
        extract_layer(io.BytesIO(blob), d, mode="overlay", lowers=list(reversed(dirs)) if with_lowers else None)
        dirs.append(d)
    for name in ("upper", "work", "merged"):
        (tmp / name).mkdir()
    mount_overlay(list(reversed(dirs)), tmp / "upper", tmp / "work", tmp / "merged")
    try:
        yield tmp / "merged"
    finally:
        unmount(tmp / "merged")


def flat(layers: Sequence[bytes], root: Path) -> Path:
    for blob in layers:
        extract_layer(io.BytesIO(blob), root, mode="apply")
    return root


def _dir(name: str, mode: int = 0o755, uid: int = 0) -> Entry:
    info, data = tar_entry(name, tarfile.DIRTYPE, mode=mode)
    info.uid = info.gid = uid
    return info, data


def test_a_file_below_a_lower_directory_symlink_lands_through_it(tmp_path: Path) -> None:
    base = make_tar(_dir("run"), _dir("var"), tar_entry("var/run", tarfile.SYMTYPE, linkname="/run"))
    app = make_tar(_dir("var"), tar_entry("var/run/app.pid", data=b"42\n"))
    with stacked([base, app], tmp_path / "o") as merged:
        assert os.readlink(merged / "var/run") == "/run"
        assert (merged / "run/app.pid").read_bytes() == b"42\n"
        assert describe(merged, dir_mtimes=False) == describe(flat([base, app], tmp_path / "f"), dir_mtimes=False)


def test_without_the_lowers_the_symlink_became_a_directory(tmp_path: Path) -> None:
    """The control: the same layers read each on its own (what kiln did) hide the symlink."""
    base = make_tar(_dir("run"), _dir("var"), tar_entry("var/run", tarfile.SYMTYPE, linkname="/run"))
    app = make_tar(_dir("var"), tar_entry("var/run/app.pid", data=b"42\n"))
    with stacked([base, app], tmp_path / "o", with_lowers=False) as merged:
        assert (merged / "var/run").is_dir() and not (merged / "var/run").is_symlink()


def test_a_relative_lower_symlink_and_a_chain_of_them(tmp_path: Path) -> None:
    base = make_tar(_dir("usr"), _dir("usr/lib", 0o750, uid=7), tar_entry("lib", tarfile.SYMTYPE, linkname="usr/lib"),
                    tar_entry("lib64", tarfile.SYMTYPE, linkname="lib"))  # fmt: skip
    top = make_tar(tar_entry("lib64/ld.so", data=b"ld"), tar_entry("lib/sub/x", data=b"x"))
    with stacked([base, top], tmp_path / "o") as merged:
        assert (merged / "usr/lib/ld.so").read_bytes() == b"ld"
        assert (merged / "usr/lib/sub/x").read_bytes() == b"x"
        # The copied-up usr/lib keeps the lower's owner and mode.
        st_lib = os.lstat(merged / "usr/lib")
        assert (st_lib.st_uid, st_lib.st_mode & 0o7777) == (7, 0o750)
        assert describe(merged, dir_mtimes=False) == describe(flat([base, top], tmp_path / "f"), dir_mtimes=False)


def test_a_hardlink_to_a_lower_layers_file(tmp_path: Path) -> None:
    base = make_tar(_dir("bin"), tar_entry("bin/busybox", data=b"\x7fELF", mode=0o755))
    top = make_tar(_dir("usr"), tar_entry("usr/sh", tarfile.LNKTYPE, linkname="bin/busybox", mode=0o755))
    with stacked([base, top], tmp_path / "o") as merged:
        a, b = os.lstat(merged / "bin/busybox"), os.lstat(merged / "usr/sh")
        assert (a.st_ino, a.st_nlink) == (b.st_ino, 2)
        assert describe(merged, dir_mtimes=False) == describe(flat([base, top], tmp_path / "f"), dir_mtimes=False)


def test_a_hardlink_through_a_lower_symlink(tmp_path: Path) -> None:
    base = make_tar(_dir("usr"), _dir("usr/bin"), tar_entry("usr/bin/tool", data=b"t", mode=0o755),
                    tar_entry("bin", tarfile.SYMTYPE, linkname="usr/bin"))  # fmt: skip
    top = make_tar(tar_entry("tool2", tarfile.LNKTYPE, linkname="bin/tool", mode=0o755))
    with stacked([base, top], tmp_path / "o") as merged:
        assert os.lstat(merged / "tool2").st_ino == os.lstat(merged / "usr/bin/tool").st_ino
        assert describe(merged, dir_mtimes=False) == describe(flat([base, top], tmp_path / "f"), dir_mtimes=False)


def test_whited_out_and_opaque_lowers_are_not_followed(tmp_path: Path) -> None:
    """A lower symlink that a middle layer deleted, or hid under an opaque directory, is not followed."""
    base = make_tar(_dir("d"), tar_entry("d/link", tarfile.SYMTYPE, linkname="/target"), _dir("e"),
                    tar_entry("e/link", tarfile.SYMTYPE, linkname="/target"), _dir("target"))  # fmt: skip
    middle = make_tar(_dir("d"), tar_entry("d/.wh.link"), _dir("e"), tar_entry("e/.wh..wh..opq"))
    top = make_tar(tar_entry("d/link/f", data=b"1"), tar_entry("e/link/f", data=b"2"))
    layers = [base, middle, top]
    with stacked(layers, tmp_path / "o") as merged:
        assert (merged / "d/link/f").read_bytes() == b"1" and not (merged / "d/link").is_symlink()
        assert not (merged / "target/f").exists()
        assert describe(merged, dir_mtimes=False) == describe(flat(layers, tmp_path / "f"), dir_mtimes=False)


# --- the property: random layer sequences, both ways -----------------------------------------------------

# A small name space, so that layers meet each other's paths; symlink targets lead to those names, up and out.
_NAMES = ["a", "b", "run", "var"]
_PATHS = [*_NAMES, *(f"{x}/{y}" for x in _NAMES for y in _NAMES), "var/run/app.pid", "a/b/c", "b/a/x"]
_TARGETS = ["a", "/a", "b", "../b", "/run", "a/b", "../../a", ".", "/", "nowhere"]

_op = st.one_of(
    st.tuples(st.just("dir"), st.sampled_from(_PATHS), st.sampled_from([0o755, 0o700, 0o1777])),
    st.tuples(st.just("file"), st.sampled_from(_PATHS), st.binary(max_size=8)),
    st.tuples(st.just("symlink"), st.sampled_from(_PATHS), st.sampled_from(_TARGETS)),
    st.tuples(st.just("hardlink"), st.sampled_from(_PATHS), st.sampled_from(_PATHS)),
    st.tuples(st.just("whiteout"), st.sampled_from(_PATHS), st.none()),
    st.tuples(st.just("opaque"), st.sampled_from(_NAMES), st.none()),
)
_layers = st.lists(st.lists(_op, min_size=1, max_size=6), min_size=1, max_size=4)


def _layer(ops: list[tuple[str, str, object]], linkable: set[str]) -> bytes:
    """A layer as real builders write one: each path once, parents first, whiteouts first in a directory.
    Hardlinks only to files no other path shares yet (overlayfs copies one link up, not its siblings)."""
    entries: dict[str, Entry] = {}
    for kind, path, arg in ops:
        parts = split_image_path(path)
        name = "/".join(parts)
        if kind == "dir":
            entries[name] = tar_entry(name, tarfile.DIRTYPE, mode=arg)  # type: ignore[arg-type]
        elif kind == "file":
            entries[name] = tar_entry(name, data=arg)  # type: ignore[arg-type]
        elif kind == "symlink":
            entries[name] = tar_entry(name, tarfile.SYMTYPE, linkname=arg)  # type: ignore[arg-type]
        elif kind == "hardlink" and arg in linkable and arg != name:
            entries[name] = tar_entry(name, tarfile.LNKTYPE, linkname=arg)  # type: ignore[arg-type]
            linkable.discard(arg)  # type: ignore[arg-type]
        elif kind == "whiteout":
            wh = "/".join((*parts[:-1], ".wh." + parts[-1]))
            entries[wh] = tar_entry(wh)
        elif kind == "opaque":
            entries[f"{name}/.wh..wh..opq"] = tar_entry(f"{name}/.wh..wh..opq")
    linkable.update(n for n, (i, _) in entries.items() if i.isreg() and not n.rsplit("/", 1)[-1].startswith(".wh."))
    ordered = sorted(entries, key=lambda n: sort_key(split_image_path(n)))
    return make_tar(*(entries[n] for n in ordered))


def _tree(root: Path) -> dict[str, object]:
    """describe() without directory mtimes, hardlinks grouped by the paths that show them: a link a higher
    layer hid still counts in st_nlink on overlayfs (the lower inode keeps it), not in the flat root."""
    tree = describe(root, dir_mtimes=False)
    members: dict[str | None, int] = {}
    for meta in tree.values():
        members[meta.hardlink_group] = members.get(meta.hardlink_group, 0) + 1
    return {p: replace(m, hardlink_group=None) if members[m.hardlink_group] < 2 else m for p, m in tree.items()}


def _outcome(run: object) -> tuple[str, object]:
    try:
        return "ok", run()  # type: ignore[operator]
    except (ImageFormatError, KilnError) as e:
        return "refused", type(e).__name__


# 150 derandomized cases here (about 3 s); a long run: KILN_LAYER_EXAMPLES=10000 (random, about 2 minutes).
_EXAMPLES = os.environ.get("KILN_LAYER_EXAMPLES")


@settings(
    max_examples=int(_EXAMPLES or 150),
    deadline=None,
    derandomize=not _EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(_layers)
def test_random_layer_sequences_give_one_tree(layer_ops: list[list[tuple[str, str, object]]]) -> None:
    linkable: set[str] = set()
    layers = [_layer(ops, linkable) for ops in layer_ops]
    with tempfile.TemporaryDirectory() as tmp:
        expected = _outcome(lambda: _tree(flat(layers, Path(tmp, "flat"))))

        def merged() -> object:
            with stacked(layers, Path(tmp, "stack")) as m:
                return _tree(m)

        actual = _outcome(merged)
        shutil.rmtree(tmp, ignore_errors=True)
    assert actual == expected
