"""`kiln prune`'s logic: which of kiln's stored things go, by last use and by total size, as `buildx prune` does.

What a kiln dir holds, each kind pruned entry by entry:
- blobs (``blobs/``): pulled and built layers, configs, manifests; last use: the blob's mtime (a build sets it);
- unpacked layers (``layers/``): last use: their lock file's mtime (kiln.store.layerstore);
- layer-cache entries of a local cache directory (``cache/``, or ``--cache-repo=oci:PATH``): an entry and its
  blob (the blob goes with the last entry naming it); last use: the later of the entry's and the blob's mtime;
- cache-mount directories (``cache-mounts/``): last use: their use lock's mtime (engine/steps/cachemount.py).
What a running build uses is never taken: blobs and layers it recorded (kiln.store.inuse), cache-mount
directories whose use lock is held. Leftovers of interrupted work (a dead extraction, a half-written blob) count
as never used.

buildx's rules: ``until=D`` makes only entries unused for longer than D candidates; ``keep_storage`` removes
candidates, least recently used first, until everything left (candidates or not, in use or not) takes at most that
many bytes; without keep_storage every candidate goes. The size is what du counts, hard links once.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from kiln.layers.extract import remove_tree
from kiln.store.diskusage import DiskUsage, Footprint
from kiln.store.inuse import cache_mount_use_lock, pruning
from kiln.store.layerstore import LayerStore
from kiln.store.locking import lock_fd
from kiln.transports.blobstore import BlobStore

# A temporary file or an entry's blob without an entry, younger than this, may be one being written right now
# (a link or copy not yet renamed, an entry's blob whose entry comes next): left for a later prune.
WRITE_GRACE = 600.0
_HEX = re.compile(r"^[0-9a-f]{64}$")

KINDS = ("blobs", "unpacked layers", "layer cache", "cache mounts", "registry cache")


@dataclass(frozen=True)
class Policy:
    """What to remove: entries unused for longer than ``until`` seconds (None: any), and only as many as it takes
    to bring the total to ``keep_storage`` bytes (None: all of them)."""

    until: float | None = None
    keep_storage: int | None = None
    now: float = field(default_factory=time.time)

    def candidate(self, last_used: float) -> bool:
        return self.until is None or self.now - last_used > self.until


@dataclass
class Entry:
    kind: str
    name: str
    last_used: float
    footprint: Footprint
    busy: bool = False
    freed: int = 0
    # removes the entry, unless it turned busy meanwhile: True if it went
    remove: Callable[[], bool] = field(default=lambda: False, repr=False)


@dataclass
class KindResult:
    kind: str
    where: str
    removed: list[Entry] = field(default_factory=list)
    kept: int = 0

    @property
    def freed(self) -> int:
        return sum(e.freed for e in self.removed)


@dataclass
class Inventory:
    """Every entry of the stores looked at, and their total size."""

    usage: DiskUsage = field(default_factory=DiskUsage)
    entries: list[Entry] = field(default_factory=list)
    where: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, name: str, paths: list[Path], last_used: float, remove: Callable[[], bool],
            busy: bool = False, shared: tuple[Path, ...] = ()) -> None:
        fp = self.usage.measure(paths, shared)
        self.entries.append(Entry(kind, name, last_used, fp, busy, remove=remove))


def select(inv: Inventory, policy: Policy) -> list[Entry]:
    """The entries to remove, least recently used first."""
    candidates = sorted((e for e in inv.entries if not e.busy and policy.candidate(e.last_used)),
                        key=lambda e: (e.last_used, e.kind, e.name))
    if policy.keep_storage is None:
        for e in candidates:
            e.freed = inv.usage.take_out(e.footprint)
        return candidates
    chosen: list[Entry] = []
    for e in candidates:
        if inv.usage.total <= policy.keep_storage:
            break
        e.freed = inv.usage.take_out(e.footprint)
        chosen.append(e)
    return chosen


def prune(inv: Inventory, policy: Policy, *, dry_run: bool) -> list[KindResult]:
    """Remove what the policy selects (nothing with dry_run); one result per kind looked at."""
    results = {kind: KindResult(kind, inv.where[kind]) for kind in KINDS if kind in inv.where}
    chosen = select(inv, policy)
    gone: set[int] = set()
    for e in chosen:
        if dry_run or e.remove():
            results[e.kind].removed.append(e)
            gone.add(id(e))
        else:
            e.freed = 0  # a build started using it meanwhile
    for e in inv.entries:
        if id(e) not in gone:
            results[e.kind].kept += 1
    return list(results.values())


# -- the kinds -------------------------------------------------------------------------------------------------


def _mtime(path: Path, default: float = 0.0) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return default


def _unlocked(path: Path) -> bool:
    """A temporary file no one is writing (writers flock it) and no one wrote lately."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return time.time() - _mtime(path) > WRITE_GRACE


