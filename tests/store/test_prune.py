"""kiln.store.prune and kiln.store.inuse: what running builds use is never taken; the rest goes by last use and
size as buildx prune's rules say. "Another build" is another process, started for real."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_layerstore import diff_id_of, make_tar

from kiln.engine.steps.cachemount import acquire_cache_dir
from kiln.store.inuse import TrackedBlobStore, UseRecord, live_keys, pruning
from kiln.store.layerstore import LayerStore
from kiln.store.prune import (
    Inventory,
    Policy,
    add_blobs,
    add_cache_mounts,
    add_layers,
    add_local_cache,
    parse_size,
    prune,
    select,
)
from kiln.transports.blobstore import BlobStore

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def other_process(code: str) -> Iterator[subprocess.Popen[str]]:
    """A python process running `code`, which prints "ready" once it holds what it holds, then waits for its
    stdin to close."""
    script = textwrap.dedent(code) + "\nprint('ready', flush=True)\nsys.stdin.read()\n"
    proc = subprocess.Popen([sys.executable, "-c", "import sys\n" + script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def test_records_of_live_builds_are_seen_and_dead_ones_removed(tmp_path: Path) -> None:
    with other_process(f"""
        from pathlib import Path
        from kiln.store.inuse import UseRecord
        r = UseRecord(Path({str(tmp_path)!r}))
        r.add("sha256:aa"); r.add("sha256:bb")
    """) as proc:
        with pruning(tmp_path) as used:
            assert used == {"sha256:aa", "sha256:bb"}
        proc.kill()  # dies without closing its record
        proc.wait()
        with pruning(tmp_path) as used:
            assert used == frozenset()
        assert [n for n in os.listdir(tmp_path) if n.endswith(".rec")] == []
    mine = UseRecord(tmp_path)
    mine.add("k")
    assert live_keys(tmp_path) == {"k"} and live_keys(tmp_path, skip=mine.path) == frozenset()
    mine.close()
    assert live_keys(tmp_path) == frozenset() and os.listdir(tmp_path) == [".gate"]


def _layer(store: LayerStore, content: bytes) -> str:
    blob = make_tar([("f", content)])
    cid = diff_id_of(blob)
    store.ensure_layer(cid, lambda: io.BytesIO(blob), diff_id=cid)
    return cid


def test_a_layer_another_build_uses_is_not_removed(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "layers")
    used, free = _layer(store, b"used"), _layer(store, b"free")
    store.close()
    with other_process(f"""
        import io
        from pathlib import Path
        from kiln.store.layerstore import LayerStore
        s = LayerStore(Path({str(tmp_path / "layers")!r}))
        s.ensure_layer({used!r}, lambda: io.BytesIO(b""))  # there already: recorded, not extracted
    """):
        pruner = LayerStore(tmp_path / "layers")
        assert pruner.remove_unused([used, free], dry_run=True) == [free]
        assert store.has(used) and store.has(free)
        assert pruner.remove_unused([used, free]) == [free]
        assert store.has(used) and not store.has(free)
        assert not (tmp_path / "layers" / "locks" / f"{free[7:]}.lock").exists()
    # Its build is over: now it goes, and a build asking for it again gets it extracted afresh.
    assert pruner.remove(used) and not store.has(used)
    assert _layer(LayerStore(tmp_path / "layers"), b"used") == used
    assert os.listdir(tmp_path / "layers" / "tmp") == []


def test_close_with_cleanup_removes_only_what_this_store_made(tmp_path: Path) -> None:
    first = LayerStore(tmp_path)
    found = _layer(first, b"found")
    first.close()
    store = LayerStore(tmp_path)
    assert _layer(store, b"found") == found  # found, not made
    made = _layer(store, b"made")
    upper = store.scratch_dir()
    (upper / "x").write_bytes(b"x")
    adopted = store.adopt("sha256:" + "4" * 64, upper)
    assert store.made() == {made, "sha256:" + "4" * 64}
    with other_process(f"""
        import io
        from pathlib import Path
        from kiln.store.layerstore import LayerStore
        LayerStore(Path({str(tmp_path)!r})).ensure_layer({made!r}, lambda: io.BytesIO(b""))
    """):
        assert store.close(cleanup=True) == ["sha256:" + "4" * 64]
    assert not adopted.exists()
    assert store.has(found) and store.has(made)  # made, but another build was using it


def test_blobs_a_build_reads_stay_and_the_rest_go_by_age(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    plain = BlobStore(root)
    old, new, used = plain.put_bytes(b"old"), plain.put_bytes(b"new"), plain.put_bytes(b"used")
    for digest, age in ((old, 7200), (new, 60), (used, 7200)):
        t = time.time() - age
        os.utime(plain.path(digest), (t, t))
    old_bytes = plain.path(old).stat().st_blocks * 512
    with other_process(f"""
        from pathlib import Path
        from kiln.store.inuse import TrackedBlobStore
        TrackedBlobStore(Path({str(root)!r})).has({used!r})
    """):
        inv = Inventory()
        add_blobs(inv, root)
        [result] = prune(inv, Policy(until=3600), dry_run=False)
    assert [e.name for e in result.removed] == [old] and result.freed == old_bytes > 0
    assert sorted(plain.digests()) == sorted([new, used])
    # The build that read it set its last use: it is not old any more.
    assert time.time() - plain.path(used).stat().st_mtime < 60


def test_blob_leftovers_being_written_stay(tmp_path: Path) -> None:
    store = TrackedBlobStore(tmp_path)
    dead = store.tmp_dir() / ".tmp-dead"
    dead.write_bytes(b"x" * 10)
    os.utime(dead, (1, 1))
    with store.writer() as w:
        w.write(b"being written")
        os.utime(w.tmp_path, (1, 1))  # old, but locked by its writer
        inv = Inventory()
        add_blobs(inv, tmp_path)
        prune(inv, Policy(), dry_run=False)
        assert w.tmp_path.exists() and not dead.exists()
        w.commit()
    store.close()


def test_cache_mount_in_use_stays(tmp_path: Path) -> None:
    import contextlib

    root = tmp_path / "cache-mounts"
    with contextlib.ExitStack() as hold:
        busy, _ = acquire_cache_dir(root / "busy", None, hold)
        with contextlib.ExitStack() as step:  # a step that used it and is over
            acquire_cache_dir(root / "idle", "locked", step)
        (busy / "f").write_bytes(b"f")
        inv = Inventory()
        add_cache_mounts(inv, root)
        [result] = prune(inv, Policy(), dry_run=False)
        assert [e.name for e in result.removed] == ["idle"] and result.kept == 1
        assert sorted(os.listdir(root)) == ["busy", "busy.use"]
    # Released: it goes, lock files and all.
    inv = Inventory()
    add_cache_mounts(inv, root)
    [result] = prune(inv, Policy(), dry_run=False)
    assert [e.name for e in result.removed] == ["busy"] and os.listdir(root) == []


def test_cache_mount_used_by_another_process_stays(tmp_path: Path) -> None:
    root = tmp_path / "cache-mounts"
    with other_process(f"""
        import contextlib
        from pathlib import Path
        from kiln.engine.steps.cachemount import acquire_cache_dir
        hold = contextlib.ExitStack()
        acquire_cache_dir(Path({str(root / "x")!r}), "private", hold)
    """):
        inv = Inventory()
        add_cache_mounts(inv, root)
        assert inv.entries[0].busy
        prune(inv, Policy(), dry_run=False)
        assert (root / "x").is_dir()


def test_dead_extraction_goes_live_one_stays(tmp_path: Path) -> None:
    store = LayerStore(tmp_path)
    dead = tmp_path / "tmp" / ("extract-" + "a" * 64 + "-x1")
    live = tmp_path / "tmp" / ("extract-" + "b" * 64 + "-x2")
    for d in (dead, live):
        (d / "usr").mkdir(parents=True)
    with other_process(f"""
        from pathlib import Path
        from kiln.store.locking import lock_fd
        fd = lock_fd(Path({str(tmp_path / "locks" / ("b" * 64 + ".lock"))!r}), shared=False)
    """):
        inv = Inventory()
        add_layers(inv, tmp_path)
        prune(inv, Policy(until=3600), dry_run=False)  # leftovers count as never used
    assert os.listdir(tmp_path / "tmp") == [live.name]
    store.close()


def _entry(cache: Path, key: str, blob: str, created_age: float) -> None:
    path = cache / f"{key}.json"
    path.write_text(json.dumps({"digest": blob, "diff_id": blob, "size": 1, "media_type": "x",
                                "created": "2026-01-01T00:00:00Z"}))
    t = time.time() - created_age
    os.utime(path, (t, t))


def test_local_cache_entries_by_age_with_a_shared_blob(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    blobs = BlobStore(cache / "blobs")
    shared = blobs.put_bytes(b"s" * 5000)
    own = blobs.put_bytes(b"o" * 5000)
    for d in (shared, own):
        os.utime(blobs.path(d), (1, 1))
    _entry(cache, "1" * 64, shared, 7200)
    _entry(cache, "2" * 64, shared, 60)
    _entry(cache, "3" * 64, own, 7200)
    blocks = {p.name: p.stat().st_blocks * 512 for p in [*cache.glob("*.json"), blobs.path(own)]}
    inv = Inventory()
    add_local_cache(inv, cache, time.time())
    [result] = prune(inv, Policy(until=3600), dry_run=False)
    assert sorted(e.name for e in result.removed) == ["1" * 64, "3" * 64]
    # The shared blob stays with the entry still naming it, and freeing the first entry freed no blob bytes.
    assert sorted(os.listdir(cache)) == ["2" * 64 + ".json", "blobs"]
    assert blobs.digests() == [shared]
    # two entry files and the blob only one of them named
    assert result.freed == blocks["1" * 64 + ".json"] + blocks["3" * 64 + ".json"] + blocks[own.split(":")[1]]


def test_keep_storage_removes_least_recently_used_first(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    store = BlobStore(root)
    digests = [store.put_bytes(bytes([i]) * 8192) for i in range(4)]  # 8 KiB each
    for i, d in enumerate(digests):
        os.utime(store.path(d), (1000 + i, 1000 + i))
    inv = Inventory()
    add_blobs(inv, root)
    assert inv.usage.total == 4 * 8192
    chosen = select(inv, Policy(keep_storage=2 * 8192 + 1))
    assert [e.name for e in chosen] == digests[:2] and inv.usage.total == 2 * 8192
    # until and keep-storage together: only old enough entries are candidates, even if over the limit.
    inv = Inventory()
    add_blobs(inv, root)
    assert select(inv, Policy(until=10, keep_storage=0, now=1002.5)) == []
    names = [e.name for e in select(_fresh(root), Policy(until=10, keep_storage=0, now=1012.5))]
    assert names == digests[:3]  # unused for 12.5, 11.5 and 10.5 s; the last one only 9.5 s


def _fresh(root: Path) -> Inventory:
    inv = Inventory()
    add_blobs(inv, root)
    return inv


def test_hard_links_count_once(tmp_path: Path) -> None:
    a = BlobStore(tmp_path / "a")
    digest = a.put_bytes(b"z" * 10000)
    cache = tmp_path / "cache"
    BlobStore(cache / "blobs").link_or_copy_from(a, digest)
    _entry(cache, "5" * 64, digest, 7200)
    inv = Inventory()
    add_blobs(inv, tmp_path / "a")
    add_local_cache(inv, cache, time.time())
    sizes = [p.stat().st_blocks * 512 for p in (a.path(digest), cache / ("5" * 64 + ".json"))]
    assert inv.usage.total == sum(sizes)  # the blob once, and the entry file
    blob_entry = next(e for e in inv.entries if e.kind == "blobs")
    assert inv.usage.take_out(blob_entry.footprint) == 0  # the other link keeps it


@pytest.mark.parametrize(
    ("text", "size"),
    [("0", 0), ("512", 512), ("10GB", 10 << 30), ("10g", 10 << 30), ("1.5MiB", 3 << 19), ("100mb", 100 << 20),
     ("2k", 2048), ("3 TB", 3 << 40)],
)
def test_sizes_as_buildx_reads_them(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ten", "-1", "10XB", "1e3", "5 G B"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_cache_mount_lock_files_without_a_directory_go(tmp_path: Path) -> None:
    import contextlib

    root = tmp_path / "cache-mounts"
    with contextlib.ExitStack() as first, contextlib.ExitStack() as second:
        acquire_cache_dir(root / "p", "private", first)
        acquire_cache_dir(root / "p", "private", second)  # finds p busy: takes p.private1
    assert (root / "p.private1").is_dir()
    (root / "p.private1").rmdir()  # as if removed by hand: its lock files stay behind
    inv = Inventory()
    add_cache_mounts(inv, root)
    prune(inv, Policy(), dry_run=False)
    assert os.listdir(root) == []


def test_a_build_never_loses_what_it_recorded_while_prunes_run(tmp_path: Path) -> None:
    """Another process uses a layer and a blob over and over (a new store each time, as a new build), checking
    each time that what it found is whole until it closes the store; meanwhile this one prunes without pause."""
    layers, blobs = tmp_path / "layers", tmp_path / "blobs"
    blob = make_tar([("d/", None), *((f"d/f{i}", b"x" * 100) for i in range(50))])
    cid = diff_id_of(blob)
    (tmp_path / "layer.tar").write_bytes(blob)
    code = f"""
        import io, os, time
        from pathlib import Path
        from kiln.store.inuse import TrackedBlobStore
        from kiln.store.layerstore import LayerStore
        blob = Path({str(tmp_path / "layer.tar")!r}).read_bytes()
        for _ in range(150):
            layers, blobs = LayerStore(Path({str(layers)!r})), TrackedBlobStore(Path({str(blobs)!r}))
            path = layers.ensure_layer({cid!r}, lambda: io.BytesIO(blob), diff_id={cid!r})
            digest = blobs.put_bytes(blob) if not blobs.has({cid!r}) else {cid!r}
            for _ in range(3):
                assert len(os.listdir(path / "d")) == 50, "a recorded layer lost files"
                assert blobs.read_bytes(digest) == blob, "a recorded blob went"
            blobs.close()
            layers.close()
            time.sleep(0.01)  # unused for a moment: a prune may take them now
    """
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    removed = 0
    while proc.poll() is None:
        if layers.is_dir() and blobs.is_dir():
            inv = Inventory()
            add_layers(inv, layers)
            add_blobs(inv, blobs)
            removed += sum(len(r.removed) for r in prune(inv, Policy(), dry_run=False))
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    assert removed > 10  # the prunes did take them, between uses


def test_a_build_looks_for_a_layer_only_after_recording_it(tmp_path: Path) -> None:
    """The order that makes it safe: while a pruner holds the gate (it has read the records and is removing what
    they do not name), a build asking for a layer waits; once the gate is free it finds the layer gone and
    extracts it again, rather than using a directory that was being taken away."""
    import select as select_fd

    store = LayerStore(tmp_path)
    cid = _layer(store, b"content")
    store.close()
    (tmp_path / "layer.tar").write_bytes(make_tar([("f", b"content")]))
    code = f"""
        import io, sys
        from pathlib import Path
        from kiln.store.layerstore import LayerStore
        blob = Path({str(tmp_path / "layer.tar")!r}).read_bytes()
        path = LayerStore(Path({str(tmp_path)!r})).ensure_layer({cid!r}, lambda: io.BytesIO(blob))
        print((path / "f").read_text(), flush=True)
    """
    with pruning(store.records) as used:
        assert cid not in used
        proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO / "src")})
        assert proc.stdout is not None
        ready, _, _ = select_fd.select([proc.stdout], [], [], 2.0)
        assert not ready, "the build went on to use the layer while a prune held the gate"
        os.rename(store.path(cid), tmp_path / "tmp" / "taken")  # what the pruner does with it
    assert proc.stdout.read() == "content\n" and proc.wait(timeout=30) == 0
    assert store.has(cid)


def test_a_build_looks_for_a_blob_only_after_recording_it(tmp_path: Path) -> None:
    import select as select_fd

    digest = BlobStore(tmp_path).put_bytes(b"blob")
    code = f"""
        from pathlib import Path
        from kiln.store.inuse import TrackedBlobStore
        print(TrackedBlobStore(Path({str(tmp_path)!r})).has({digest!r}), flush=True)
    """
    with pruning(tmp_path / ".inuse"):
        proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO / "src")})
        assert proc.stdout is not None
        ready, _, _ = select_fd.select([proc.stdout], [], [], 2.0)
        assert not ready, "the build looked for the blob while a prune held the gate"
        BlobStore(tmp_path).path(digest).unlink()  # the pruner took it
    assert proc.stdout.read() == "False\n" and proc.wait(timeout=30) == 0  # so it fetches it again


def test_lock_files_of_layers_not_there_go(tmp_path: Path) -> None:
    store = LayerStore(tmp_path)
    blob = make_tar([("f", b"f")])
    wrong = "sha256:" + "6" * 64
    with pytest.raises(Exception, match="digest mismatch"):
        store.ensure_layer(wrong, lambda: io.BytesIO(blob), diff_id=wrong)  # fails: its lock file stays
    store.close()
    assert os.listdir(tmp_path / "locks") == ["6" * 64 + ".lock"]
    with other_process(f"""
        from pathlib import Path
        from kiln.store.inuse import UseRecord
        UseRecord(Path({str(tmp_path / "inuse")!r})).add({wrong!r})  # a build about to extract it
    """):
        inv = Inventory()
        add_layers(inv, tmp_path)
        prune(inv, Policy(), dry_run=False)
        assert os.listdir(tmp_path / "locks") == ["6" * 64 + ".lock"]
    inv = Inventory()
    add_layers(inv, tmp_path)
    [result] = prune(inv, Policy(), dry_run=False)
    assert len(result.removed) == 1 and os.listdir(tmp_path / "locks") == []
