"""Unpacking a build-context tarball (plain, gzip, zstd, xz or bzip2) into an empty directory, safely.

Nothing lands outside the directory: names are made relative and may not climb out with "..", no entry is
written through a symlink unpacked earlier, and hard links must point at entries inside. Symlinks themselves
are kept as they are (a context may hold links to anywhere; COPY decides what to do with them). Device nodes
and FIFOs are skipped: a context has no use for them. Owners are not applied (COPY sets its own), modes and
modification times are.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO, cast

from isal import igzip
from isal.igzip_lib import IsalError

from kiln.errors import ContextError
from kiln.layers.compress import stream_errors

_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"
_XZ = b"\xfd7zXZ\x00"
_BZIP2 = b"BZh"


def _corrupt() -> tuple[type[BaseException], ...]:
    """What a damaged or truncated archive raises somewhere in the decompressor or tarfile."""
    return (tarfile.TarError, cast(type[BaseException], IsalError), *stream_errors(), ValueError)


@contextmanager
def _decompressed(raw: BinaryIO) -> Iterator[IO[bytes]]:
    """The tar stream inside ``raw``, whatever its compression, told by its first bytes."""
    head = raw.read(6)
    raw.seek(0)
    if head.startswith(_GZIP):
        gzstream = cast(IO[bytes], igzip.IGzipFile(fileobj=raw, mode="rb"))  # type: ignore[no-untyped-call]
        with gzstream:
            yield gzstream
    elif head.startswith(_ZSTD):
        import zstandard

        with zstandard.ZstdDecompressor().stream_reader(raw, closefd=False) as zstream:
            yield zstream
    elif head.startswith(_XZ):
        import lzma

        with lzma.LZMAFile(raw, "rb") as xstream:
            yield xstream
    elif head.startswith(_BZIP2):
        import bz2

        with bz2.BZ2File(raw, "rb") as bstream:
            yield bstream
    else:
        yield raw


def is_archive(path: Path) -> bool:
    """Whether a file is a (possibly compressed) tar archive rather than, say, a Dockerfile's text."""
    with path.open("rb") as f:
        head = f.read(6)
    if head.startswith((_GZIP, _ZSTD, _XZ, _BZIP2)):
        return True
    return tarfile.is_tarfile(path)


def extract_tarball(archive: Path, dest: Path, name: str) -> None:
    """Unpack ``archive`` into the existing empty directory ``dest``. ``name`` is how errors call the context."""
    try:
        with archive.open("rb") as raw, _decompressed(raw) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            dirs: list[tuple[Path, int, float]] = []
            for member in tar:
                _extract_member(tar, member, dest, name, dirs)
            # Directories last, deepest first: writing their entries would move their times again, and a
            # read-only directory must still be writable while it is filled.
            for path, mode, mtime in sorted(dirs, key=lambda item: len(item[0].parts), reverse=True):
                os.chmod(path, mode)
                os.utime(path, (mtime, mtime), follow_symlinks=False)
    except ContextError:
        raise
    except _corrupt() as err:
        raise ContextError(f"{name}: cannot unpack the build context archive: {err}") from err


def _member_parts(member_name: str, name: str) -> list[str]:
    parts = [p for p in member_name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ContextError(f"{name}: archive entry {member_name!r} points outside the build context")
    return parts


def _safe_parent(dest: Path, parts: list[str], name: str, entry: str, create: bool = True) -> Path:
    """The directory an entry goes into, created as needed, refusing to pass through a symlink."""
    current = dest
    for part in parts[:-1]:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            if not create:
                raise ContextError(f"{name}: archive entry {entry!r} is not in the archive") from None
            os.mkdir(current, 0o755)
            continue
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise ContextError(f"{name}: archive entry {entry!r} would be written through {part!r}, not a directory")
    return current


def _remove_existing(path: Path, keep_dir: bool) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return
        # A later entry replacing a directory: rare, but tar allows it.
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _extract_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, name: str, dirs: list[tuple[Path, int, float]]
) -> None:
    parts = _member_parts(member.name, name)
    if not parts:
        return  # the archive's own root "./"
    parent = _safe_parent(dest, parts, name, member.name)
    target = parent / parts[-1]
    mode = member.mode & 0o7777
    if member.isdir():
        _remove_existing(target, keep_dir=True)
        if not target.is_dir():
            os.mkdir(target, 0o700)
        dirs.append((target, mode, member.mtime))
        return
    if member.isreg():
        _remove_existing(target, keep_dir=False)
        source = tar.extractfile(member)
        assert source is not None
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)
        os.chmod(target, mode)
    elif member.issym():
        _remove_existing(target, keep_dir=False)
        os.symlink(member.linkname, target)
    elif member.islnk():
        link_parts = _member_parts(member.linkname, name)
        if not link_parts:
            raise ContextError(f"{name}: archive entry {member.name!r} is a hard link to the root")
        link_parent = _safe_parent(dest, link_parts, name, member.linkname, create=False)
        original = link_parent / link_parts[-1]
        if not (original.is_symlink() or original.is_file()):
            raise ContextError(f"{name}: hard link {member.name!r} points at {member.linkname!r}, not a file before it")
        _remove_existing(target, keep_dir=False)
        os.link(original, target, follow_symlinks=False)
        return
    else:
        return  # devices, FIFOs: not build-context material
    os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)
