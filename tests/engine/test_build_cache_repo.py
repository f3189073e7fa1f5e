"""The layer cache in a registry repository (kaniko's --cache-repo): whole builds against the test registry.

A RUN that writes a fresh UUID proves whether it ran again: a replayed layer keeps the first build's UUID. Every
second build uses a fresh --kiln-dir, so whatever it replays can only have come from the registry."""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from build_outputs import cached_steps, image_digest, json_events, layout_file, write_context

from kiln.transports.blobstore import BlobStore
from kiln.transports.layercache import RegistryLayerCache, parse_created
from kiln.transports.registry import RegistryOptions
from support.base_images import OciImage
from support.registry import Registry

STAMPS = (
    "FROM busybox\n"
    "RUN cat /proc/sys/kernel/random/uuid > /one\n"
    "ENV COLOUR=red\n"
    "COPY data.txt /data.txt\n"
    "RUN cat /proc/sys/kernel/random/uuid > /two\n"
    "USER app\n"
    "RUN true\n"
)
INSECURE = ("--insecure", "--insecure-pull")


def _kiln(tmp_path: Path, busybox: OciImage, *extra: str, kiln_dir: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "kiln", "build", "--context", str(tmp_path / "ctx"),
            "--kiln-dir", str(tmp_path / kiln_dir),
            "--build-context", f"busybox=oci-layout://{busybox.layout}:{busybox.tag}",
            "--log-format", "json", "--reproducible", *extra,
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _build(
    tmp_path: Path, busybox: OciImage, *extra: str, out: str, kiln_dir: str
) -> tuple[Path, list[dict[str, object]]]:
    out_path = tmp_path / out
    r = _kiln(tmp_path, busybox, "--no-push", "--oci-layout-path", str(out_path), *extra, kiln_dir=kiln_dir)
    assert r.returncode == 0, r.stderr
    return out_path, json_events(r.stderr)


def _executed(events: list[dict[str, object]]) -> int:
    return sum(1 for e in events if e["event"] == "phase" and e.get("phase") == "execute")


def _warnings(events: list[dict[str, object]]) -> list[str]:
    return [str(e["message"]) for e in events if e["event"] == "warning"]


def _tags(registry: Registry, repository: str) -> list[str]:
    status, _, body = registry.get(f"/v2/{repository}/tags/list")
    if status == 404:
        return []
    assert status == 200, body
    return sorted(json.loads(body)["tags"] or [])


def _json(registry: Registry, path: str, accept: str = "application/vnd.oci.image.manifest.v1+json") -> object:
    import urllib.request

    request = urllib.request.Request(registry.url + path, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def _repo() -> str:
    return f"kiln/cache-{uuid.uuid4().hex[:8]}"


def test_first_build_pushes_one_entry_per_step_and_a_fresh_build_replays_them(
    tmp_path: Path, busybox_image: OciImage, registry: Registry
) -> None:
    repo = _repo()
    cache = ("--cache", "--cache-repo", f"{registry.address}/{repo}", "--cache-copy-layers", *INSECURE)
    write_context(tmp_path, STAMPS, {"data.txt": "v1\n"})
    out1, ev1 = _build(tmp_path, busybox_image, *cache, out="out1", kiln_dir="kiln1")
    assert cached_steps(ev1) == [False] * 6 and _warnings(ev1) == []

    # Three RUNs and one COPY: four entries, each tagged with its key's hex.
    tags = _tags(registry, repo)
    assert len(tags) == 4 and all(len(t) == 64 and int(t, 16) >= 0 for t in tags)
    layer_counts = []
    for tag in tags:
        manifest = _json(registry, f"/v2/{repo}/manifests/{tag}")
        assert isinstance(manifest, dict)
        config = _json(registry, f"/v2/{repo}/blobs/{manifest['config']['digest']}")
        assert isinstance(config, dict)
        diff_ids = config["rootfs"]["diff_ids"]
        assert len(diff_ids) == len(manifest["layers"])
        assert abs(parse_created(config["created"]) - time.time()) < 600  # type: ignore[operator]
        layer_counts.append(len(manifest["layers"]))
        for layer in manifest["layers"]:
            # The diff_id the entry records is the digest of the layer's uncompressed bytes.
            status, _, blob = registry.get(f"/v2/{repo}/blobs/{layer['digest']}")
            assert status == 200
            assert "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest() == diff_ids[0]
    assert sorted(layer_counts) == [0, 1, 1, 1]  # `RUN true` changes nothing: an entry with no layer

    out2, ev2 = _build(tmp_path, busybox_image, *cache, out="out2", kiln_dir="kiln2")
    assert not (tmp_path / "kiln2" / "cache").exists()  # nothing local was used or written
    assert cached_steps(ev2) == [True, False, True, True, False, True]
    assert _executed(ev1) == 4 and _executed(ev2) == 0
    assert layout_file(out2, "one") == layout_file(out1, "one") and layout_file(out2, "two") == layout_file(out1, "two")
    assert image_digest(ev2) == image_digest(ev1)
    assert _tags(registry, repo) == tags  # a replay stores nothing new


def test_a_change_invalidates_the_steps_after_it(
    tmp_path: Path, busybox_image: OciImage, registry: Registry
) -> None:
    repo = _repo()
    cache = ("--cache", "--cache-repo", f"{registry.address}/{repo}", "--cache-copy-layers", *INSECURE)
    write_context(tmp_path, STAMPS, {"data.txt": "v1\n"})
    out1, _ = _build(tmp_path, busybox_image, *cache, out="out1", kiln_dir="kiln1")
    write_context(tmp_path, STAMPS, {"data.txt": "v2\n"})
    out2, ev2 = _build(tmp_path, busybox_image, *cache, out="out2", kiln_dir="kiln2")
    # The RUN before the COPY replays; the COPY and everything after it run again.
    assert cached_steps(ev2) == [True, False, False, False, False, False]
    assert layout_file(out2, "one") == layout_file(out1, "one")
    assert layout_file(out2, "two") != layout_file(out1, "two")
    assert layout_file(out2, "data.txt") == "v2\n"
    assert len(_tags(registry, repo)) == 4 + 3  # new entries for the COPY and the two RUNs after it


def test_a_registry_that_is_down_costs_a_warning_not_the_build(tmp_path: Path, busybox_image: OciImage) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_context(tmp_path, STAMPS, {"data.txt": "v1\n"})
    out, ev = _build(
        tmp_path, busybox_image, "--cache", "--cache-repo", f"127.0.0.1:{port}/kiln/cache", *INSECURE,
        out="out", kiln_dir="kiln",
    )  # fmt: skip
    assert not any(cached_steps(ev)) and _executed(ev) == 4
    warnings = _warnings(ev)
    assert len(warnings) == 1, warnings  # the registry is given up on after the first failure
    assert f"127.0.0.1:{port}/kiln/cache" in warnings[0]
    assert layout_file(out, "data.txt") == "v1\n"


def test_entries_older_than_the_ttl_are_misses(tmp_path: Path, busybox_image: OciImage, registry: Registry) -> None:
    repo = _repo()
    cache = ("--cache", "--cache-repo", f"{registry.address}/{repo}", *INSECURE)
    write_context(tmp_path, "FROM busybox\nRUN cat /proc/sys/kernel/random/uuid > /one\n")
    out1, _ = _build(tmp_path, busybox_image, *cache, out="out1", kiln_dir="kiln1")
    time.sleep(2.5)  # the entry's config says when it was made; second resolution
    out2, ev2 = _build(tmp_path, busybox_image, *cache, "--cache-ttl", "2s", out="out2", kiln_dir="kiln2")
    assert cached_steps(ev2) == [False]
    assert layout_file(out2, "one") != layout_file(out1, "one")
    out3, ev3 = _build(tmp_path, busybox_image, *cache, "--cache-ttl", "1h", out="out3", kiln_dir="kiln3")
    assert cached_steps(ev3) == [True]
    assert layout_file(out3, "one") == layout_file(out2, "one")  # the newest entry, pushed by the second build


def test_the_cache_repo_is_inferred_from_the_destination(
    tmp_path: Path, busybox_image: OciImage, registry: Registry
) -> None:
    repo = _repo()
    dest = f"{registry.address}/{repo}/app:v1"
    write_context(tmp_path, STAMPS, {"data.txt": "v1\n"})
    r = _kiln(tmp_path, busybox_image, "--cache", "--destination", dest, *INSECURE, kiln_dir="kiln")
    assert r.returncode == 0, r.stderr
    assert _tags(registry, f"{repo}/app") == ["v1"]
    assert len(_tags(registry, f"{repo}/app/cache")) == 3  # kaniko's <destination>/cache; COPY not cached
    # Without a destination to push to, the cache stays local.
    _build(tmp_path, busybox_image, "--cache", out="out", kiln_dir="kiln2")
    assert list((tmp_path / "kiln2" / "cache").glob("*.json"))
    # --cache-repo=oci:PATH (kaniko's spelling) asks for a local cache even when pushing: nothing more in the
    # inferred repo.
    before = _tags(registry, f"{repo}/app/cache")
    r = _kiln(tmp_path, busybox_image, "--cache", f"--cache-repo=oci:{tmp_path / 'local'}", "--destination", dest,
              *INSECURE, kiln_dir="kiln3")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert _tags(registry, f"{repo}/app/cache") == before
    assert list((tmp_path / "local").glob("*.json"))


@pytest.mark.parametrize(
    "bad", ["127.0.0.1:5000/cache:tag", "127.0.0.1:5000/cache@sha256:" + "a" * 64, "127.0.0.1:5000/Cache"]
)
def test_a_cache_repo_that_is_not_a_repository_is_refused(
    tmp_path: Path, busybox_image: OciImage, bad: str
) -> None:
    write_context(tmp_path, STAMPS, {"data.txt": "v1\n"})
    r = _kiln(tmp_path, busybox_image, "--no-push", "--cache", "--cache-repo", bad, kiln_dir="kiln")
    assert r.returncode == 2, r.stderr
    assert "--cache-repo" in r.stderr


def test_store_round_trip_and_misses(tmp_path: Path, registry: Registry) -> None:
    opts = RegistryOptions(insecure=True)
    warnings: list[str] = []
    store = RegistryLayerCache(f"{registry.address}/{_repo()}", opts, opts, ttl=60.0, warn=warnings.append)
    source = BlobStore(tmp_path / "source")
    layer = gzip.compress(b"not really a tar, but the cache does not look inside")
    digest = source.put_bytes(layer)
    diff_id = "sha256:" + "d" * 64
    key = "sha256:" + "1" * 64
    assert store.get(key) is None  # an unknown tag: a miss, silently
    store.put_layer(key, source, digest, diff_id, len(layer), "application/vnd.oci.image.layer.v1.tar+gzip")
    entry = store.get(key)
    assert entry is not None and not entry.empty
    assert (entry.digest, entry.diff_id, entry.size) == (digest, diff_id, len(layer))
    into = BlobStore(tmp_path / "into")
    assert store.fetch(entry, into) and into.read_bytes(digest) == layer
    assert store.get(key, now=entry.created + 61) is None  # past the TTL

    empty_key = "sha256:" + "2" * 64
    store.put_empty(empty_key)
    empty = store.get(empty_key)
    assert empty is not None and empty.empty and store.fetch(empty, into)
    assert warnings == []


def test_parse_created_reads_kaniko_and_kiln_times() -> None:
    assert parse_created("1970-01-01T00:00:10Z") == 10.0
    assert parse_created("2024-05-01T12:00:00.123456789Z") == parse_created("2024-05-01T12:00:00Z")
    assert parse_created("2024-05-01T14:00:00+02:00") == parse_created("2024-05-01T12:00:00Z")
    assert parse_created("yesterday") is None and parse_created(None) is None


def test_pushed_image_mounts_layers_replayed_from_the_cache_repo(
    tmp_path: Path, busybox_image: OciImage, registry: Registry
) -> None:
    # A replayed layer already lives in the cache repo: pushing the image to another repository of the same
    # registry mounts it (201 on POST ...?mount=) instead of uploading its bytes again.
    write_context(tmp_path, STAMPS, {"data.txt": "d\n"})
    cache = registry.ref("kiln/mountcache", "x").rsplit(":", 1)[0]
    common = ("--cache", "--cache-copy-layers", "--cache-repo", cache, *INSECURE)
    _build(tmp_path, busybox_image, *common, out="first", kiln_dir="k1")
    mark = registry.log_mark()
    r = _kiln(tmp_path, busybox_image, *common, "-d", registry.ref("kiln/mounted", "v1"), kiln_dir="k2")
    assert r.returncode == 0, r.stderr
    requests = registry.requests_since(mark)
    mounted = [
        u for m, u, status in requests
        if m == "POST" and "mount=" in u and "mountcache" in u and status == 201
    ]  # fmt: skip
    assert len(mounted) >= 3, requests  # the RUN, COPY and RUN layers that changed files
