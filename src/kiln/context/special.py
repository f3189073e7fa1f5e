"""Special files (named pipes, sockets, devices) in a build context: refused, by their type, before any open().

Docker (BuildKit) re-creates a FIFO or a device it finds in a context as a node in the image and drops
sockets; it never copies one as content. kiln refuses them all with an error naming the file instead:
opening one to read it can block forever (a FIFO with no writer), never end (/dev/zero) or mean nothing (a
socket), and in a context one is nearly always debris (a dev server's socket, a forgotten mkfifo) that one
.dockerignore line removes. Their type is always told by stat, which never blocks.
"""

from __future__ import annotations

import stat

from kiln.errors import ContextError

_KINDS = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def special_kind(mode: int) -> str | None:
    """What a special file is ("a socket", ...), or None for a regular file, a directory or a symlink."""
    return _KINDS.get(stat.S_IFMT(mode))


def special_file_error(path: str, kind: str) -> ContextError:
    """The error for a special file COPY or ADD would read."""
    return ContextError(
        f"{path}: is {kind}; COPY and ADD take only regular files, directories and symlinks from the build "
        "context (exclude it in .dockerignore)"
    )
