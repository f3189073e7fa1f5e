"""Extracting a layer tar onto a root, safely, in one of two shapes.

mode "apply": the root is the whole filesystem so far (one directory); whiteouts delete from it. A whiteout
only removes what lower layers put there, never what this same layer adds (OCI image spec), whatever the
order of the entries: what this layer added is tracked, and an opaque directory or a whited-out directory
this layer re-creates keeps this layer's entries.

mode "overlay": the root is an empty directory for this layer alone, later stacked by overlayfs as a
lowerdir; whiteouts are written in overlayfs' own terms: ``.wh.name`` becomes a character device 0/0 named
``name``, ``.wh..wh..opq`` sets trusted.overlay.opaque=y on its directory (and a directory this layer both
whites out and re-creates becomes opaque).

Safety: entry names and hardlink targets that are absolute or climb out with ".." are refused, and every
parent path is resolved inside the root the way a chrooted process would see it (see safepath), so nothing
outside the root is ever created, written, linked or removed. overlayfs' own xattrs in a layer are ignored,
so a layer cannot steer the overlay mount (redirects, metacopy).

Skipping (kiln's in-place mode, which extracts onto a live root): an optional ``skip(path)`` names real paths
(relative to the root, symlinks on the way resolved) that are left exactly as they are: an entry landing
there is not written, a whiteout there removes nothing, an opaque directory keeps them. A directory that
holds skipped paths must itself be skipped, or a layer replacing it (with a file, a symlink) removes it whole.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, cast

from kiln.errors import ImageFormatError, KilnError, UnsafePathError
from kiln.layers.compress import Readable, open_decompressed
from kiln.layers.paths import (
    AUFS_META_PREFIX,
    OPAQUE_MARKER,
    OVERLAY_OPAQUE_XATTR,
    WHITEOUT_PREFIX,
    XATTR_PAX_PREFIX,
    is_layer_xattr,
    split_image_path,
)
from kiln.layers.safepath import Parts, RootResolver

ExtractMode = Literal["apply", "overlay"]
_CHUNK = 1 << 20


class ExtractError(KilnError):
    """The file system refused a change while a layer was extracted (no space, no permission, ...)."""


@dataclass(frozen=True)
class ExtractStats:
    entries: int
    content_bytes: int
    whiteouts: int
    diff_id: str  # sha256 of the uncompressed tar, for checking against the image config


class _HashingReader:
    def __init__(self, inner: Readable) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self.sha.update(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


# tarfile's header errors are not in its stubs (nor its __all__), but they are what tells a clean end of
# the archive from a corrupt one.
_EOF_HEADER: type[Exception] = tarfile.EOFHeaderError  # type: ignore[attr-defined]
_EMPTY_HEADER: type[Exception] = tarfile.EmptyHeaderError  # type: ignore[attr-defined]
_BAD_HEADER: tuple[type[Exception], ...] = (
    tarfile.TruncatedHeaderError,  # type: ignore[attr-defined]
    tarfile.InvalidHeaderError,  # type: ignore[attr-defined]
    tarfile.SubsequentHeaderError,  # type: ignore[attr-defined]
)


class _StrictTarFile(tarfile.TarFile):
    """tarfile.TarFile that reports a corrupt or truncated header instead of ending the archive there.

    (tarfile stops silently at a bad header anywhere but the first one.) An archive that ends exactly on a
    block boundary without the end-of-archive blocks is accepted, as Go's archive/tar does.
    """

    def next(self) -> tarfile.TarInfo | None:
        if self.firstmember is not None:  # type: ignore[has-type]
            first: tarfile.TarInfo = self.firstmember  # type: ignore[has-type]
            self.firstmember = None
            return first
        if self._loaded:  # type: ignore[has-type]
            return None  # the end was seen already
        fileobj = self.fileobj
        assert fileobj is not None
        if self.offset != fileobj.tell():
            if self.offset == 0:
                return None
            fileobj.seek(self.offset - 1)
            if not fileobj.read(1):
                raise tarfile.ReadError("unexpected end of data")
        try:
            return self.tarinfo.fromtarfile(self)
        except _EOF_HEADER:
            pass
        except _EMPTY_HEADER:
            if self.offset == 0:
                raise tarfile.ReadError("empty file") from None
        except _BAD_HEADER as e:
            raise tarfile.ReadError(f"bad header: {e}") from None
        self._loaded = True
        return None


def _mtime_ns(info: tarfile.TarInfo) -> int:
    return round(info.mtime * 1_000_000_000)


def _lstat(host: str) -> os.stat_result | None:
    try:
        return os.lstat(host)
    except FileNotFoundError:
        return None


SkipFn = Callable[[str], bool]


class _Extractor:
    def __init__(self, root: str, mode: ExtractMode, skip: SkipFn | None = None) -> None:
        self.root = root
        self.mode = mode
        self.skip = skip
        self.resolver = RootResolver(root)
        self.added: set[Parts] = set()  # real paths this layer created
        self.holds_added: set[Parts] = set()  # real directories with something this layer created below
        self.whited: set[Parts] = set()  # overlay mode: whiteout devices this layer created
        self.dir_mtimes: dict[Parts, int] = {}
        self.entries = 0
        self.content_bytes = 0
        self.whiteouts = 0

    # -- bookkeeping

    def mark_added(self, real: Parts) -> None:
        self.added.add(real)
        for i in range(len(real)):
            self.holds_added.add(real[:i])

    def is_ours(self, real: Parts) -> bool:
        return real in self.added or real in self.holds_added

    def skipped(self, parent_parts: Parts, name: str) -> bool:
        """Whether ``parent/name`` lands on a skipped path, found without creating anything."""
        if self.skip is None:
            return False
        # The deepest existing directory on the way, resolved; what is still missing below it is taken as is.
        for i in range(len(parent_parts), -1, -1):
            real = self.resolver.resolve_dir(parent_parts[:i], create=False)
            if real is not None:
                return self.skip("/".join((*real, *parent_parts[i:], name)))
        return self.skip("/".join((*parent_parts, name)))  # pragma: no cover - the root always resolves

    def remove(self, host: str, st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(host)
        else:
            os.unlink(host)
        # Only directories and symlinks take part in resolving paths; replacing files (most of a layer
        # over an older one) keeps the resolver's cache.
        if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
            self.resolver.invalidate()

    # -- entries

    def apply(self, tf: tarfile.TarFile, info: tarfile.TarInfo) -> None:
        self.entries += 1
        if info.name.startswith("/"):
            raise UnsafePathError("absolute path in a layer")
        parts = split_image_path(info.name)
        if not parts:
            return  # the root itself: its metadata belongs to whoever made the root
        name = parts[-1]
        if name.startswith(WHITEOUT_PREFIX):
            self.whiteout(parts[:-1], name)
            return
        if self.skipped(parts[:-1], name):
            return
        parent = self.resolver.resolve_dir(parts[:-1], create=True)
        assert parent is not None
        real = (*parent, name)
        host = self.resolver.host(real)
        existing = _lstat(host)
        if info.isdir():
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                self.remove(host, existing)
                existing = None
            if existing is None:
                os.mkdir(host, 0o700)
            self.metadata(host, info)
            self.dir_mtimes[real] = _mtime_ns(info)
            if real in self.whited:
                os.setxattr(host, OVERLAY_OPAQUE_XATTR, b"y")
        elif info.islnk():
            self.hardlink(host, existing, info)
        else:
            if existing is not None:
                self.remove(host, existing)
            if info.issym():
                os.symlink(info.linkname, host)
                self.resolver.invalidate()
                self.metadata(host, info, symlink=True)
            elif info.ischr() or info.isblk():
                kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK
                os.mknod(host, kind | 0o600, os.makedev(info.devmajor, info.devminor))
                self.metadata(host, info)
            elif info.isfifo():
                os.mkfifo(host, 0o600)
                self.metadata(host, info)
            else:  # regular files, and unknown types, which tar readers treat as regular files
                self.regular(tf, host, info)
        self.mark_added(real)

    def regular(self, tf: tarfile.TarFile, host: str, info: tarfile.TarInfo) -> None:
        fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            data = tf.extractfile(info)
            if data is not None:
                while chunk := data.read(_CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                    self.content_bytes += len(chunk)
            self.metadata(fd, info)
        finally:
            os.close(fd)

    def hardlink(self, host: str, existing: os.stat_result | None, info: tarfile.TarInfo) -> None:
        if info.linkname.startswith("/"):
            raise UnsafePathError(f"hardlink to absolute path {info.linkname!r}")
        target = split_image_path(info.linkname)
        if not target:
            raise ImageFormatError("hardlink to the root directory")
        tparent = self.resolver.resolve_dir(target[:-1], create=False)
        thost = self.resolver.host((*tparent, target[-1])) if tparent is not None else None
        tst = _lstat(thost) if thost is not None else None
        if thost is None or tst is None:
            raise ImageFormatError(f"hardlink target {info.linkname!r} does not exist")
        if stat.S_ISDIR(tst.st_mode):
            raise ImageFormatError(f"hardlink target {info.linkname!r} is a directory")
        if self.skip is not None and self.skip("/".join((*(tparent or ()), target[-1]))):
            return  # a link to a skipped file would bring that file (not the layer's) into the root
        if existing is not None:
            if (existing.st_dev, existing.st_ino) == (tst.st_dev, tst.st_ino):
                return
            self.remove(host, existing)
        os.link(thost, host, follow_symlinks=False)

    def metadata(self, target: str | int, info: tarfile.TarInfo, *, symlink: bool = False) -> None:
        # chown first: it clears setuid/setgid bits and security.capability.
        nofollow = isinstance(target, str)  # an fd is the file itself; os refuses the flag with one
        os.chown(target, info.uid, info.gid, follow_symlinks=not nofollow)
        if not symlink:
            os.chmod(target, info.mode & 0o7777)
        for key, value in info.pax_headers.items():
            if not key.startswith(XATTR_PAX_PREFIX):
                continue
            attr = key[len(XATTR_PAX_PREFIX) :]
            if not is_layer_xattr(attr):
                continue
            try:
                os.setxattr(
                    target, attr, value.encode("utf-8", "surrogateescape"), follow_symlinks=not nofollow
                )
            except OSError as e:
                # Linux allows no user.* xattrs on symlinks; a layer made elsewhere may carry them.
                if not (symlink and e.errno in (errno.EPERM, errno.ENOTSUP)):
                    raise
        if not info.isdir():
            ns = _mtime_ns(info)
            os.utime(target, ns=(ns, ns), follow_symlinks=not nofollow)

    # -- whiteouts

    def whiteout(self, parent_parts: Parts, name: str) -> None:
        self.whiteouts += 1
        if name.startswith(AUFS_META_PREFIX) and name != OPAQUE_MARKER:
            return
        parent = self.resolver.resolve_dir(parent_parts, create=self.mode == "overlay")
        if parent is None:
            return  # nothing there to hide
        if self.skip is not None and self.skip("/".join(parent)):
            return
        if name == OPAQUE_MARKER:
            if self.mode == "overlay":
                os.setxattr(self.resolver.host(parent), OVERLAY_OPAQUE_XATTR, b"y")
            else:
                self.prune_lower(parent)
            return
        hidden = name[len(WHITEOUT_PREFIX) :]
        if not hidden or hidden in (".", "..") or "/" in hidden:
            raise ImageFormatError(f"bad whiteout name {name!r}")
        real = (*parent, hidden)
        if self.skip is not None and self.skip("/".join(real)):
            return
        host = self.resolver.host(real)
        st = _lstat(host)
        if self.is_ours(real):
            # Re-created by this layer: only what lower layers had under it goes.
            if st is not None and stat.S_ISDIR(st.st_mode):
                if self.mode == "overlay":
                    os.setxattr(host, OVERLAY_OPAQUE_XATTR, b"y")
                else:
                    self.prune_lower(real)
            return
        if self.mode == "overlay":
            if st is None:
                os.mknod(host, stat.S_IFCHR | 0o000, os.makedev(0, 0))
                self.whited.add(real)
        elif st is not None:
            self.remove(host, st)

    def prune_lower(self, directory: Parts) -> None:
        """Remove everything under ``directory`` that this layer did not add."""
        host = self.resolver.host(directory)
        for child in os.listdir(host):
            real = (*directory, child)
            child_host = os.path.join(host, child)
            st = os.lstat(child_host)
            if self.skip is not None and self.skip("/".join(real)):
                continue
            if not self.is_ours(real):
                self.remove(child_host, st)
            elif stat.S_ISDIR(st.st_mode):
                self.prune_lower(real)

    def finish(self) -> None:
        # Directory mtimes last: creating their content changed them. Only where the directory still is
        # what it was (a later entry may have replaced a parent with a symlink).
        for real, ns in self.dir_mtimes.items():
            if self.resolver.resolve_dir(real, create=False) != real:
                continue
            os.utime(self.resolver.host(real), ns=(ns, ns), follow_symlinks=False)


def extract_layer(
    src: Readable, root: Path, *, mode: ExtractMode = "apply", label: str = "layer", skip: SkipFn | None = None
) -> ExtractStats:
    """Extract the layer tar in ``src`` (plain or gzip/zstd/bzip2/xz compressed) onto ``root`` (made if missing).

    We run as root: owners are set numerically, modes with setuid/setgid/sticky, xattrs including
    security.capability. ``label`` names the layer in error messages. A malformed or truncated layer is
    ImageFormatError naming the entry being extracted; an entry that would land outside ``root``
    UnsafePathError (raised before anything outside is touched). ``skip``: see the module docstring.
    """
    if mode not in ("apply", "overlay"):
        raise ValueError(f"unknown extract mode {mode!r}")
    os.makedirs(root, exist_ok=True)
    extractor = _Extractor(os.fspath(root), mode, skip)
    stream = _HashingReader(open_decompressed(src))
    current = "(start of the archive)"
    try:
        tf = _StrictTarFile.open(
            fileobj=cast(BinaryIO, stream), mode="r|", encoding="utf-8", errors="surrogateescape"
        )
        while (info := tf.next()) is not None:
            current = info.name
            extractor.apply(tf, info)
        current = "(end of the archive)"
        stream.drain()
        extractor.finish()
    except UnsafePathError as e:
        raise UnsafePathError(f"{label}: {current}: {e}") from e
    except ImageFormatError as e:
        raise ImageFormatError(f"{label}: {current}: {e}") from e
    except (tarfile.TarError, EOFError) as e:
        raise ImageFormatError(f"{label}: {current}: corrupt or truncated tar: {e}") from e
    except OSError as e:
        raise ExtractError(f"{label}: {current}: {e}") from e
    return ExtractStats(
        entries=extractor.entries,
        content_bytes=extractor.content_bytes,
        whiteouts=extractor.whiteouts,
        diff_id="sha256:" + stream.sha.hexdigest(),
    )
