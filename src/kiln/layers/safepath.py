"""Resolving paths inside a root the way a process chrooted into it would, without ever leaving it.

Symlinks met on the way are followed inside the root: an absolute target starts again at the root (a link to
/etc means root/etc), a relative one continues from the link's directory. A relative target whose ".." climbs
above the root is refused (UnsafePathError) rather than clamped: no sane layer needs it, and a layer that
tries it is hostile. An archive ADD unpacks is resolved as Docker (a chroot into the destination) and BuildKit
(continuity's RootPath) resolve it: there ".." at the root stays at the root (``clamp=True``), which is as safe.
The last component of a path is never followed; callers lstat or replace it.
"""

from __future__ import annotations

import errno
import os
import stat

from kiln.errors import ImageFormatError, UnsafePathError

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


class RootResolver:
    """Maps image directory paths to the real directories under ``root`` (following symlinks chroot-style).

    Results are cached; call ``invalidate()`` whenever a directory or symlink under the root is removed or a
    symlink is created, since either can change where a path leads.
    """

    def __init__(self, root: str, *, clamp: bool = False) -> None:
        self.root = root
        self.clamp = clamp  # ".." at the root stays there (a chroot's rule) instead of being refused
        self._cache: dict[Parts, tuple[Parts, int]] = {}  # image parts -> real parts, symlinks followed

    def host(self, parts: Parts) -> str:
        """The host path of real parts (parts that resolve_dir returned, plus possibly one final name)."""
        return os.path.join(self.root, *parts) if parts else self.root

    def invalidate(self) -> None:
        self._cache.clear()

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
                    parent = os.open("..", _DIR_FLAGS, dir_fd=fd)  # a real directory's: inside the root
                    os.close(fd)
                    fd = parent
                    continue
                if length + 1 + len(os.fsencode(comp)) >= PATH_MAX:
                    name = "/".join(parts)
                    name = name if len(name) <= 200 else f"{name[:200]}..."
                    raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), name)
                try:
                    st: os.stat_result | None = os.lstat(comp, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        return None
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    os.chmod(comp, 0o755, dir_fd=fd)  # whatever the umask
                    st = None
                if st is not None and stat.S_ISLNK(st.st_mode):
                    followed += 1
                    if followed > MAX_SYMLINKS:
                        raise UnsafePathError(f"{'/'.join(parts)}: too many levels of symbolic links")
                    target = os.readlink(comp, dir_fd=fd)
                    if target.startswith("/"):
                        current = []
                        length = len(os.fsencode(self.root))
                        os.close(fd)
                        fd = self._open(())
                    pending.extend(reversed(target.split("/")))
                    continue
                if st is not None and not stat.S_ISDIR(st.st_mode):
                    raise ImageFormatError(f"{'/'.join(parts)}: {'/'.join((*current, comp))} is not a directory")
                child = os.open(comp, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = child
                current.append(comp)
                length += 1 + len(os.fsencode(comp))
        finally:
            os.close(fd)
        return tuple(current), followed
