"""Opening build contexts: directories, tarballs made by GNU tar (every compression), stdin, bad archives."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from kiln.context.opener import BuildContext, open_context
from kiln.errors import ContextError, NotSupportedYet

MTIME = 1_600_000_000


def make_tree(root: Path) -> Path:
    """A small context: files, a nested dir, an executable, a symlink, a hard link, a .dockerignore."""
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "hello.txt").write_text("hello\n")
    (root / "sub" / "a.txt").write_text("a\n")
    (root / "sub" / "deep" / "b.txt").write_text("b\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "run.sh", 0o755)
    os.symlink("sub/a.txt", root / "link")
    os.link(root / "hello.txt", root / "hardlink")
    (root / ".dockerignore").write_text("*.log\n")
    (root / "debug.log").write_text("noise\n")
    for path in [*root.rglob("*"), root]:
        os.utime(path, (MTIME, MTIME), follow_symlinks=False)
    return root


def assert_tree(ctx: BuildContext) -> None:
    root = ctx.root
    assert (root / "hello.txt").read_text() == "hello\n"
    assert (root / "sub" / "deep" / "b.txt").read_text() == "b\n"
    assert os.readlink(root / "link") == "sub/a.txt"
    assert os.stat(root / "run.sh").st_mode & 0o777 == 0o755
    assert os.stat(root / "hello.txt").st_mode & 0o777 == 0o644
    assert os.stat(root / "hardlink").st_ino == os.stat(root / "hello.txt").st_ino
    assert int(os.stat(root / "sub" / "a.txt").st_mtime) == MTIME
    assert int(os.stat(root / "sub").st_mtime) == MTIME
    assert ctx.ignore.matches("debug.log")
    assert not ctx.ignore.matches("hello.txt")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "ctx")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path / "work"


def gnu_tar(tree: Path, out: Path, *flags: str) -> Path:
    subprocess.run(["tar", "-c", *flags, "-f", str(out), "-C", str(tree), "."], check=True)
    return out


def test_directory_context(tree: Path, work: Path) -> None:
    with open_context(str(tree), work, None) as ctx:
        assert ctx.root == tree.resolve()
        assert ctx.owned_dir is None
        assert_tree(ctx)
    assert tree.exists()  # a directory context is the user's: never removed


def test_dir_scheme(tree: Path, work: Path) -> None:
    with open_context(f"dir://{tree}", work, None) as ctx:
        assert ctx.root == tree.resolve()


@pytest.mark.parametrize(
    ("suffix", "flags"),
    [
        (".tar", ()),
        (".tar.gz", ("-z",)),
        (".tgz", ("-z",)),
        (".tar.zst", ("--zstd",)),
        (".tar.xz", ("-J",)),
        (".tar.bz2", ("-j",)),
    ],
)
def test_tarball_contexts(tree: Path, work: Path, tmp_path: Path, suffix: str, flags: tuple[str, ...]) -> None:
    archive = gnu_tar(tree, tmp_path / f"ctx{suffix}", *flags)
    ctx = open_context(str(archive), work, None)
    try:
        assert ctx.owned_dir is not None
        assert ctx.root.is_relative_to(work.resolve())
        assert_tree(ctx)
    finally:
        ctx.close()
    assert not ctx.root.exists()
    assert list(work.iterdir()) == []


def test_compression_is_told_by_content_not_name(tree: Path, work: Path, tmp_path: Path) -> None:
    archive = gnu_tar(tree, tmp_path / "misnamed.tar", "--zstd")
    with open_context(f"tar://{archive}", work, None) as ctx:
        assert_tree(ctx)


def test_stdin_pipe(tree: Path, work: Path) -> None:
    tar = subprocess.Popen(["tar", "-cz", "-f", "-", "-C", str(tree), "."], stdout=subprocess.PIPE)
    try:
        assert tar.stdout is not None
        with open_context("-", work, tar.stdout) as ctx:
            assert_tree(ctx)
            root = ctx.root
    finally:
        assert tar.wait() == 0
    assert not root.exists()


def test_a_dockerfile_on_stdin_is_the_dockerfile_of_an_empty_context(work: Path) -> None:
    """As `docker build - < Dockerfile`: text that is no archive is the Dockerfile, kept outside the context."""
    text = b"FROM scratch\nLABEL a=b\n"
    with open_context("-", work, io.BytesIO(text)) as ctx:
        assert ctx.dockerfile is not None and ctx.dockerfile.read_bytes() == text
        assert list(ctx.root.iterdir()) == []
        assert ctx.root not in ctx.dockerfile.parents
        owned = ctx.dockerfile.parent
    assert not owned.exists()
    assert list(work.iterdir()) == []


def test_tar_stdin_spelling(tree: Path, work: Path, tmp_path: Path) -> None:
    data = gnu_tar(tree, tmp_path / "c.tar").read_bytes()
    with open_context("tar://stdin", work, io.BytesIO(data)) as ctx:
        assert_tree(ctx)


def test_stdin_spec_without_stdin(work: Path) -> None:
    with pytest.raises(ContextError, match="standard input"):
        open_context("-", work, None)


def test_missing_context(work: Path, tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="nope"):
        open_context(str(tmp_path / "nope"), work, None)
    with pytest.raises(ContextError, match="nope.tar"):
        open_context(f"tar://{tmp_path / 'nope.tar'}", work, None)
    with pytest.raises(ContextError, match="not a directory"):
        open_context(f"dir://{tmp_path / 'nope'}", work, None)


def test_unsupported_scheme(work: Path) -> None:
    with pytest.raises(NotSupportedYet, match="s3://"):
        open_context("s3://bucket/context.tar.gz", work, None)


@pytest.mark.parametrize(
    "content",
    [
        b"this is not a tar archive at all, just some bytes" * 20,
        b"",
        b"\x1f\x8b\x08\x00garbage-after-gzip-magic" * 4,
        b"\x28\xb5\x2f\xfdgarbage-after-zstd-magic" * 4,
    ],
)
def test_corrupt_tarball(work: Path, tmp_path: Path, content: bytes) -> None:
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(content)
    with pytest.raises(ContextError, match="bad.tar.gz"):
        open_context(str(archive), work, None)
    assert list(work.iterdir()) == []  # the half-unpacked directory is gone


def test_truncated_tarball(tree: Path, work: Path, tmp_path: Path) -> None:
    (tree / "big.bin").write_bytes(os.urandom(200_000))
    data = gnu_tar(tree, tmp_path / "full.tar").read_bytes()
    archive = tmp_path / "cut.tar"
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(ContextError, match="cut.tar"):
        open_context(str(archive), work, None)
    assert list(work.iterdir()) == []


def _tar_with(tmp_path: Path, add: Callable[[tarfile.TarFile], None]) -> Path:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        add(tar)
    return archive


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, io.BytesIO(data)


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


def test_tar_entry_climbing_out_is_refused(work: Path, tmp_path: Path) -> None:
    archive = _tar_with(tmp_path, lambda tar: tar.addfile(*_file("../escaped")))
    with pytest.raises(ContextError, match="outside"):
        open_context(str(archive), work, None)
    assert not (tmp_path / "escaped").exists()
    assert not (work / "escaped").exists()


def test_tar_entry_through_symlink_is_refused(work: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()

    def add(tar: tarfile.TarFile) -> None:
        tar.addfile(_symlink("link", str(outside)))
        tar.addfile(*_file("link/planted"))

    with pytest.raises(ContextError, match="planted"):
        open_context(str(_tar_with(tmp_path, add)), work, None)
    assert list(outside.iterdir()) == []


def test_tar_absolute_names_land_inside(work: Path, tmp_path: Path) -> None:
    archive = _tar_with(tmp_path, lambda tar: tar.addfile(*_file("/etc/kiln-test-file", b"inside")))
    with open_context(str(archive), work, None) as ctx:
        assert (ctx.root / "etc" / "kiln-test-file").read_bytes() == b"inside"
    assert not Path("/etc/kiln-test-file").exists()


def test_tar_hardlink_outside_is_refused(work: Path, tmp_path: Path) -> None:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("hl")
        info.type = tarfile.LNKTYPE
        info.linkname = "../../etc/passwd"
        tar.addfile(info)

    with pytest.raises(ContextError, match="outside"):
        open_context(str(_tar_with(tmp_path, add)), work, None)


def test_tar_keeps_outward_symlinks_as_links(work: Path, tmp_path: Path) -> None:
    archive = _tar_with(tmp_path, lambda tar: tar.addfile(_symlink("abs", "/etc/passwd")))
    with open_context(str(archive), work, None) as ctx:
        assert os.readlink(ctx.root / "abs") == "/etc/passwd"


def test_dockerfile_specific_ignore_takes_precedence(tree: Path, work: Path, tmp_path: Path) -> None:
    dockerfiles = tmp_path / "df"
    dockerfiles.mkdir()
    dockerfile = dockerfiles / "app.Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    with open_context(str(tree), work, None, dockerfile=dockerfile) as ctx:
        assert ctx.ignore.matches("debug.log")  # no app.Dockerfile.dockerignore: the context's own
    (dockerfiles / "app.Dockerfile.dockerignore").write_text("hello.txt\n")
    with open_context(str(tree), work, None, dockerfile=dockerfile) as ctx:
        assert ctx.ignore.matches("hello.txt")
        assert not ctx.ignore.matches("debug.log")
        assert ctx.dockerignore_for(None).matches("debug.log")


def test_no_dockerignore(tmp_path: Path, work: Path) -> None:
    (tmp_path / "c").mkdir()
    with open_context(str(tmp_path / "c"), work, None) as ctx:
        assert not ctx.ignore


def test_bad_dockerignore_names_its_line(tmp_path: Path, work: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / ".dockerignore").write_text("ok\n[bad\n")
    with pytest.raises(ContextError, match=r"\.dockerignore:2:"):
        open_context(str(tmp_path / "c"), work, None)


def test_tar_directory_modes_applied_after_filling(work: Path, tmp_path: Path) -> None:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("ro")
        info.type = tarfile.DIRTYPE
        info.mode = 0o555
        info.mtime = MTIME
        tar.addfile(info)
        tar.addfile(*_file("ro/inside", b"data"))

    with open_context(str(_tar_with(tmp_path, add)), work, None) as ctx:
        assert (ctx.root / "ro" / "inside").read_bytes() == b"data"
        assert os.stat(ctx.root / "ro").st_mode & 0o777 == 0o555
        assert int(os.stat(ctx.root / "ro").st_mtime) == MTIME
    assert list(work.iterdir()) == []  # removed although read-only
