"""The walking snapshotter: record the whole rootfs before a step, walk it again after, compare.

The fallback where overlay mounts are not allowed, and kaniko's --snapshot-mode:
  full  file type, mode, owner, mtime, size, link count, device, link target, xattrs and a content hash
  redo  stat only: mtime, ctime, size, mode, uid, gid, inode (no content read)
  time  mtime only (with the file type); misses chmod, chown and xattr-only changes, as kaniko's does

Content hashes in full mode are cached between scans: a file whose inode, size, mtime and ctime are unchanged
cannot have new content (every write moves ctime, and ctime cannot be set from user space), unless that ctime
is so recent that a later write could fall in the same coarse clock tick; such files are hashed again.
"""

from __future__ import annotations

import enum
import hashlib
import os
import stat
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kiln.errors import SnapshotError
from kiln.snapshot.changes import Changes, expand_declared, parent_of
from kiln.snapshot.ignore import IgnoreRules

Fingerprint = tuple[object, ...]

# A ctime at least this old when a scan starts is safe to trust (far above any filesystem's timestamp tick).
_CTIME_TRUST_NS = 1_000_000_000


class SnapshotMode(enum.Enum):
    FULL = "full"
    REDO = "redo"
    TIME = "time"


@dataclass(frozen=True)
class _HashKey:
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int


def _xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    out = []
    for name in sorted(names):
        try:
            out.append((name, os.getxattr(path, name, follow_symlinks=False)))
        except OSError:
            continue
    return tuple(out)


_NLINK = 5  # where the link count stands in a full-mode fingerprint


def _differs(before: Fingerprint | None, after: Fingerprint) -> bool:
    """Whether a path changed, as overlayfs would see it. A file that only lost a link (another of its names was
    removed) is not: overlayfs copies a file up when a link to it is made, not when one of its names goes, so the
    layer an overlay build makes leaves it out, and so does this one."""
    if before == after:
        return False
    if before is None or len(before) <= _NLINK or len(after) <= _NLINK:
        return True
    rest_same = before[:_NLINK] + before[_NLINK + 1:] == after[:_NLINK] + after[_NLINK + 1:]
    links_before, links_after = before[_NLINK], after[_NLINK]
    fewer = isinstance(links_before, int) and isinstance(links_after, int) and links_after < links_before
    return not (rest_same and fewer)


def _hash_file(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        # Vanished or unreadable between the walk and the hash: compare as different from anything.
        return f"unreadable:{exc.errno}:{time.monotonic_ns()}"


class WalkSnapshotter:
    """Snapshots root by walking it; see the module docstring for the modes."""

    def __init__(
        self,
        root: Path,
        mode: SnapshotMode = SnapshotMode.FULL,
        ignore: IgnoreRules | None = None,
        hash_workers: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.mode = mode
        self.ignore = ignore or IgnoreRules()
        self.hash_workers = hash_workers or min(16, 2 * (os.cpu_count() or 1))
        self._before: dict[str, Fingerprint] | None = None
        self._hashes: dict[str, tuple[_HashKey, str]] = {}

    def begin(self) -> None:
        self._before, _ = self._scan()

    def changes(self, declared: Iterable[str] | None) -> Changes:
        if self._before is None:
            raise SnapshotError("changes() called without begin()")
        before = self._before
        after, after_dirs = self._scan()
        changed = {p for p, fp in after.items() if _differs(before.get(p), fp)}
        if declared is not None:
            changed |= expand_declared(self.root, declared)
        deletions = []
        for path in before.keys() - after.keys():
            parent = parent_of(path)
            # Only the topmost deleted path: beneath a deleted directory, or beneath a directory that became a
            # file or symlink (and is in paths already), deletions would be redundant or even contradictory.
            if parent == "" or parent in after_dirs:
                deletions.append(path)
        self._before = after
        return Changes(self.root, tuple(sorted(changed)), tuple(sorted(deletions)))

    def _scan(self) -> tuple[dict[str, Fingerprint], set[str]]:
        """Every path under root (ignored ones left out) with its fingerprint, and which are directories."""
        started_ns = time.time_ns()
        tree: dict[str, Fingerprint] = {}
        dirs: set[str] = set()
        to_hash: list[tuple[str, _HashKey]] = []
        ignored = self.ignore.paths
        stack: list[tuple[str, str]] = [(str(self.root), "")]
        while stack:
            dir_path, dir_rel = stack.pop()
            try:
                entries = list(os.scandir(dir_path))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise SnapshotError(f"cannot read directory /{dir_rel}: {exc.strerror}") from None
            for entry in entries:
                rel = f"{dir_rel}/{entry.name}" if dir_rel else entry.name
                if rel in ignored:
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                tree[rel] = self._fingerprint(entry.path, st)
                if stat.S_ISDIR(st.st_mode):
                    dirs.add(rel)
                    stack.append((entry.path, rel))
                elif self.mode is SnapshotMode.FULL and stat.S_ISREG(st.st_mode):
                    key = _HashKey(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                    to_hash.append((rel, key))
        if self.mode is SnapshotMode.FULL:
            self._add_hashes(tree, to_hash, started_ns)
        return tree, dirs

    def _fingerprint(self, path: str, st: os.stat_result) -> Fingerprint:
        if self.mode is SnapshotMode.TIME:
            return (stat.S_IFMT(st.st_mode), st.st_mtime_ns)
        if self.mode is SnapshotMode.REDO:
            # kaniko's redo: mode, mtime, size and owner. Not ctime (the sandbox's mount stubs change a parent's
            # ctime, which cannot be put back) nor the inode.
            return (st.st_mode, st.st_mtime_ns, st.st_size, st.st_uid, st.st_gid)
        target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
        # Directory sizes and mtimes move with their entries, which are compared on their own; a directory's
        # mtime is still kept because kaniko's full mode reports it and a touched directory is a change.
        return (
            st.st_mode,
            st.st_uid,
            st.st_gid,
            st.st_mtime_ns,
            st.st_size if not stat.S_ISDIR(st.st_mode) else 0,
            st.st_nlink if not stat.S_ISDIR(st.st_mode) else 0,
            st.st_rdev,
            target,
            _xattrs(path),
        )

    def _add_hashes(self, tree: dict[str, Fingerprint], to_hash: list[tuple[str, _HashKey]], started_ns: int) -> None:
        cached = self._hashes
        fresh: dict[str, tuple[_HashKey, str]] = {}
        pending: list[tuple[str, _HashKey]] = []
        for rel, key in to_hash:
            hit = cached.get(rel)
            if hit is not None and hit[0] == key and key.ctime_ns < started_ns - _CTIME_TRUST_NS:
                fresh[rel] = hit
            else:
                pending.append((rel, key))
        root = str(self.root)
        if pending:
            # hashlib releases the GIL while digesting, so threads give real parallelism here.
            with ThreadPoolExecutor(max_workers=self.hash_workers) as pool:
                digests = pool.map(_hash_file, (f"{root}/{rel}" for rel, _ in pending), chunksize=64)
                for (rel, key), digest in zip(pending, digests, strict=True):
                    fresh[rel] = (key, digest)
        for rel, _ in to_hash:
            tree[rel] = (*tree[rel], fresh[rel][1])
        self._hashes = fresh
