"""Resolving paths inside a root the way a process chrooted into it would, without ever leaving it.

Symlinks met on the way are followed inside the root: an absolute target starts again at the root (a link to
/etc means root/etc), a relative one continues from the link's directory. A relative target whose ".." climbs
above the root is refused (UnsafePathError) rather than clamped: no sane layer needs it, and a layer that
tries it is hostile. The last component of a path is never followed; callers lstat or replace it.
"""

from __future__ import annotations

import os
import stat

from kiln.errors import ImageFormatError, UnsafePathError

Parts = tuple[str, ...]

# Linux gives up after 40 symlinks in one lookup; so do we.
MAX_SYMLINKS = 40


class RootResolver:
    """Maps image directory paths to the real directories under ``root`` (following symlinks chroot-style).

    Results are cached; call ``invalidate()`` whenever a directory or symlink under the root is removed or a
    symlink is created, since either can change where a path leads.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self._cache: dict[Parts, Parts] = {}

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
            return cached
        real = self._walk(parts, create)
        if real is not None:
            self._cache[parts] = real
        return real

    def _walk(self, parts: Parts, create: bool) -> Parts | None:
        pending = list(reversed(parts))
        current: list[str] = []
        followed = 0
        while pending:
            comp = pending.pop()
            if comp in ("", "."):
                continue
            if comp == "..":
                if not current:
                    raise UnsafePathError(f"{'/'.join(parts)}: a symlink on the way leads outside the root")
                current.pop()
                continue
            candidate = [*current, comp]
            host = os.path.join(self.root, *candidate)
            try:
                st = os.lstat(host)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(host, 0o755)
                os.chmod(host, 0o755)  # whatever the umask
                current = candidate
                continue
            if stat.S_ISLNK(st.st_mode):
                followed += 1
                if followed > MAX_SYMLINKS:
                    raise UnsafePathError(f"{'/'.join(parts)}: too many levels of symbolic links")
                target = os.readlink(host)
                if target.startswith("/"):
                    current = []
                pending.extend(reversed(target.split("/")))
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise ImageFormatError(f"{'/'.join(parts)}: {'/'.join(candidate)} is not a directory")
            current = candidate
        return tuple(current)
