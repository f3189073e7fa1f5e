"""Named pipes, sockets and devices in a build context: refused with an error naming them, never opened.

Every test runs under a short timeout: the bug these guard against is an open() of a FIFO that never returns.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.context.dockerignore import DockerIgnore
from kiln.context.opener import BuildContext, open_context
from kiln.context.sources import iter_tree, resolve_sources
from kiln.engine.steps.add import is_archive
from kiln.errors import ContextError

pytestmark = pytest.mark.timeout(20)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a device needs root")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "ok.txt").write_text("ok\n")
    (root / "app.py").write_text("print()\n")
    os.mkfifo(root / "fifo")
    os.mkfifo(root / "dir" / "pipe")
    os.symlink("fifo", root / "to-fifo")
    return root


def ctx_of(root: Path, ignore: str = "") -> BuildContext:
    return BuildContext(root=root, ignore=DockerIgnore.parse(ignore), name=str(root))


@pytest.fixture
def unix_socket(root: Path) -> Iterator[Path]:
    path = root / "dir" / "app.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        yield path
    finally:
        sock.close()


def test_a_named_fifo_is_an_error_naming_it(root: Path) -> None:
    with pytest.raises(ContextError, match=r"^fifo: is a named pipe \(FIFO\); COPY and ADD take only regular"):
        resolve_sources(ctx_of(root), ["fifo"])


def test_a_symlink_to_a_fifo_names_both(root: Path) -> None:
    with pytest.raises(ContextError, match=r"^to-fifo \(symlink to fifo\): is a named pipe"):
        resolve_sources(ctx_of(root), ["to-fifo"])


def test_a_wildcard_matching_a_fifo_is_an_error(root: Path) -> None:
    with pytest.raises(ContextError, match=r"^fifo: is a named pipe"):
        resolve_sources(ctx_of(root), ["f*"])


def test_a_fifo_met_walking_a_directory_is_an_error(root: Path) -> None:
    (source,) = resolve_sources(ctx_of(root), ["dir"])  # the directory itself resolves
    assert source.is_dir
    with pytest.raises(ContextError, match=r"^dir/pipe: is a named pipe"):
        list(iter_tree(ctx_of(root), "dir"))


def test_a_socket_met_walking_is_an_error(root: Path, unix_socket: Path) -> None:
    os.unlink(root / "dir" / "pipe")
    with pytest.raises(ContextError, match=r"^dir/app\.sock: is a socket"):
        list(iter_tree(ctx_of(root), "."))


@needs_root
def test_devices_are_errors(root: Path) -> None:
    os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(root / "loop", stat.S_IFBLK | 0o600, os.makedev(7, 0))
    with pytest.raises(ContextError, match=r"^null: is a character device"):
        resolve_sources(ctx_of(root), ["null"])
    with pytest.raises(ContextError, match=r"^loop: is a block device"):
        resolve_sources(ctx_of(root), ["loop"])


def test_special_files_excluded_by_dockerignore_are_simply_absent(root: Path, unix_socket: Path) -> None:
    ctx = ctx_of(root, "fifo\n**/pipe\n*.sock\n**/*.sock\n")
    assert list(iter_tree(ctx, ".")) == ["app.py", "dir", "dir/ok.txt", "to-fifo"]
    with pytest.raises(ContextError, match=r"^fifo: file not found in build context or excluded"):
        resolve_sources(ctx, ["fifo"])


def test_regular_files_and_symlinks_still_resolve(root: Path) -> None:
    ctx = ctx_of(root)
    assert [s.rel for s in resolve_sources(ctx, ["app.py", "dir/ok.txt"])] == ["app.py", "dir/ok.txt"]


def test_add_never_opens_a_fifo_to_sniff_an_archive(root: Path) -> None:
    assert not is_archive(root / "fifo")


def test_a_fifo_dockerignore_is_an_error(root: Path, tmp_path: Path) -> None:
    os.mkfifo(root / ".dockerignore")
    with pytest.raises(ContextError, match=r"\.dockerignore: is a named pipe \(FIFO\), not a regular file$"):
        open_context(str(root), tmp_path / "work")


def test_a_dockerignore_linked_to_a_device_is_an_error(root: Path, tmp_path: Path) -> None:
    # /dev/null reads as empty; /dev/zero (which would never end) is refused the same way.
    os.symlink("/dev/null", root / ".dockerignore")
    with pytest.raises(ContextError, match=r"\.dockerignore: is a character device, not a regular file$"):
        open_context(str(root), tmp_path / "work")


def test_a_fifo_dockerfile_dockerignore_is_an_error(root: Path, tmp_path: Path) -> None:
    (root / "Dockerfile").write_text("FROM scratch\n")
    os.mkfifo(root / "Dockerfile.dockerignore")
    with pytest.raises(ContextError, match=r"Dockerfile\.dockerignore: is a named pipe"):
        open_context(str(root), tmp_path / "work", dockerfile=root / "Dockerfile")


def test_a_fifo_as_the_context_itself_is_an_error(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "ctx.tar")
    with pytest.raises(ContextError, match=r"ctx\.tar: the build context is a named pipe \(FIFO\), not a dir"):
        open_context(str(tmp_path / "ctx.tar"), tmp_path / "work")
