"""Resolving paths inside a root the way a process chrooted into it would, without ever leaving it.

Symlinks met on the way are followed inside the root: an absolute target starts again at the root (a link to
/etc means root/etc), a relative one continues from the link's directory. A relative target whose ".." climbs
above the root is refused (UnsafePathError) rather than clamped: no sane layer needs it, and a layer that
tries it is hostile. An archive ADD unpacks is resolved as Docker (a chroot into the destination) and BuildKit
(continuity's RootPath) resolve it: there ".." at the root stays at the root (``clamp=True``), which is as safe.
The last component of a path is never followed; callers lstat or replace it.

Lower layers (a layer extracted in overlay format into a directory of its own, to be stacked on others): the
directories of the layers below, top first, make the view a path is resolved in, as overlayfs will show it
and as an extraction onto the whole root filesystem would see it (containerd's rule: layers are applied in
order, paths resolved inside the root). A name the layer's own directory lacks is looked up in the lowers
where its directory is visible (whiteouts and opaque directories hide what is below them); a symlink found
there is followed, and a directory found there is "copied up": made in the layer's directory with the lower
one's owner, mode, xattrs and mtime (containerd's mkparent with parents does the same), so that the stacked
result is the one the flat extraction gives. Without this, ``var/run/app.pid`` over a lower ``var/run -> /run``
made ``var/run`` a directory in the layer, hiding the symlink, in the overlay mode only. (Not Docker's
overlay2 nor buildah's storage, which apply a layer into its own directory and so make that directory; the
flat apply, containerd's naive applier, kiln's full mode and kaniko follow the symlink.) One difference is
left: a hardlink to a lower file that other lower paths share copies that file up alone, as overlayfs copies
up one link, so those paths stay linked to each other but not to the new link.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence

from kiln.errors import ImageFormatError, UnsafePathError
from kiln.rootfs import overlayattrs, owners

Parts = tuple[str, ...]

# Linux gives up after 40 symlinks in one lookup; so do we.
MAX_SYMLINKS = 40


# A walk holds the directory it is in open (O_PATH; opened from its parent by name, never through a symlink)
# so that each step is one system call on one name: a walk is linear in the depth of the path, which a layer
# can make thousands of directories deep (re-resolving the whole path at every step made one entry take
# seconds).
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
# ... but no deeper than a path can name (Linux: 4096 bytes with the final NUL): everything else kiln does with
# a file goes through its path, and a walk by fds alone would otherwise make any number of directories (a 300 KB
# name, 150,000 of them).
PATH_MAX = 4096

_OVERLAY_XATTRS = overlayattrs.PREFIXES


def is_whiteout_device(st: os.stat_result) -> bool:
    """overlayfs' whiteout: a character device 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque_dir(path: str) -> bool:
    try:
        return os.getxattr(path, overlayattrs.opaque(), follow_symlinks=False) == b"y"
    except OSError:
        return False


def copy_xattrs(src: str, dst: str) -> None:
    """The xattrs of ``src`` onto ``dst`` (neither followed if a symlink), overlayfs' own and the host's SELinux
    label left out."""
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if name.startswith(_OVERLAY_XATTRS) or name == "security.selinux":
            continue
        try:
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP):  # user.* on a symlink
                raise