def add_blobs(inv: Inventory, root: Path) -> None:
    """kiln's blob store: blobs no build recorded."""
    inv.where["blobs"] = str(root)
    store = BlobStore(root)
    records = root / ".inuse"
    records.mkdir(parents=True, exist_ok=True)
    with pruning(records) as used:
        busy = set(used)
    for digest in store.digests():
        path = store.path(digest)
        inv.add("blobs", digest, [path], _mtime(path), partial(_remove_blob, store, records, digest),
                busy=digest in busy)
    tmp = root / ".tmp"
    for name in sorted(os.listdir(tmp)) if tmp.is_dir() else []:
        path = tmp / name
        if name.startswith(".tmp-") and _unlocked(path):
            inv.add("blobs", f"leftover {path}", [path], 0.0, partial(_unlink, path))
        elif name.startswith(".remove-") and _stale(path):  # a prune that died between rename and unlink
            inv.add("blobs", f"leftover {path}", [path], 0.0, partial(_remove_tree, path))


def _stale(path: Path) -> bool:
    return time.time() - _mtime(path, time.time()) > WRITE_GRACE


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _remove_blob(store: BlobStore, records: Path, digest: str) -> bool:
    path = store.path(digest)
    with pruning(records) as used:
        if digest in used:
            return False
        # Renamed first, under the gate: a build recording it afterwards finds it gone and fetches it again.
        doomed = Path(tempfile.mkdtemp(prefix=".remove-", dir=store.tmp_dir())) / "blob"
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            os.rmdir(doomed.parent)
            return False
    doomed.unlink()
    doomed.parent.rmdir()
    return True


def add_layers(inv: Inventory, root: Path) -> None:
    """The unpacked layers no build recorded, and extractions or removals that died half way."""
    inv.where["unpacked layers"] = str(root)
    store = LayerStore(root)
    with pruning(store.records) as used:
        busy = set(used)
    for cid in store.chain_ids():
        inv.add("unpacked layers", cid, [store.path(cid)], store.last_used(cid),
                partial(store.remove, cid), busy=cid in busy)
    for cid in store.orphan_locks():
        orphan = root / "locks" / f"{cid.removeprefix('sha256:')}.lock"
        inv.add("unpacked layers", f"leftover {orphan}", [orphan], 0.0, partial(store.drop_lock, cid),
                busy=cid in busy)
    tmp = root / "tmp"
    for name in sorted(os.listdir(tmp)):
        path = tmp / name
        if name.startswith("extract-"):
            hexpart = name.split("-")[1]
            if not _HEX.match(hexpart):
                continue
            lock = lock_fd(root / "locks" / f"{hexpart}.lock", shared=False, blocking=False)
            if lock is None:
                continue  # being extracted
            os.close(lock)
        elif not (name.startswith("remove-") and time.time() - _mtime(path) > WRITE_GRACE):
            continue  # (a removal just started is another process's to finish)
        inv.add("unpacked layers", f"leftover {path}", [path], 0.0, partial(_remove_tree, path))


def _remove_tree(path: Path) -> bool:
    if not path.exists():
        return False
    with contextlib.suppress(FileNotFoundError):
        remove_tree(path)
    return True


def add_cache_mounts(inv: Inventory, root: Path) -> None:
    """Cache-mount directories no RUN is using."""
    inv.where["cache mounts"] = str(root)
    if not root.is_dir():
        return
    names = sorted(os.listdir(root))
    for name in names:
        path = root / name
        if name.startswith(".remove-") and _stale(path):  # a prune that died half way
            inv.add("cache mounts", f"leftover {path}", [path], 0.0, partial(_remove_tree, path))
            continue
        if name.endswith(".use") and name[:-4] not in names:
            # The use lock of a directory that is not there (a private copy a step looked at and did not take).
            inv.add("cache mounts", f"leftover {path}", [path], 0.0, partial(_remove_cache_mount, path.with_suffix("")))
            continue
        if name.startswith(".") or name.endswith((".use", ".lock")) or not path.is_dir():
            continue
        use = cache_mount_use_lock(path)
        fd = lock_fd(use, shared=False, blocking=False) if use.exists() else None
        busy = use.exists() and fd is None
        if fd is not None:
            os.close(fd)
        inv.add("cache mounts", name, [path], _mtime(use, _mtime(path)),
                partial(_remove_cache_mount, path), busy=busy)


