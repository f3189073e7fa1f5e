"""Unpacked layers kept on disk, keyed by chain id, shared by builds and by concurrent kiln processes.

A layer's content depends on every layer below it only through overlay stacking, but the same diff can mean
different trees on different bases, and a step's upper dir is only meaningful on the stack it ran on; so the
store keys by the OCI chain id (image-spec config.md):
    chain_id(L0) = diff_id(L0);  chain_id(Ln) = sha256(chain_id(Ln-1) + " " + diff_id(Ln))

Layout under the store root (one filesystem, so that renames are atomic):
    sha256/<hex>/     one layer, extracted in overlay mode (whiteouts as 0/0 devices, opaque xattrs) on the
                      layers below it (its chain id names them): paths resolved through their symlinks,
                      their directories and hardlinked files copied up (kiln.rootfs.resolver)
    tmp/              extractions in progress (extract-<hex>-*), and layers being removed (remove-*)
    locks/<hex>.lock  flock per chain id, held while the layer is extracted or adopted; its mtime is the
                      layer's last use (a build touches it when it starts and stops using the layer)
    inuse/            what running builds use (kiln.store.inuse): a build records a chain id before it looks
                      for the layer, so prune and another build's --cleanup never take a layer it has mounted
A layer directory exists only once complete: it is filled under tmp/ and renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from kiln.errors import DigestMismatch, ImageFormatError
from kiln.layers.extract import extract_layer, remove_tree
from kiln.oci.config import chain_ids
from kiln.store.inuse import UseRecord, live_keys, pruning
from kiln.store.locking import exclusive_lock

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")

OpenBlob = Callable[[], BinaryIO]


def _check_digest(value: str, what: str) -> str:
    if not _DIGEST.match(value):
        raise ImageFormatError(f"{what} {value!r} is not a sha256 digest")
    return value


class LayerStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._layers = self.root / "sha256"
        self._tmp = self.root / "tmp"
        self._locks = self.root / "locks"
        self.records = self.root / "inuse"
        for d in (self._layers, self._tmp, self._locks, self.records):
            d.mkdir(parents=True, exist_ok=True)
        self.record = UseRecord(self.records)
        self._made: set[str] = set()  # extracted or adopted by this store: what --cleanup may remove
        self._mutex = threading.Lock()

    def path(self, chain_id: str) -> Path:
        """Where the layer with this chain id lives (whether or not it is there yet)."""
        return self._layers / _check_digest(chain_id, "chain id").removeprefix("sha256:")

    def has(self, chain_id: str) -> bool:
        return self.path(chain_id).is_dir()

    def scratch_dir(self, prefix: str = "step-") -> Path:
        """A fresh empty directory on the store's filesystem: a step's upper (and work) dir, so that adopt()
        can rename it into the store."""
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self._tmp))

    def _lock(self, chain_id: str) -> Path:
        return self._locks / (chain_id.removeprefix("sha256:") + ".lock")

    def _use(self, chain_id: str) -> None:
        """Record the layer as this build's before looking for it; its lock file's mtime is its last use."""
        if self.record.add(_check_digest(chain_id, "chain id")):
            self._touch(chain_id)

    def _touch(self, chain_id: str) -> None:
        lock = self._lock(chain_id)
        with contextlib.suppress(OSError):
            os.close(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            os.utime(lock)

    def last_used(self, chain_id: str) -> float:
        """When a build last started or stopped using the layer (its directory's time for older stores)."""
        for p in (self._lock(chain_id), self.path(chain_id)):
            with contextlib.suppress(OSError):
                return p.stat().st_mtime
        return 0.0

    def chain_ids(self) -> list[str]:
        """Every layer in the store."""
        return sorted("sha256:" + n for n in os.listdir(self._layers) if _DIGEST.match("sha256:" + n))

    def ensure_layer(
        self,
        chain_id: str,
        open_blob: OpenBlob,
        *,
        diff_id: str | None = None,
        lowers: Sequence[Path] | None = None,
    ) -> Path:
        """The layer's directory, extracting the blob (plain or compressed tar) if it is not there yet.

        Two processes asking at once: one extracts, the other waits on the lock and then finds it done.
        diff_id, when given, is checked against the uncompressed tar, and a mismatch stores nothing.
        lowers: the directories of the layers below (top first; [] for a bottom layer), the stack the chain
        id names. With them, the layer stacked on them shows what applying it onto their flattened tree
        gives (a path below a lower symlink lands where the symlink leads, a hardlink may name a lower
        file); without them (None) the layer is read on its own, which differs for such layers.
        """
        self._use(chain_id)
        dest = self.path(chain_id)
        if dest.is_dir():
            return dest
        with exclusive_lock(self._lock(chain_id)):
            if dest.is_dir():
                return dest
            # The chain id in the name: prune removes an extraction left behind only when its lock is free.
            work = self.scratch_dir(f"extract-{chain_id.removeprefix('sha256:')}-")
            try:
                with open_blob() as src:
                    stats = extract_layer(src, work, mode="overlay", label=chain_id, lowers=lowers)
                if diff_id is not None and stats.diff_id != diff_id:
                    raise DigestMismatch(f"layer {chain_id}", diff_id, stats.diff_id)
                os.rename(work, dest)
                with self._mutex:
                    self._made.add(chain_id)
            except BaseException:
                try:
                    remove_tree(work)  # (a layer can nest directories deeper than shutil.rmtree recurses)
                except OSError:
                    pass
                raise
        return dest

    def adopt(self, chain_id: str, upper_dir: Path) -> Path:
        """Move a finished step's upper dir (unmounted, on the store's filesystem) into the store as the layer
        with this chain id, without copying. If another process stored it first, upper_dir is discarded."""
        self._use(chain_id)
        dest = self.path(chain_id)
        with exclusive_lock(self._lock(chain_id)):
            if dest.is_dir():
                remove_tree(upper_dir)
                return dest
            try:
                os.rename(upper_dir, dest)
            except OSError as exc:
                where = f"{upper_dir} -> {self.root}"
                raise ImageFormatError(
                    f"cannot move a step's upper dir into the store ({where}): {exc.strerror}"
                ) from None
            with self._mutex:
                self._made.add(chain_id)
        return dest

    def made(self) -> frozenset[str]:
        """The layers this store extracted or adopted (not those it found there)."""
        with self._mutex:
            return frozenset(self._made)

    def remove(self, chain_id: str) -> bool:
        """Delete a layer unless another build uses it; True if it was there and went."""
        return chain_id in self.remove_unused([chain_id])

    def remove_unused(self, chain_ids: Iterable[str], *, dry_run: bool = False) -> list[str]:
        """Delete the layers no other build uses (this store's own use does not count); return those removed
        (with dry_run: those that would be). Each directory vanishes atomically first (renamed under tmp/,
        while builds are kept from recording new uses), so no one sees a layer half deleted."""
        own = self.record.recorded()
        removed: list[str] = []
        doomed: list[Path] = []
        with pruning(self.records) as used:
            others = used if not own else live_keys(self.records, skip=self.record.path)
            for cid in chain_ids:
                dest = self.path(cid)
                if cid in others or not dest.is_dir():
                    continue
                removed.append(cid)
                if dry_run:
                    continue
                trash = Path(tempfile.mkdtemp(prefix="remove-", dir=self._tmp))
                os.rename(dest, trash / "layer")
                doomed.append(trash)
                # No one holds the lock: a build locks it only after recording its use, which the gate holds off.
                self._lock(cid).unlink(missing_ok=True)
        for trash in doomed:
            remove_tree(trash)
        return removed

    def orphan_locks(self) -> list[str]:
        """Chain ids with a lock file but no layer (an extraction that failed, a layer removed by hand)."""
        names = [n.removesuffix(".lock") for n in os.listdir(self._locks) if n.endswith(".lock")]
        return sorted("sha256:" + n for n in names if _DIGEST.match("sha256:" + n) and not (self._layers / n).exists())

    def drop_lock(self, chain_id: str) -> bool:
        """Remove the lock file of a layer that is not there, unless a build uses that chain id."""
        with pruning(self.records) as used:
            if chain_id in used or self.path(chain_id).exists():
                return False
            try:
                self._lock(chain_id).unlink()
            except FileNotFoundError:
                return False
        return True

    def close(self, *, cleanup: bool = False) -> list[str]:
        """The build is done with its layers: they become prunable (their last use now). With cleanup, the layers
        it made that no other build uses are removed (kaniko's --cleanup); returns those."""
        for cid in self.record.recorded():
            self._touch(cid)
        made = sorted(self.made())
        self.record.close()
        return self.remove_unused(made) if cleanup else []

    def chain(self, diff_ids: Sequence[str], open_blobs: Sequence[OpenBlob]) -> list[Path]:
        """Every layer of an image present in the store, bottom first (diff_ids checked); lowerdirs are these
        reversed."""
        if len(diff_ids) != len(open_blobs):
            raise ImageFormatError(f"{len(diff_ids)} diff_ids for {len(open_blobs)} layer blobs")
        ids = chain_ids(diff_ids)
        paths: list[Path] = []
        for c, o, d in zip(ids, open_blobs, diff_ids, strict=True):
            paths.append(self.ensure_layer(c, o, diff_id=d, lowers=list(reversed(paths))))
        return paths


def materialize_flat(blobs: Iterable[OpenBlob], dest: Path) -> None:
    """Without overlay: extract the layers, bottom first, in apply mode into the one rootfs directory dest."""
    dest.mkdir(parents=True, exist_ok=True)
    for i, open_blob in enumerate(blobs):
        with open_blob() as src:
            extract_layer(src, dest, mode="apply", label=f"layer {i}")
