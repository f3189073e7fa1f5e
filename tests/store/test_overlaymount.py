from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from kiln.store import overlaymount
from kiln.store.overlaymount import MountError, mount_overlay, overlay_supported, unmount

pytestmark = pytest.mark.root


def _mount_options(target: Path) -> str:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" ")
        if fields[4] == str(target):
            return fields[-1]
    raise AssertionError(f"{target} not mounted")


def _stack(tmp_path: Path, n: int) -> tuple[list[Path], Path, Path, Path]:
    base = tmp_path / ("a-rather-long-directory-name-to-make-paths-long-" * 2)
    lowers = []
    for i in range(n):
        d = base / f"sha256-{i:064d}"
        d.mkdir(parents=True)
        (d / f"file{i}").write_text(str(i))
        (d / "shared").write_text(str(i))
        lowers.append(d)
    lowers.reverse()  # top first: the last created is on top
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    return lowers, upper, work, merged


def test_overlay_supported(tmp_path: Path) -> None:
    assert overlay_supported(tmp_path / "probe")
    assert os.listdir(tmp_path / "probe") == []


@pytest.mark.parametrize("api", ["new", "legacy"])
def test_two_hundred_long_lowers(tmp_path: Path, api: str) -> None:
    lowers, upper, work, merged = _stack(tmp_path, 200)
    assert sum(len(str(p)) + 1 for p in lowers) > 4 * os.sysconf("SC_PAGE_SIZE")
    if api == "new":
        mount_overlay(lowers, upper, work, merged)
    else:
        overlaymount._mount_legacy(lowers, upper, work, merged)
    try:
        names = set(os.listdir(merged))
        assert names == {f"file{i}" for i in range(200)} | {"shared"}
        assert (merged / "shared").read_text() == "199"  # the top layer wins
        assert (merged / "file0").read_text() == "0"
        # The kernel lists only non-default options (index/redirect_dir/metacopy off are defaults here);
        # their effect is checked in test_metacopy_and_redirect_are_off.
        opts = _mount_options(merged).split(",")
        assert sum(o.startswith(("lowerdir+=", "lowerdir=")) for o in opts) in (1, 200)
        assert f"upperdir={upper}" in opts
    finally:
        unmount(merged)
    assert os.listdir(merged) == []


def test_metacopy_and_redirect_are_off(tmp_path: Path) -> None:
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    (lower / "big").write_bytes(b"x" * 100_000)
    (lower / "dir").mkdir()
    (lower / "dir" / "f").write_bytes(b"f")
    mount_overlay([lower], upper, work, merged)
    try:
        os.chmod(merged / "big", 0o600)
        # metacopy=off: a chmod copies the data up too, so the upper dir alone holds the file.
        assert (upper / "big").read_bytes() == b"x" * 100_000
        # redirect_dir=off: renaming a lower directory is refused (tools then copy), never a redirect xattr.
        with pytest.raises(OSError) as info:
            os.rename(merged / "dir", merged / "moved")
        assert info.value.errno == errno.EXDEV
    finally:
        unmount(merged)


def test_too_many_lowers_and_bad_mounts(tmp_path: Path) -> None:
    with pytest.raises(MountError, match="limit"):
        mount_overlay([tmp_path] * 501, tmp_path, tmp_path, tmp_path)
    with pytest.raises(MountError):
        mount_overlay([tmp_path / "missing"], tmp_path / "u", tmp_path / "w", tmp_path)
    with pytest.raises(MountError):
        unmount(tmp_path)
