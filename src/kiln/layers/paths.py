"""Image paths and the names layer tars give special meaning to (whiteouts, overlayfs' own xattrs)."""

from __future__ import annotations

import os

from kiln.errors import UnsafePathError
from kiln.rootfs import overlayattrs

WHITEOUT_PREFIX = ".wh."
# A directory whose lower-layer content is hidden entirely (read, never written by kiln).
OPAQUE_MARKER = ".wh..wh..opq"
# aufs' own bookkeeping (".wh..wh.plnk", ".wh..wh.aufs"): never content.
AUFS_META_PREFIX = ".wh..wh."

XATTR_PAX_PREFIX = "SCHILY.xattr."

# overlayfs keeps its state in these; copying them into or out of a layer would let a layer steer the
# overlay mount (redirects, metacopy) or leak the build's overlay state into the image.
_OVERLAY_XATTR_PREFIXES = overlayattrs.PREFIXES
# The host's SELinux label says nothing about the image and would make layers differ between machines.
_HOST_XATTRS = frozenset({"security.selinux"})


def is_layer_xattr(name: str) -> bool:
    """Whether an xattr belongs in a layer (and may be set when extracting one)."""
    return not name.startswith(_OVERLAY_XATTR_PREFIXES) and name not in _HOST_XATTRS


def split_image_path(path: str) -> tuple[str, ...]:
    """The components of a relative image path; "", "." and "/" give ().

    A leading "/" or "./" is dropped, "." components vanish, ".." that stays inside is folded;
    ".." that would climb above the root is UnsafePathError.
    """
    parts: list[str] = []
    for comp in path.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                raise UnsafePathError(f"{path!r}: path leads outside the root")
            parts.pop()
            continue
        parts.append(comp)
    return tuple(parts)


def join_parts(parts: tuple[str, ...]) -> str:
    return "/".join(parts)


def sort_key(parts: tuple[str, ...]) -> tuple[tuple[int, bytes], ...]:
    """Order of entries in a layer: by path component (parents before children), byte-wise.

    Within one directory, whiteouts come before everything else: a whiteout only ever removes what lower
    layers put there, so extractors that apply entries in order (and do not track what this layer added)
    still get the right result when a deleted name is re-created in the same layer.
    """
    if not parts:
        return ()
    last = parts[-1]
    rank = 0 if last.startswith(WHITEOUT_PREFIX) else 1
    return tuple((1, os.fsencode(p)) for p in parts[:-1]) + ((rank, os.fsencode(last)),)
