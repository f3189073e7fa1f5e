"""kaniko's --cache-dir: `kiln warm` stores base images in a directory, and `kiln build --cache-dir` takes them
from there before asking any registry. The registry here is a private one that each test stops once the cache is
warm: a build that still succeeds can only have found its base image in the directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from build_outputs import write_context

from support.base_images import OciImage, push
from support.registry import Registry, RegistryFactory

INSECURE = ("--insecure", "--insecure-pull")


def _kiln(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kiln", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)  # fmt: skip


@pytest.fixture
def private_registry(registry_factory: RegistryFactory, busybox_image: OciImage) -> tuple[Registry, str]:
    """A registry of this test's own with busybox in it (stopped by the test when it wants)."""
    reg = registry_factory.start()
    return reg, push(busybox_image, reg.ref("base/busybox"), reg.skopeo_flags("dest"))


def _build(tmp_path: Path, kiln_dir: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return _kiln("build", "--context", str(tmp_path / "ctx"), "--kiln-dir", str(tmp_path / kiln_dir), "--no-push",
                 "--oci-layout-path", str(tmp_path / f"out-{kiln_dir}"), *INSECURE, *extra)  # fmt: skip


def _entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if p.name.startswith("sha256:"))


def test_a_warmed_base_image_builds_with_the_registry_stopped(
    tmp_path: Path, private_registry: tuple[Registry, str]
) -> None:
    reg, ref = private_registry
    cache = tmp_path / "cache"
    r = _kiln("warm", "--image", ref, "--cache-dir", str(cache), "--insecure-pull")
    assert r.returncode == 0, r.stderr
    [entry] = _entries(cache)
    assert (entry / "index.json").is_file() and (entry / "oci-layout").is_file()  # an OCI layout per digest
    assert len(list((cache / "refs").glob("*.json"))) == 1
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    # A second warm finds it fresh and fetches nothing.
    mark = reg.log_mark()
    r = _kiln("warm", "-i", ref, "-c", str(cache), "--insecure-pull=true")
    assert r.returncode == 0 and "already in" in r.stderr, r.stderr
    assert not [req for req in reg.requests_since(mark) if "/blobs/" in req[1]]
    # --force stores it again.
    before = entry.stat().st_ino
    r = _kiln("warm", "-i", ref, "-c", str(cache), "--insecure-pull", "--force")
    assert r.returncode == 0, r.stderr
    assert _entries(cache) == [entry] and entry.stat().st_ino != before

    reg.stop()
    write_context(tmp_path, f"FROM {ref}\nCOPY data.txt /data.txt\nRUN cat /data.txt > /copy\n", {"data.txt": "x\n"})
    r = _build(tmp_path, "k1", "--cache-dir", str(cache))
    assert r.returncode == 0, r.stderr
    index = json.loads((tmp_path / "out-k1" / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((tmp_path / "out-k1" / "blobs" / "sha256" / manifest_digest).read_text())
    base = json.loads((entry / "index.json").read_text())["manifests"][0]["digest"].split(":")[1]
    base_layers = json.loads((entry / "blobs" / "sha256" / base).read_text())["layers"]
    assert manifest["layers"][: len(base_layers)] == base_layers and len(manifest["layers"]) == len(base_layers) + 2
    # The same reference by digest is found too.
    write_context(tmp_path, f"FROM {ref.rsplit(':', 1)[0]}@{entry.name}\nCOPY data.txt /data.txt\n")
    r = _build(tmp_path, "k2", "--cache-dir", str(cache))
    assert r.returncode == 0, r.stderr
    # Without --cache-dir the registry is asked, and it is gone.
    r = _build(tmp_path, "k3")
    assert r.returncode != 0
    # An entry older than --cache-ttl is not used.
    old = time.time() - 7200
    os.utime(entry, (old, old))
    r = _build(tmp_path, "k4", "--cache-dir", str(cache), "--cache-ttl", "1h")
    assert r.returncode != 0
    r = _build(tmp_path, "k5", "--cache-dir", str(cache), "--cache-ttl=3h")
    assert r.returncode == 0, r.stderr


def test_warm_stores_a_dockerfiles_images_and_fails_only_when_none_can_be(
    tmp_path: Path, private_registry: tuple[Registry, str]
) -> None:
    _, ref = private_registry
    name = ref.rsplit(":", 1)[0]
    (tmp_path / "Dockerfile").write_text(f"ARG TAG=nothing\nFROM {name}:$TAG AS a\nFROM a\n")
    cache = tmp_path / "cache"
    r = _kiln("warm", "--dockerfile", str(tmp_path / "Dockerfile"), "--build-arg", "TAG=latest", "-c", str(cache),
              "--insecure-pull", "--image", f"{name}:no-such-tag")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "no-such-tag: not stored" in r.stderr  # a warning, as kaniko's warmer
    assert len(_entries(cache)) == 1
    r = _kiln("warm", "-i", f"{name}:no-such-tag", "-c", str(cache), "--insecure-pull")
    assert r.returncode == 1 and "none of the images could be stored" in r.stderr
    r = _kiln("warm", "-c", str(cache))
    assert r.returncode == 2 and "--image" in r.stderr


def test_a_tag_kiln_warm_did_not_record_is_found_by_its_current_digest(
    tmp_path: Path, private_registry: tuple[Registry, str], busybox_image: OciImage
) -> None:
    """kaniko's way, for directories its own warmer filled: the registry says which digest the tag names, and
    an image stored under that digest (here kaniko 1.24's tarball format) saves the download."""
    from kiln.transports.archive import write_archive
    from kiln.transports.layout import read_image

    reg, ref = private_registry
    image = read_image(busybox_image.layout, busybox_image.tag)
    cache = tmp_path / "cache"
    cache.mkdir()
    write_archive(cache / image.digest, image, [ref])
    write_context(tmp_path, f"FROM {ref}\nCOPY data.txt /data.txt\n", {"data.txt": "x\n"})
    mark = reg.log_mark()
    r = _build(tmp_path, "k1", "--cache-dir", str(cache))
    assert r.returncode == 0, r.stderr
    requests = reg.requests_since(mark)
    assert any("/manifests/" in path for _, path, _ in requests)  # the tag was resolved
    assert not any("/blobs/" in path for _, path, _ in requests), requests  # nothing downloaded
    # Without the entry, the same build downloads the layers.
    mark = reg.log_mark()
    r = _build(tmp_path, "k2")
    assert r.returncode == 0, r.stderr
    assert any("/blobs/" in path for _, path, _ in reg.requests_since(mark))
