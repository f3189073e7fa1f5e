"""Where overlayfs keeps its marks (opaque directories, redirects, metacopy), for this process.

As root of the host, overlayfs uses trusted.overlay.*. Root of a user namespace (a rootless build) cannot write
trusted.* xattrs, so there kiln mounts overlays with `userxattr`, and overlayfs reads and writes user.overlay.*
instead. Layers kiln unpacks for its overlays, and the upper directories it reads, use the one this process
mounts with; both are xattrs no layer may carry (layers/paths.is_layer_xattr).
"""

from __future__ import annotations

import functools

from kiln import linux

PREFIXES = ("trusted.overlay.", "user.overlay.")


@functools.cache
def unprivileged() -> bool:
    """Whether overlays here are mounted from a user namespace (with userxattr)."""
    return linux.in_user_namespace()


def prefix() -> str:
    return PREFIXES[1] if unprivileged() else PREFIXES[0]


def opaque() -> str:
    """The xattr that marks a directory hiding everything below it in lower layers (value "y")."""
    return prefix() + "opaque"
