"""The layer cache (--cache, --cache-repo=oci:PATH, --cache-ttl, --no-push-cache, --cache-copy-layers,
--cache-run-layers): whole builds run twice against a busybox base. A RUN that writes a fresh UUID
(/proc/sys/kernel/random/uuid) into the image proves whether it ran again: a replayed layer keeps the first
build's UUID."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
from build_outputs import cached_steps, image_digest, json_events, layout_file, write_context

from kiln.errors import UsageError
from kiln.gotext import go_duration_flag
from kiln.transports.blobstore import BlobStore
from kiln.transports.layercache import CacheEntry, LocalLayerCache
from support.base_images import OciImage


def _build(
    tmp_path: Path, busybox: OciImage, *extra: str, out: str = "out", kiln_dir: str = "kiln"
) -> tuple[Path, list[dict[str, object]]]:
    out_path = tmp_path / out
    r = subprocess.run(
        [
            sys.executable, "-m", "kiln", "build", "--context", str(tmp_path / "ctx"),
            "--kiln-dir", str(tmp_path / kiln_dir), "--no-push", "--oci-layout-path", str(out_path),
            "--build-context", f"busybox=oci-layout://{busybox.layout}:{busybox.tag}",
            "--log-format", "json", "--reproducible", *extra,
        ],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    events = json_events(r.stderr)
    return out_path, events


UUID = "cat /proc/sys/kernel/random/uuid"
STAMPS = (
    "FROM busybox\n"
    "RUN cat /proc/sys/kernel/random/uuid > /one\n"
    "ENV COLOUR=${COLOUR:-red}\n"
    "COPY data.txt /data.txt\n"
    "RUN cat /proc/sys/kernel/random/uuid > /two\n"
    "USER app\n"
    "RUN true\n"
)


def test_unchanged_rebuild_replays_every_step_and_gives_the_same_image(tmp_path: Path, busybox_image: OciImage) -> None:
    write_context(tmp_path, STAMPS, {"data.txt": "v1\n"})
    out1, ev1 = _build(tmp_path, busybox_image, "--cache", "--cache-copy-layers", out="out1")
    # FROM is not a step; the first build has nothing to replay.
    assert cached_steps(ev1) == [False] * 6
    out2, ev2 = _build(tmp_path, busybox_image, "--cache", "--cache-copy-layers", out="out2")
    # ENV and USER make no layer and are never "replayed"; every RUN and the COPY are, the empty `RUN true` too.
    assert cached_steps(ev2) == [True, False, True, True, False, True]
    def executed(ev: list[dict[str, object]]) -> int:
        return sum(1 for e in ev if e["event"] == "phase" and e.get("phase") == "execute")

    assert executed(ev1) == 4 and executed(ev2) == 0  # nothing ran the second time
    assert layout_file(out2, "one") == layout_file(out1, "one") and layout_file(out2, "two") == layout_file(out1, "two")
    assert image_digest(ev2) == image_digest(ev1)
    assert (tmp_path / "kiln" / "cache").is_dir()  # the default local cache, without --cache-repo


def test_without_cache_flag_steps_run_again(tmp_path: Path, busybox_image: OciImage) -> None:
    write_context(tmp_path, STAMPS, {"data.txt": "v1\n"})
    out1, _ = _build(tmp_path, busybox_image, "--cache", out="out1")
    out2, ev2 = _build(tmp_path, busybox_image, out="out2")
    assert not any(cached_steps(ev2))
    assert layout_file(out2, "one") != layout_file(out1, "one")


def test_a_changed_env_invalidates_exactly_the_steps_after_it(tmp_path: Path, busybox_image: OciImage) -> None:
    write_context(tmp_path, STAMPS, {"data.txt": "v1\n"})
    out1, _ = _build(tmp_path, busybox_image, "--cache", "--cache-copy-layers", out="out1")
    out2, ev2 = _build(
        tmp_path, busybox_image, "--cache", "--cache-copy-layers", "--build-arg", "COLOUR=blue", out="out2"
    )
    # COLOUR is not declared as an ARG: the build argument reaches nothing, so nothing changes.
    assert cached_steps(ev2) == [True, False, True, True, False, True]
    write_context(tmp_path, STAMPS.replace("${COLOUR:-red}", "green"))
    out3, ev3 = _build(tmp_path, busybox_image, "--cache", "--cache-copy-layers", out="out3")
    assert cached_steps(ev3) == [True, False, False, False, False, False]
    assert layout_file(out3, "one") == layout_file(out1, "one")
    assert layout_file(out3, "two") != layout_file(out1, "two")


def test_a_changed_copied_file_invalidates_the_copy_and_what_follows(tmp_path: Path, busybox_image: OciImage) -> None:
    write_context(tmp_path, STAMPS, {"data.txt": "v1\n"})
    out1, _ = _build(tmp_path, busybox_image, "--cache", "--cache-copy-layers", out="out1")
    (tmp_path / "ctx" / "data.txt").write_text("v2\n")
    out2, ev2 = _build(tmp_path, busybox_image, "--cache", "--cache-copy-layers", out="out2")
    assert cached_steps(ev2) == [True, False, False, False, False, False]
    assert layout_file(out2, "data.txt") == "v2\n"
    assert layout_file(out2, "one") == layout_file(out1, "one") and layout_file(out2, "two") != layout_file(out1, "two")
    # Back to v1: the entries of the first build are still there.
    (tmp_path / "ctx" / "data.txt").write_text("v1\n")
    out3, ev3 = _build(tmp_path, busybox_image, "--cache", "--cache-copy-layers", out="out3")
    assert cached_steps(ev3) == [True, False, True, True, False, True]
    assert layout_file(out3, "two") == layout_file(out1, "two")


def test_a_changed_file_mode_is_a_change(tmp_path: Path, busybox_image: OciImage) -> None:
    write_context(tmp_path, STAMPS, {"data.txt": "v1\n"})
    (tmp_path / "ctx" / "data.txt").chmod(0o644)
    _build(tmp_path, busybox_image, "--cache", "--cache-copy-layers", out="out1")
    (tmp_path / "ctx" / "data.txt").chmod(0o600)
    _, ev2 = _build(tmp_path, busybox_image, "--cache", "--cache-copy-layers", out="out2")
    assert cached_steps(ev2) == [True, False, False, False, False, False]


def test_copy_layers_are_cached_only_with_cache_copy_layers(tmp_path: Path, busybox_image: OciImage) -> None:
    write_context(tmp_path, STAMPS, {"data.txt": "v1\n"})
    out1, ev1 = _build(tmp_path, busybox_image, "--cache", out="out1")
    out2, ev2 = _build(tmp_path, busybox_image, "--cache", out="out2")
    # The COPY runs again, but its sources are unchanged, so the RUNs after it still replay.
    assert cached_steps(ev2) == [True, False, False, True, False, True]
    assert layout_file(out2, "two") == layout_file(out1, "two")
    assert image_digest(ev2) == image_digest(ev1)


def test_run_layers_are_not_cached_with_no_cache_run_layers(tmp_path: Path, busybox_image: OciImage) -> None:
    write_context(tmp_path, STAMPS, {"data.txt": "v1\n"})
    out1, _ = _build(tmp_path, busybox_image, "--cache", "--cache-copy-layers", out="out1")
    flags = ("--cache", "--cache-copy-layers", "--cache-run-layers=false")
    out2, ev2 = _build(tmp_path, busybox_image, *flags, out="out2")
    assert cached_steps(ev2) == [False, False, True, False, False, False]
    assert layout_file(out2, "one") != layout_file(out1, "one")


def test_expired_entries_are_misses(tmp_path: Path, busybox_image: OciImage) -> None:
    write_context(tmp_path, "FROM busybox\nRUN cat /proc/sys/kernel/random/uuid > /one\n")
    cache_dir = tmp_path / "shared-cache"
    out1, _ = _build(tmp_path, busybox_image, "--cache", f"--cache-repo=oci:{cache_dir}", out="out1")
    entries = list(cache_dir.glob("*.json"))
    assert len(entries) == 1
    doc = json.loads(entries[0].read_text())
    assert set(doc) == {"digest", "diff_id", "size", "media_type", "created"}
    assert (cache_dir / "blobs" / "sha256" / doc["digest"].split(":")[1]).is_file()  # self-contained
    # Two hours old: still good for the default two weeks, expired for a one-hour TTL.
    doc["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 7200))
    entries[0].write_text(json.dumps(doc))
    _, ev2 = _build(tmp_path, busybox_image, "--cache", f"--cache-repo=oci:{cache_dir}", out="out2")
    assert cached_steps(ev2) == [True]
    out3, ev3 = _build(
        tmp_path, busybox_image, "--cache", f"--cache-repo=oci:{cache_dir}", "--cache-ttl", "1h", out="out3"
    )
    assert cached_steps(ev3) == [False]
    assert layout_file(out3, "one") != layout_file(out1, "one")


def test_no_push_cache_reads_the_cache_but_never_writes_it(tmp_path: Path, busybox_image: OciImage) -> None:
    write_context(tmp_path, f"FROM busybox\nRUN {UUID} > /one\n")
    cache = f"--cache-repo=oci:{tmp_path / 'c'}"
    _, ev1 = _build(tmp_path, busybox_image, "--cache", cache, "--no-push-cache", out="out1")
    assert cached_steps(ev1) == [False]
    assert not list((tmp_path / "c").glob("*.json"))  # nothing written
    out2, _ = _build(tmp_path, busybox_image, "--cache", cache, out="out2")  # fills the cache
    out3, ev3 = _build(tmp_path, busybox_image, "--cache", cache, "--no-push-cache=true", out="out3")
    assert cached_steps(ev3) == [True]  # read all the same
    assert layout_file(out3, "one") == layout_file(out2, "one")


@pytest.mark.parametrize("damage", ["missing", "corrupt", "bad-entry"])
def test_a_damaged_entry_is_a_miss_not_an_error(tmp_path: Path, busybox_image: OciImage, damage: str) -> None:
    write_context(tmp_path, f"FROM busybox\nRUN {UUID} > /one\nRUN {UUID} > /two\n")
    cache_dir = tmp_path / "c"
    out1, _ = _build(tmp_path, busybox_image, "--cache", f"--cache-repo=oci:{cache_dir}", out="out1")
    first = layout_file(out1, "one")
    for entry in cache_dir.glob("*.json"):
        doc = json.loads(entry.read_text())
        if first not in _blob_text(cache_dir, doc["digest"]):
            continue
        blob = cache_dir / "blobs" / "sha256" / doc["digest"].split(":")[1]
        if damage == "missing":
            blob.unlink()
        elif damage == "corrupt":
            data = bytearray(blob.read_bytes())
            data[len(data) // 2] ^= 0xFF
            blob.unlink()  # a new file: the build's own blob store may share the inode
            blob.write_bytes(bytes(data))
        else:
            entry.write_text('{"digest": "sha256:12')
    out2, ev2 = _build(tmp_path, busybox_image, "--cache", f"--cache-repo=oci:{cache_dir}", out="out2")
    assert cached_steps(ev2) == [False, False]  # the second RUN follows a miss: it runs too
    assert layout_file(out2, "one") != first
    # The rebuilt entry replaces the damaged one.
    _, ev3 = _build(tmp_path, busybox_image, "--cache", f"--cache-repo=oci:{cache_dir}", out="out3")
    assert cached_steps(ev3) == [True, True]


def _blob_text(cache_dir: Path, digest: str) -> str:
    with tarfile.open(cache_dir / "blobs" / "sha256" / digest.split(":")[1]) as tar:
        return "".join(
            f.read().decode() for m in tar.getmembers() if m.isfile() and (f := tar.extractfile(m)) is not None
        )


def test_a_stage_built_from_a_cached_stage_replays_too(tmp_path: Path, busybox_image: OciImage) -> None:
    dockerfile = (
        "FROM busybox AS base\nRUN cat /proc/sys/kernel/random/uuid > /one\n"
        "FROM base\nRUN cat /proc/sys/kernel/random/uuid > /two\n"
    )
    write_context(tmp_path, dockerfile)
    out1, ev1 = _build(tmp_path, busybox_image, "--cache", out="out1")
    out2, ev2 = _build(tmp_path, busybox_image, "--cache", out="out2")
    assert cached_steps(ev2) == [True, True]
    assert layout_file(out2, "two") == layout_file(out1, "two") and image_digest(ev2) == image_digest(ev1)


def test_concurrent_builds_share_one_cache_dir(tmp_path: Path, busybox_image: OciImage) -> None:
    write_context(tmp_path, STAMPS, {"data.txt": "v1\n"})
    cache = ("--cache", "--cache-copy-layers", f"--cache-repo=oci:{tmp_path / 'c'}")
    results: dict[str, list[dict[str, object]]] = {}

    def build(name: str) -> None:
        results[name] = _build(tmp_path, busybox_image, *cache, out=name, kiln_dir=f"kiln-{name}")[1]

    threads = [threading.Thread(target=build, args=(f"out{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3
    _, ev = _build(tmp_path, busybox_image, *cache, out="after", kiln_dir="kiln-after")
    assert cached_steps(ev) == [True, False, True, True, False, True]


# -- the store and the duration parser on their own -----------------------------------------------------------


def test_cache_ttl_reads_go_durations() -> None:
    assert go_duration_flag("336h", "--cache-ttl") == 336 * 3600
    assert go_duration_flag("1h30m", "--cache-ttl") == 5400
    assert go_duration_flag("1.5s", "--cache-ttl") == 1.5
    assert go_duration_flag("250ms", "--cache-ttl") == 0.25
    assert go_duration_flag("0", "--cache-ttl") == 0
    for bad in ("", "10", "1d", "h", "1h 2m"):
        with pytest.raises(UsageError, match="--cache-ttl"):
            go_duration_flag(bad, "--cache-ttl")


def test_local_store_round_trip_and_ttl(tmp_path: Path) -> None:
    builds = BlobStore(tmp_path / "kiln-blobs")
    digest = builds.put_bytes(b"layer bytes")
    store = LocalLayerCache(tmp_path / "cache", ttl=60)
    assert store.get("sha256:" + "a" * 64) is None
    store.put_layer("sha256:" + "a" * 64, builds, digest, "sha256:" + "d" * 64, 11, "m")
    store.put_empty("sha256:" + "b" * 64)
    entry = store.get("sha256:" + "a" * 64)
    assert entry is not None and entry.digest == digest and entry.size == 11 and not entry.empty
    empty = store.get("sha256:" + "b" * 64)
    assert empty is not None and empty.empty
    assert store.get("sha256:" + "a" * 64, now=time.time() + 120) is None  # past its TTL
    other = BlobStore(tmp_path / "elsewhere")
    assert store.fetch(entry, other) and other.read_bytes(digest) == b"layer bytes"
    # Wrong size recorded: a miss.
    assert not store.fetch(CacheEntry(time.time(), digest=digest, diff_id=entry.diff_id, size=3), other)


def test_concurrent_writers_never_leave_a_partial_entry(tmp_path: Path) -> None:
    builds = BlobStore(tmp_path / "kiln-blobs")
    digests = [builds.put_bytes(f"layer {i}".encode() * 1000) for i in range(8)]
    key = "sha256:" + "c" * 64
    errors: list[str] = []
    stop = threading.Event()

    def write(i: int) -> None:
        store = LocalLayerCache(tmp_path / "cache")
        for _ in range(50):
            d = digests[i]
            store.put_layer(key, builds, d, d, builds.size(d), "m")

    def read() -> None:
        store = LocalLayerCache(tmp_path / "cache")
        while not stop.is_set():
            raw = tmp_path / "cache" / ("c" * 64 + ".json")
            if raw.exists() and CacheEntry.from_json(raw.read_bytes()) is None:
                errors.append(raw.read_text())
            entry = store.get(key)
            if entry is not None and not store.fetch(entry, BlobStore(tmp_path / "out")):
                errors.append(f"unfetchable {entry}")

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    assert errors == []
    assert not list((tmp_path / "cache").glob(".tmp-*"))
