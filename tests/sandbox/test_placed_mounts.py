"""RUN --mount placed rather than mounted (builds in place): content at the target during the step, and the
target exactly as it was afterwards (content, owners, modes, times of the parent), with a cache's content
moved back to kiln's directory. Checked on real directories with os.lstat, independently of kiln's walker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kiln.errors import SandboxError
from kiln.sandbox.placed import PlacedMounts, move
from kiln.sandbox.spec import BindMount, SecretMount, TmpfsMount


def _tree(root: Path) -> dict[str, tuple[int, int, int, int, str]]:
    """Every entry under root: (mode, uid, gid, mtime_ns, content or link target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            p = Path(dirpath) / name
            st = os.lstat(p)
            body = os.readlink(p) if p.is_symlink() else (p.read_text() if p.is_file() else "")
            out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, body)
    return out


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (r / "tmp").mkdir()
    (r / "tmp/old").write_text("old\n")
    os.chown(r / "tmp/old", 7, 8)
    os.chmod(r / "tmp/old", 0o4711)
    os.symlink("passwd", r / "etc/link")
    os.utime(r / "etc", ns=(1_000_000_000, 1_000_000_000))
    os.utime(r / "tmp", ns=(2_000_000_000, 2_000_000_000))
    os.utime(r, ns=(3_000_000_000, 3_000_000_000))
    return r


def _placed(root: Path, tmp_path: Path) -> PlacedMounts:
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    return PlacedMounts(root, scratch)


def test_every_kind_is_there_during_the_step_and_gone_after(root: Path, tmp_path: Path) -> None:
    before = _tree(root)
    src = tmp_path / "ctx"
    (src / "d").mkdir(parents=True)
    (src / "d/f").write_text("from context\n")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "kept").write_text("cached\n")
    placed = _placed(root, tmp_path)
    placed.place_all((
        BindMount(src, "/etc"),
        TmpfsMount("/tmp"),
        SecretMount(b"hush", "/run/secrets/tok", uid=5, gid=6, mode=0o440),
        BindMount(cache, "/var/cache/apt", movable=True),
    ))  # fmt: skip
    # During the step: each target holds the mount's content and nothing of what it held.
    assert sorted(os.listdir(root / "etc")) == ["d"] and (root / "etc/d/f").read_text() == "from context\n"
    assert os.listdir(root / "tmp") == [] and os.lstat(root / "tmp").st_mode & 0o7777 == 0o1777
    st = os.lstat(root / "run/secrets/tok")
    assert (root / "run/secrets/tok").read_bytes() == b"hush" and (st.st_uid, st.st_gid, st.st_mode & 0o777) == (
        5, 6, 0o440)  # fmt: skip
    assert (root / "var/cache/apt/kept").read_text() == "cached\n" and not cache.exists()
    # The step writes into each.
    (root / "etc/new").write_text("x")
    (root / "tmp/t").write_text("x")
    (root / "var/cache/apt/added").write_text("y")
    placed.remove()
    assert _tree(root) == before, "the root is not as it was"
    assert sorted(os.listdir(cache)) == ["added", "kept"], "the cache lost what the step wrote"
    assert os.listdir(tmp_path / "scratch") == []


def test_the_commands_own_changes_to_a_parent_stay(root: Path, tmp_path: Path) -> None:
    placed = _placed(root, tmp_path)
    placed.place_all((TmpfsMount("/etc/sub"),))
    (root / "etc/made-by-step").write_text("z")
    placed.remove()
    assert (root / "etc/made-by-step").read_text() == "z"
    assert not (root / "etc/sub").exists()
    assert os.lstat(root / "etc").st_mtime_ns != 1_000_000_000  # the step changed /etc: its time is the step's


def test_nested_targets(root: Path, tmp_path: Path) -> None:
    before = _tree(root)
    placed = _placed(root, tmp_path)
    placed.place_all((TmpfsMount("/tmp/inner"), TmpfsMount("/tmp")))
    assert os.listdir(root / "tmp") == ["inner"]
    placed.remove()
    assert _tree(root) == before


def test_a_target_through_a_symlink_stays_inside_the_root(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), root / "escape")  # absolute: resolved inside the root, not on the host
    placed = _placed(root, tmp_path)
    placed.place_all((TmpfsMount("/escape/x"),))
    assert os.listdir(outside) == []
    inside = root / str(outside).lstrip("/")
    assert (inside / "x").is_dir()
    placed.remove()
    assert os.listdir(outside) == [] and not (root / "tmp" / "pytest-of-root").exists() and not inside.exists()


def test_a_missing_bind_source_is_an_error_and_nothing_is_left(root: Path, tmp_path: Path) -> None:
    before = _tree(root)
    placed = _placed(root, tmp_path)
    with pytest.raises(SandboxError, match="does not exist"):
        placed.place_all((TmpfsMount("/tmp"), BindMount(tmp_path / "nope", "/etc")))
    placed.remove()
    assert _tree(root) == before


def test_move_across_filesystems_keeps_owners_and_modes(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if os.lstat(shm).st_dev == os.lstat(tmp_path).st_dev:
        pytest.skip("/dev/shm is on the same filesystem as the test's directory")
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d/f").write_text("f")
    os.chown(src / "d/f", 11, 12)
    os.chmod(src / "d/f", 0o2751)
    os.symlink("d/f", src / "l")
    before = _tree(src)
    dst = shm / f"kiln-test-move-{os.getpid()}"
    try:
        assert move(src, dst) == dst
        assert not src.exists()
        assert _tree(dst) == before
    finally:
        if dst.exists():
            import shutil

            shutil.rmtree(dst)


def test_a_directory_mount_over_a_file_is_refused_as_in_the_sandbox(root: Path, tmp_path: Path) -> None:
    before = _tree(root)
    placed = _placed(root, tmp_path)
    with pytest.raises(SandboxError, match="exists in the rootfs but is not a directory"):
        placed.place_all((TmpfsMount("/etc/passwd"),))
    placed.remove()
    assert _tree(root) == before
