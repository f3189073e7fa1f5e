"""The --cache-dir store (transports/imagecache.py) on its own: what kiln warm writes, kaniko 1.24's tarball
entries, freshness, and damaged entries (a miss with a warning, never an error)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from kiln.oci.platform import Platform
from kiln.transports.archive import write_archive
from kiln.transports.imagecache import ImageCache
from kiln.transports.layout import read_image
from support.base_images import OciImage

REF = "registry.invalid/base/busybox:1"


def test_stored_image_is_found_by_reference_and_by_digest(tmp_path: Path, busybox_image: OciImage) -> None:
    image = read_image(busybox_image.layout, busybox_image.tag)
    cache = ImageCache(tmp_path / "c")
    platform = Platform.host()
    assert cache.get(REF, platform) is None
    entry = cache.put(REF, platform, image)
    assert entry == tmp_path / "c" / image.digest
    found = cache.get(REF, platform)
    assert found is not None and found.digest == image.digest and found.layers == image.layers
    by_digest = cache.get(f"registry.invalid/other@{image.digest}", platform)
    assert by_digest is not None and by_digest.digest == image.digest
    # Another platform was not stored; another tag neither.
    assert cache.get(REF, Platform.parse("linux/s390x")) is None
    assert cache.get("registry.invalid/base/busybox:2", platform) is None
    # Docker Hub's short names are one reference.
    cache.put("busybox", platform, image)
    assert cache.get("docker.io/library/busybox:latest", platform) is not None


def test_ttl_counts_from_when_it_was_stored(tmp_path: Path, busybox_image: OciImage) -> None:
    image = read_image(busybox_image.layout, busybox_image.tag)
    cache = ImageCache(tmp_path / "c", ttl=3600)
    entry = cache.put(REF, Platform.host(), image)
    old = time.time() - 7200
    os.utime(entry, (old, old))
    assert cache.get(REF, Platform.host()) is None
    assert not cache.fresh(image.digest)
    cache.put(REF, Platform.host(), image)  # an expired entry is stored again
    assert cache.get(REF, Platform.host()) is not None


def test_kaniko_tarball_entries_are_read(tmp_path: Path, busybox_image: OciImage) -> None:
    image = read_image(busybox_image.layout, busybox_image.tag)
    cache_dir = tmp_path / "c"
    cache_dir.mkdir()
    write_archive(cache_dir / image.digest, image, [REF])  # kaniko 1.24's warmer: a tarball named by digest
    found = ImageCache(cache_dir).get(f"registry.invalid/base/busybox@{image.digest}", Platform.host())
    assert found is not None
    assert found.config_bytes == image.config_bytes
    assert [d.digest for d in found.layers] == [d.digest for d in image.layers]


def test_a_damaged_entry_is_a_miss_with_a_warning(tmp_path: Path, busybox_image: OciImage) -> None:
    image = read_image(busybox_image.layout, busybox_image.tag)
    warnings: list[str] = []
    cache = ImageCache(tmp_path / "c", warn=warnings.append)
    entry = cache.put(REF, Platform.host(), image)
    (entry / "index.json").write_text("{not json")
    assert cache.get(REF, Platform.host()) is None
    assert len(warnings) == 1 and "--cache-dir" in warnings[0] and REF in warnings[0]


def test_a_reference_by_digest_is_stored_and_found(tmp_path: Path, busybox_image: OciImage) -> None:
    image = read_image(busybox_image.layout, busybox_image.tag)
    cache = ImageCache(tmp_path / "c")
    ref = f"registry.invalid/base/busybox:1@{image.digest}"
    cache.put(ref, Platform.host(), image)
    found = cache.get(ref, Platform.host())
    assert found is not None and found.digest == image.digest