def _remove_cache_mount(path: Path) -> bool:
    use = cache_mount_use_lock(path)
    fd = lock_fd(use, shared=False, blocking=False)
    if fd is None:
        return False  # a RUN mounted it meanwhile
    try:
        trash = Path(tempfile.mkdtemp(prefix=".remove-", dir=path.parent))
        try:
            os.rename(path, trash / "dir")
        except FileNotFoundError:
            pass  # only its lock files were left
        # Its lock files go too, while no step can be between them (a step takes the use lock first).
        path.with_name(path.name + ".lock").unlink(missing_ok=True)
        use.unlink(missing_ok=True)
    finally:
        os.close(fd)
    remove_tree(trash)
    return True


def add_local_cache(inv: Inventory, root: Path, now: float) -> None:
    """A local layer-cache directory (engine/cache.py, transports/layercache.py): ``<key>.json`` entries and their
    blobs. An entry's blob is shared by every entry naming it and goes with the last; a blob no entry names is
    an entry of its own (never used)."""
    inv.where["layer cache"] = str(root)
    if not root.is_dir():
        return
    blobs = BlobStore(root / "blobs")
    named: dict[str, list[Path]] = {}
    entries: list[tuple[Path, str | None]] = []
    for name in sorted(os.listdir(root)):
        if not name.endswith(".json") or not _HEX.match(name[:-5]):
            continue
        path = root / name
        digest = _entry_blob(path)
        entries.append((path, digest))
        if digest is not None:
            named.setdefault(digest, []).append(path)
    for path, digest in entries:
        blob: tuple[Path, ...] = ()
        last = _mtime(path)
        if digest is not None and blobs.has(digest):
            blob = (blobs.path(digest),)
            last = max(last, _mtime(blobs.path(digest)))
        inv.add("layer cache", path.name[:-5], [path], last, partial(_remove_cache_entry, blobs, path, digest),
                shared=blob)
    for digest in blobs.digests():
        path = blobs.path(digest)
        if digest not in named and now - _mtime(path) > WRITE_GRACE:
            inv.add("layer cache", f"unnamed blob {digest}", [path], 0.0, partial(_unlink, path))


def _entry_blob(path: Path) -> str | None:
    try:
        doc = json.loads(path.read_bytes())
        digest = doc.get("digest") if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None
    return digest if isinstance(digest, str) and digest.startswith("sha256:") and _HEX.match(digest[7:]) else None


def _remove_cache_entry(blobs: BlobStore, path: Path, digest: str | None) -> bool:
    if not _unlink(path):
        return False
    if digest is not None and not any(_entry_blob(p) == digest for p in path.parent.glob("*.json")):
        _unlink(blobs.path(digest))  # (a build reading it meanwhile has it open, or takes it as a miss)
    return True


# -- reading sizes and durations as buildx does ----------------------------------------------------------------

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """A size as buildx's --keep-storage takes it (go-units RAMInBytes): 512, 10GB, 1.5g, 100MiB — binary
    multiples whatever the spelling. ValueError if it is not one."""
    m = _SIZE.match(text)
    if m is None:
        raise ValueError(text)
    return int(float(m.group(1)) * 1024 ** "bkmgtp".index((m.group(2) or "b").lower()))


def describe_size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def inventory(kiln_dir: Path, cache_dirs: Sequence[Path], now: float) -> Inventory:
    """Everything prune may remove under a kiln dir, and in local cache directories."""
    inv = Inventory()
    if (kiln_dir / "blobs").is_dir():
        add_blobs(inv, kiln_dir / "blobs")
    if (kiln_dir / "layers").is_dir():
        add_layers(inv, kiln_dir / "layers")
    for d in _unique([kiln_dir / "cache", *cache_dirs]):
        where = inv.where.get("layer cache")
        add_local_cache(inv, d, now)
        if where is not None:
            inv.where["layer cache"] = f"{where}, {d}"
    add_cache_mounts(inv, kiln_dir / "cache-mounts")
    return inv


def _unique(paths: Iterable[Path]) -> list[Path]:
    seen: list[Path] = []
    for p in paths:
        if p.resolve() not in [s.resolve() for s in seen]:
            seen.append(p)
    return seen