class RootResolver:
    """Maps image directory paths to the real directories under ``root`` (following symlinks chroot-style).

    Results are cached; call ``invalidate()`` whenever a directory or symlink under the root is removed or a
    symlink is created, since either can change where a path leads.
    """

    def __init__(self, root: str, *, clamp: bool = False, lowers: Sequence[str] = ()) -> None:
        self.root = root
        self.clamp = clamp  # ".." at the root stays there (a chroot's rule) instead of being refused
        self.lowers = list(lowers)  # directories of the layers below, top first (overlay format)
        self._cache: dict[Parts, tuple[Parts, int]] = {}  # image parts -> real parts, symlinks followed
        # real parts -> the lowers in which that directory is visible (only with lowers)
        self._visible: dict[Parts, list[str]] = {(): self.lowers}
        # directories copied up from the lowers: real parts -> the lower's mtime (ns), for the caller to restore
        # once it has written below them
        self.copied_up: dict[Parts, int] = {}

    def host(self, parts: Parts) -> str:
        """The host path of real parts (parts that resolve_dir returned, plus possibly one final name)."""
        return os.path.join(self.root, *parts) if parts else self.root

    def invalidate(self) -> None:
        """Forget what was resolved: call after removing a directory or symlink, making a symlink, or marking a
        directory opaque (which hides the lowers below it)."""
        self._cache.clear()
        self._visible = {(): self.lowers}

    def lower_entry(self, real: Parts) -> tuple[str, os.stat_result] | None:
        """What the lowers show at ``real`` (its parent: real parts resolve_dir gave), topmost first: the host
        path and lstat of a visible entry, or None (absent, or whited out)."""
        if not real or not self.lowers:
            return None
        visible = self._visible.get(real[:-1])
        if visible is None:
            self.resolve_dir(real[:-1], create=False)  # (an image path of real parts is itself)
            visible = self._visible.get(real[:-1], [])
        return self.lower_in(visible, real)

    def lower_names(self, real: Parts) -> list[str]:
        """The names the lowers show in the directory ``real`` (whited-out ones left out)."""
        self.resolve_dir(real, create=False)
        seen: dict[str, bool] = {}
        for lower in self._visible.get(real, []):
            with os.scandir(os.path.join(lower, *real)) as it:
                for entry in it:
                    if entry.name not in seen:
                        seen[entry.name] = not is_whiteout_device(entry.stat(follow_symlinks=False))
        return sorted(name for name, shown in seen.items() if shown)

    def _visible_below(self, real: Parts, above: list[str]) -> list[str]:
        """The lowers in which the directory ``real`` (a real directory of the root) is visible, given those in
        which its parent is."""
        if not above or is_opaque_dir(self.host(real)):
            return []
        out = []
        for lower in above:
            path = os.path.join(lower, *real)
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if not stat.S_ISDIR(st.st_mode):
                break  # a whiteout or any non-directory hides the name in every layer below
            out.append(lower)
            if is_opaque_dir(path):
                break
        return out

    def _copy_up_dir(self, fd: int, comp: str, real: Parts, lower: str, lst: os.stat_result) -> None:
        os.mkdir(comp, 0o700, dir_fd=fd)
        owners.chown(comp, lst.st_uid, lst.st_gid, dir_fd=fd)
        os.chmod(comp, stat.S_IMODE(lst.st_mode), dir_fd=fd)  # after chown, which clears setgid
        copy_xattrs(lower, self.host(real))
        self.copied_up[real] = lst.st_mtime_ns

    def resolve_dir(self, parts: Parts, *, create: bool) -> Parts | None:
        """The real parts (every component a real directory) of the directory ``parts`` names.

        Missing directories are created (mode 0755, owned by root) when ``create``, else the answer is None.
        A component that exists but is not a directory is ImageFormatError.
        """
        cached = self._cache.get(parts)
        if cached is not None:
            return cached[0]
        # Most directories are new below one seen before: start from there.
        parent = self._cache.get(parts[:-1]) if parts else None
        if parent is not None:
            found = self._walk(parts, parent[0], parent[1], parts[-1:], create)
        else:
            found = self._walk(parts, (), 0, parts, create)
        if found is None:
            return None
        self._cache[parts] = found
        return found[0]

    def _open(self, real: Parts) -> int:
        # Every component of real parts is a real directory, the root aside (which may be a symlink).
        return os.open(self.host(real), _DIR_FLAGS | (os.O_NOFOLLOW if real else 0))

    def _walk(self, parts: Parts, base: Parts, followed: int, rest: Parts, create: bool) -> tuple[Parts, int] | None:
        pending = list(reversed(rest))
        current = list(base)
        length = len(os.fsencode(self.host(base)))  # of current's host path, in bytes
        # With lowers: for each directory of current (and the root), the lowers in which it is visible.
        visible: list[list[str]] = []
        if self.lowers:
            known = self._visible.get(base)
            if known is None:  # walk it again from the root
                base, current, pending, followed = (), [], list(reversed(parts)), 0
                length = len(os.fsencode(self.root))
                known = self.lowers
            visible = [known]
        fd = self._open(base)
        try:
            while pending:
                comp = pending.pop()
                if comp in ("", "."):
                    continue
                if comp == "..":
                    if not current:
                        if self.clamp:
                            continue
                        raise UnsafePathError(f"{'/'.join(parts)}: a symlink on the way leads outside the root")
                    length -= 1 + len(os.fsencode(current.pop()))
                    if visible:
                        visible.pop()
                    parent = os.open("..", _DIR_FLAGS, dir_fd=fd)  # a real directory's: inside the root
                    os.close(fd)
                    fd = parent
                    continue
                if length + 1 + len(os.fsencode(comp)) >= PATH_MAX:
                    # (The caller's message names the entry.)
                    raise OSError(errno.ENAMETOOLONG, f"path too long: over PATH_MAX ({PATH_MAX} bytes) on this host")
                real = (*current, comp)
                try:
                    st: os.stat_result | None = os.lstat(comp, dir_fd=fd)
                except FileNotFoundError:
                    st = None
                target: str | None = None
                if st is not None and visible and is_whiteout_device(st):
                    # This layer deleted the name: nothing of the lowers is there any more.
                    if not create:
                        return None
                    os.unlink(comp, dir_fd=fd)
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    os.chmod(comp, 0o755, dir_fd=fd)
                    os.setxattr(self.host(real), overlayattrs.opaque(), b"y", follow_symlinks=False)
                    st = None
                elif st is None:
                    lower = self.lower_in(visible[-1], real) if visible else None
                    if lower is not None and stat.S_ISLNK(lower[1].st_mode):
                        target = os.readlink(lower[0])
                    elif lower is not None and stat.S_ISDIR(lower[1].st_mode):
                        self._copy_up_dir(fd, comp, real, *lower)
                    elif lower is not None:
                        raise ImageFormatError(f"{'/'.join(parts)}: {'/'.join(real)} is not a directory")
                    elif not create:
                        return None
                    else:
                        os.mkdir(comp, 0o755, dir_fd=fd)
                        os.chmod(comp, 0o755, dir_fd=fd)  # whatever the umask
                elif stat.S_ISLNK(st.st_mode):
                    target = os.readlink(comp, dir_fd=fd)
                elif not stat.S_ISDIR(st.st_mode):
                    raise ImageFormatError(f"{'/'.join(parts)}: {'/'.join(real)} is not a directory")
                if target is not None:
                    followed += 1
                    if followed > MAX_SYMLINKS:
                        raise UnsafePathError(f"{'/'.join(parts)}: too many levels of symbolic links")
                    if target.startswith("/"):
                        current = []
                        length = len(os.fsencode(self.root))
                        os.close(fd)
                        fd = self._open(())
                        if visible:
                            visible = [self.lowers]
                    pending.extend(reversed(target.split("/")))
                    continue
                child = os.open(comp, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = child
                current.append(comp)
                length += 1 + len(os.fsencode(comp))
                if visible:
                    visible.append(self._visible_below(real, visible[-1]))
        finally:
            os.close(fd)
        if visible:
            self._visible[tuple(current)] = visible[-1]
        return tuple(current), followed

    @staticmethod
    def lower_in(visible: list[str], real: Parts) -> tuple[str, os.stat_result] | None:
        """The topmost entry at ``real`` among the lowers ``visible`` (where its parent is visible), or None
        when there is none or it is whited out."""
        for lower in visible:
            path = os.path.join(lower, *real)
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            return None if is_whiteout_device(st) else (path, st)
        return None
