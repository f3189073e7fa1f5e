"""Hostile layers: every way out of the root is refused or lands inside it; nothing outside is touched."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from layertree import make_tar, tar_entry

from kiln.errors import ImageFormatError, UnsafePathError
from kiln.layers import extract_layer

pytestmark = pytest.mark.root


def snapshot(path: Path) -> dict[str, tuple[int, int, bytes | None]]:
    """Everything under path: (mode, nlink, content) by relative path."""
    out = {}
    for p in [path, *path.rglob("*")]:
        st = p.lstat()
        content = p.read_bytes() if p.is_file() and not p.is_symlink() else None
        out[str(p.relative_to(path))] = (st.st_mode, st.st_nlink, content)
    return out


def run(root: Path, *entries: tuple[tarfile.TarInfo, bytes], mode: str = "apply") -> None:
    extract_layer(io.BytesIO(make_tar(*entries)), root, mode=mode)  # type: ignore[arg-type]


def everything_outside(tmp_path: Path, root: Path) -> dict[str, tuple[int, int, bytes | None]]:
    return {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("a/b/root/") and k != "a/b/root"}


PASSWD = Path("/etc/passwd")


@pytest.mark.parametrize("mode", ["apply", "overlay"])
@pytest.mark.parametrize(
    "entries",
    [
        pytest.param([tar_entry("../escape", data=b"x")], id="dotdot"),
        pytest.param([tar_entry("../../../outside/victim", data=b"x")], id="dotdot-victim"),
        pytest.param([tar_entry("ok/../../escape", data=b"x")], id="inner-dotdot"),
        pytest.param([tar_entry("/abs-file", data=b"x")], id="absolute"),
        pytest.param([tar_entry("../../../outside/.wh.victim")], id="whiteout-dotdot"),
        pytest.param(
            [tar_entry("evil", tarfile.SYMTYPE, linkname="../../../outside"), tar_entry("evil/victim", data=b"x")],
            id="symlink-relative-then-write",
        ),
        pytest.param(
            [tar_entry("evil", tarfile.SYMTYPE, linkname="../../../outside"), tar_entry("evil/.wh.victim")],
            id="symlink-relative-then-whiteout",
        ),
        pytest.param(
            [tar_entry("d", tarfile.DIRTYPE, mode=0o755),
             tar_entry("d/up", tarfile.SYMTYPE, linkname=".."),
             tar_entry("d/up/up2", tarfile.SYMTYPE, linkname="../.."),
             tar_entry("d/up/up2/f", data=b"x")],
            id="symlink-chain",
        ),
        pytest.param([tar_entry("passwd", tarfile.LNKTYPE, linkname="/etc/passwd")], id="hardlink-absolute"),
        pytest.param(
            [tar_entry("passwd", tarfile.LNKTYPE, linkname="../../../../../../../../etc/passwd")],
            id="hardlink-dotdot",
        ),
        pytest.param(
            [tar_entry("evil", tarfile.SYMTYPE, linkname="../../../outside"),
             tar_entry("victim", tarfile.LNKTYPE, linkname="evil/victim")],
            id="hardlink-through-symlink",
        ),
    ],
)
def test_escapes_are_refused(
    tmp_path: Path, sandbox: tuple[Path, Path], entries: list[tuple[tarfile.TarInfo, bytes]], mode: str
) -> None:
    root, outside = sandbox
    before = everything_outside(tmp_path, root)
    passwd = PASSWD.lstat()
    with pytest.raises(UnsafePathError):
        run(root, *entries, mode=mode)
    assert everything_outside(tmp_path, root) == before
    assert (outside / "victim").read_text() == "precious"
    assert PASSWD.lstat().st_nlink == passwd.st_nlink
    assert not list(tmp_path.rglob("escape"))


@pytest.mark.parametrize("mode", ["apply", "overlay"])
def test_absolute_symlinks_resolve_inside_the_root(tmp_path: Path, sandbox: tuple[Path, Path], mode: str) -> None:
    """A symlink to an absolute path means that path in the image (as if chrooted), never on the host."""
    root, outside = sandbox
    before = everything_outside(tmp_path, root)
    run(
        root,
        tar_entry("evil", tarfile.SYMTYPE, linkname=str(outside)),
        tar_entry("evil/victim", data=b"inside the root"),
        tar_entry("etc", tarfile.SYMTYPE, linkname="/real-etc"),
        tar_entry("etc/passwd", data=b"root:x:0:0::/:/bin/sh\n"),
        tar_entry("up", tarfile.SYMTYPE, linkname="/"),
        tar_entry("up/top", data=b"top"),
        mode=mode,
    )
    assert everything_outside(tmp_path, root) == before
    assert (root / str(outside).lstrip("/") / "victim").read_bytes() == b"inside the root"
    assert (root / "real-etc/passwd").read_bytes().startswith(b"root:")
    assert (root / "top").read_bytes() == b"top"
    assert os.readlink(root / "evil") == str(outside)


def test_whiteout_through_an_absolute_symlink_stays_inside(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    root, outside = sandbox
    run(root, tar_entry("evil", tarfile.SYMTYPE, linkname=str(outside)), tar_entry("evil/.wh.victim"))
    assert (outside / "victim").read_text() == "precious"


def test_hardlink_to_a_host_file_through_an_absolute_symlink_is_not_made(
    tmp_path: Path, sandbox: tuple[Path, Path]
) -> None:
    root, _ = sandbox
    passwd = PASSWD.lstat()
    with pytest.raises(ImageFormatError, match="does not exist"):
        run(
            root,
            tar_entry("e", tarfile.SYMTYPE, linkname="/etc"),
            tar_entry("p", tarfile.LNKTYPE, linkname="e/passwd"),
        )
    assert PASSWD.lstat().st_nlink == passwd.st_nlink
    assert not (root / "p").exists()


def test_file_over_a_symlink_replaces_the_symlink(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    root, outside = sandbox
    run(
        root,
        tar_entry("s", tarfile.SYMTYPE, linkname=str(outside / "victim")),
        tar_entry("s", data=b"overwritten?"),
        tar_entry("d", tarfile.SYMTYPE, linkname=str(outside)),
        tar_entry("d", tarfile.DIRTYPE, mode=0o777),
    )
    assert (outside / "victim").read_text() == "precious"
    assert (root / "s").read_bytes() == b"overwritten?" and not (root / "s").is_symlink()
    assert (root / "d").is_dir() and not (root / "d").is_symlink()
    assert oct(outside.stat().st_mode & 0o777) != oct(0o777)


def test_dir_replaced_by_symlink_later_gets_no_mtime_through_it(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    """Directory mtimes are set at the end; by then a parent may be a symlink pointing out."""
    root, outside = sandbox
    os.utime(outside / "victim", (1, 1))
    os.utime(outside, (1, 1))
    run(
        root,
        tar_entry("p", tarfile.DIRTYPE, mode=0o755),
        tar_entry("p/victim", tarfile.DIRTYPE, mode=0o755),
        tar_entry("p", tarfile.SYMTYPE, linkname=str(outside)),
    )
    assert int((outside / "victim").lstat().st_mtime) == 1
    assert int(outside.lstat().st_mtime) == 1


def test_symlink_loops_are_refused(sandbox: tuple[Path, Path]) -> None:
    root, _ = sandbox
    with pytest.raises(UnsafePathError, match="levels"):
        run(root, tar_entry("a", tarfile.SYMTYPE, linkname="b"), tar_entry("b", tarfile.SYMTYPE, linkname="a"),
            tar_entry("a/x", data=b"x"))
