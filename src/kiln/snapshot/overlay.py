"""The overlay snapshotter: a step runs on an overlay with a fresh upper dir, and the upper dir is the change.

In the upper dir (overlayfs's own format, see the kernel's Documentation/filesystems/overlayfs.rst):
- a regular entry is an addition or a modification;
- a character device 0/0 is a whiteout: the path was deleted;
- a directory with trusted.overlay.opaque=y hides everything the lowers have beneath it. Layer tars carry
  explicit whiteouts (BuildKit style), so the deletions are listed one by one from the lowers' view of that
  directory (the only place the lowers are walked);
- a directory can also be there only because overlay copied it up on the way to something that was later
  removed (a file created and deleted, a sandbox mount stub). With the lowers' mode, owner, xattrs and mtime
  and no changed descendants it is no change. The same holds for a file copied up by an open for writing that
  wrote nothing (same metadata and bytes, and not hard linked).

Cost is proportional to the upper dir: each upper entry is looked up in the lowers with lstat, never the lowers
walked, except beneath opaque directories.

kiln mounts with metacopy=off and redirect_dir=off (see kiln.store.overlaymount), so an upper file always holds
its data and a renamed directory is copied whole. An upper dir made otherwise carries
trusted.overlay.metacopy or trusted.overlay.redirect; rather than guess at such a layer it is refused.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from kiln.errors import SnapshotError
from kiln.rootfs import overlayattrs
from kiln.snapshot.changes import Changes, ancestors, expand_declared, prune_nested
from kiln.snapshot.ignore import IgnoreRules

_CHUNK = 1 << 20


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _getxattr(path: Path, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def is_opaque(path: Path) -> bool:
    return _getxattr(path, overlayattrs.opaque()) == b"y"


def _user_xattrs(path: Path) -> dict[str, bytes]:
    """The xattrs of path except overlayfs's own bookkeeping."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for name in names:
        if name.startswith(overlayattrs.PREFIXES):
            continue
        value = _getxattr(path, name)
        if value is not None:
            out[name] = value
    return out


def _same_bytes(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(_CHUNK), fb.read(_CHUNK)
            if ca != cb:
                return False
            if not ca:
                return True


class OverlaySnapshotter:
    """Reads the changes of a step from the upper dir of the overlay it ran on.

    lowers: the layer directories of the overlay, top first (overlay format: whiteouts as 0/0 devices, opaque
    xattrs). merged: the mounted overlay, needed only when declared paths reach content that is not in the
    upper dir (a declared directory that already existed with files); Changes.root is then merged.
    """

    def __init__(
        self,
        upper: Path,
        lowers: Sequence[Path],
        *,
        merged: Path | None = None,
        ignore: IgnoreRules | None = None,
    ) -> None:
        self.upper = Path(upper)
        self.lowers = [Path(p) for p in lowers]
        self.merged = Path(merged) if merged is not None else None
        self.ignore = ignore or IgnoreRules()

    def begin(self) -> None:
        try:
            leftovers = os.listdir(self.upper)
        except OSError as exc:
            raise SnapshotError(f"overlay upper dir {self.upper}: {exc.strerror}") from None
        if leftovers:
            raise SnapshotError(f"overlay upper dir {self.upper} is not fresh: it holds {sorted(leftovers)[:5]}")

    def changes(self, declared: Iterable[str] | None) -> Changes:
        paths: set[str] = set()
        deletions: list[str] = []
        quiet_dirs: list[str] = []
        self._scan(paths, deletions, quiet_dirs)
        touched = {a for p in (*paths, *deletions) for a in ancestors(p)}
        paths.update(d for d in quiet_dirs if d in touched)
        root = self.upper
        if declared is not None:
            declared = list(declared)
            view = self.merged if self.merged is not None else self.upper
            wanted = expand_declared(view, declared)
            if self.merged is not None and any(not os.path.lexists(self.upper / p) for p in wanted):
                root = self.merged
            paths |= wanted
        return Changes(root, tuple(sorted(paths)), tuple(prune_nested(deletions)))

    def _scan(self, paths: set[str], deletions: list[str], quiet_dirs: list[str]) -> None:
        ignored = self.ignore.paths
        # (image path of a directory in upper, the lower layers in which it is a visible directory)
        stack: list[tuple[str, list[Path]]] = [("", list(self.lowers))]
        while stack:
            dir_rel, visible = stack.pop()
            with os.scandir(self.upper / dir_rel if dir_rel else self.upper) as it:
                names = [e.name for e in it]
            for name in names:
                rel = f"{dir_rel}/{name}" if dir_rel else name
                if rel in ignored:
                    continue
                upath = self.upper / rel
                st = os.lstat(upath)
                if is_whiteout(st):
                    deletions.append(rel)
                    continue
                for refused in (overlayattrs.prefix() + "metacopy", overlayattrs.prefix() + "redirect"):
                    if _getxattr(upath, refused) is not None:
                        raise SnapshotError(
                            f"overlay upper entry /{rel} has {refused}: the overlay was mounted with metacopy or "
                            "redirect_dir on; kiln reads only uppers made with both off"
                        )
                lower, lower_st, child_visible = self._lookup(visible, rel)
                if stat.S_ISDIR(st.st_mode):
                    if is_opaque(upath):
                        paths.add(rel)
                        if child_visible:
                            deletions.extend(self._hidden_by_opaque(rel, child_visible))
                        stack.append((rel, []))
                    elif lower is None or lower_st is None or not stat.S_ISDIR(lower_st.st_mode):
                        paths.add(rel)
                        stack.append((rel, []))
                    else:
                        if self._same_meta(upath, st, lower, lower_st):
                            quiet_dirs.append(rel)
                        else:
                            paths.add(rel)
                        stack.append((rel, child_visible))
                elif lower is None or lower_st is None or not self._redundant_copy_up(upath, st, lower, lower_st):
                    paths.add(rel)

    def _lookup(self, visible: Sequence[Path], rel: str) -> tuple[Path | None, os.stat_result | None, list[Path]]:
        """The topmost lower entry for rel (None if absent or whited out), and the layers where it is a
        visible directory, top first (the lookup overlayfs does, restricted to where the parent was visible)."""
        found: Path | None = None
        found_st: os.stat_result | None = None
        dirs: list[Path] = []
        for layer in visible:
            path = layer / rel
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if found is None and not dirs:
                if is_whiteout(st):
                    break
                found, found_st = path, st
            if not stat.S_ISDIR(st.st_mode):
                # A whiteout or non-directory hides the same name in every layer below.
                break
            dirs.append(layer)
            if is_opaque(path):
                break
        return found, found_st, dirs

    def _hidden_by_opaque(self, rel: str, visible: Sequence[Path]) -> list[str]:
        """Deletions that make an opaque upper directory rel explicit: every entry the lowers show beneath rel
        and the upper does not have (recursing where both have a directory: its old content is hidden too)."""
        out: list[str] = []
        stack: list[tuple[str, Sequence[Path]]] = [(rel, visible)]
        while stack:
            dir_rel, layers = stack.pop()
            lower_names: dict[str, bool] = {}  # name -> visible (False: whited out in a higher layer)
            for layer in layers:
                with os.scandir(layer / dir_rel) as it:
                    for entry in it:
                        if entry.name not in lower_names:
                            st = entry.stat(follow_symlinks=False)
                            lower_names[entry.name] = not is_whiteout(st)
            for name, present in sorted(lower_names.items()):
                child = f"{dir_rel}/{name}"
                if not present or self.ignore.is_ignored(child):
                    continue
                upath = self.upper / child
                try:
                    ust = os.lstat(upath)
                except FileNotFoundError:
                    out.append(child)
                    continue
                if stat.S_ISDIR(ust.st_mode):
                    _, _, child_layers = self._lookup(layers, child)
                    if child_layers:
                        stack.append((child, child_layers))
        return out

    @staticmethod
    def _same_meta(upath: Path, st: os.stat_result, lower: Path, lst: os.stat_result) -> bool:
        return (
            st.st_mode == lst.st_mode
            and st.st_uid == lst.st_uid
            and st.st_gid == lst.st_gid
            and st.st_mtime_ns == lst.st_mtime_ns
            and _user_xattrs(upath) == _user_xattrs(lower)
        )

    def _redundant_copy_up(self, upath: Path, st: os.stat_result, lower: Path, lst: os.stat_result) -> bool:
        """A non-directory copied up unchanged: same metadata and content, and no new hard link to it."""
        if st.st_nlink != 1 or st.st_size != lst.st_size or st.st_rdev != lst.st_rdev:
            return False
        if not self._same_meta(upath, st, lower, lst):
            return False
        if stat.S_ISLNK(st.st_mode):
            return os.readlink(upath) == os.readlink(lower)
        if stat.S_ISREG(st.st_mode):
            return _same_bytes(upath, lower)
        return True
