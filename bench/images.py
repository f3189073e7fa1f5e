"""Base images for the benchmarks, as OCI layouts built without kiln and cached across runs.

busybox and debian come from tests/support/base_images.py. Two more are made here, on top of them, with tar
and `umoci raw add-layer`:
- large: debian plus one layer of 500 MiB in 51,200 files of 10 KiB of random bytes (a "big base" whose size
  a snapshot must not pay for when a step changes one file);
- tenlayer: busybox plus 9 layers of 1,000 files of 10 KiB each (10 layers in all).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.paths import REPO, use_test_support

use_test_support()
from support.base_images import (  # noqa: E402
    FIXED_TIME,
    OciImage,
    busybox_arm64_image,
    busybox_image,
    cached_layout,
    debian_image,
    default_cache_dir,
)
from support.procs import run  # noqa: E402

LARGE_FILES = 51_200
TENLAYER_EXTRA = 9
FILE_SIZE = 10 * 1024


@dataclass(frozen=True)
class BaseImages:
    """Each base by the name cases use in FROM lines (see cases.py)."""

    images: dict[str, OciImage]

    def __getitem__(self, name: str) -> OciImage:
        return self.images[name]


def write_random_files(root: Path, count: int, size: int, seed: int, per_dir: int = 512) -> None:
    """count files of size pseudo-random bytes under root/dNNN/, seeded so every build of a base is the same."""
    rng = random.Random(seed)
    for i in range(count):
        d = root / f"d{i // per_dir:03d}"
        if i % per_dir == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}").write_bytes(rng.randbytes(size))


def _copy_layout(src: OciImage, dest: Path) -> None:
    shutil.copytree(src.layout, dest, symlinks=True)


def _add_layer(layout: Path, tag: str, rootfs: Path, created_by: str) -> None:
    layer = layout.parent / "layer.tar"
    run(["tar", "--create", "--file", layer, "--directory", rootfs, "--sort=name", "--numeric-owner",
         "--format=pax", "--pax-option=delete=atime,delete=ctime", f"--mtime={FIXED_TIME}", "--clamp-mtime",
         "--owner=0", "--group=0", "."], timeout=1800)  # fmt: skip
    run(["umoci", "raw", "add-layer", "--history.created_by", created_by, "--history.created", FIXED_TIME,
         "--image", f"{layout}:{tag}", layer], timeout=1800)  # fmt: skip
    layer.unlink()


def _large(debian: OciImage) -> Callable[[Path, str], None]:
    def build(layout: Path, tag: str) -> None:
        _copy_layout(debian, layout)
        if tag != debian.tag:
            run(["umoci", "tag", "--image", f"{layout}:{debian.tag}", tag])
        data = layout.parent / "data"
        write_random_files(data / "opt" / "bigbase", LARGE_FILES, FILE_SIZE, seed=500)
        _add_layer(layout, tag, data, f"kiln bench: {LARGE_FILES} files of {FILE_SIZE} bytes in /opt/bigbase")
        shutil.rmtree(data)
        run(["umoci", "gc", "--layout", layout])

    return build


def _tenlayer(busybox: OciImage) -> Callable[[Path, str], None]:
    def build(layout: Path, tag: str) -> None:
        _copy_layout(busybox, layout)
        for n in range(TENLAYER_EXTRA):
            data = layout.parent / f"data{n}"
            write_random_files(data / "opt" / f"layer{n}", 1000, FILE_SIZE, seed=1000 + n)
            _add_layer(layout, tag, data, f"kiln bench: layer {n + 1} of {TENLAYER_EXTRA}")
            shutil.rmtree(data)
        run(["umoci", "gc", "--layout", layout])

    return build


def _multi(images: dict[str, OciImage]) -> Callable[[Path, str], None]:
    """One layout whose tag names an OCI index of the given images (by architecture), each one's blobs copied."""

    def build(layout: Path, tag: str) -> None:
        entries = []
        for arch, image in images.items():
            index = json.loads((image.layout / "index.json").read_text())
            [entry] = [m for m in index["manifests"]
                       if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == image.tag]
            entries.append({"mediaType": entry.get("mediaType", "application/vnd.oci.image.manifest.v1+json"),
                            "digest": entry["digest"], "size": entry["size"],
                            "platform": {"os": "linux", "architecture": arch}})  # fmt: skip
            shutil.copytree(image.layout / "blobs", layout / "blobs", dirs_exist_ok=True)
        index_bytes = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                  "manifests": entries}).encode()  # fmt: skip
        digest = hashlib.sha256(index_bytes).hexdigest()
        (layout / "blobs" / "sha256" / digest).write_bytes(index_bytes)
        (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": f"sha256:{digest}",
            "size": len(index_bytes), "annotations": {"org.opencontainers.image.ref.name": tag}}]}))  # fmt: skip

    return build


def prepare_bases(names: set[str], cache: Path) -> BaseImages:
    """The layouts of the named bases (busybox, debian, large, tenlayer), building missing ones (slow once)."""
    test_cache = default_cache_dir(REPO)
    test_cache.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    images: dict[str, OciImage] = {}
    if names & {"busybox", "tenlayer"}:
        images["busybox"] = busybox_image(test_cache)
    if names & {"debian", "large"}:
        images["debian"] = debian_image(test_cache)
    if "large" in names:
        deb = images["debian"]
        key = {"base": os.path.basename(deb.layout), "files": str(LARGE_FILES), "size": str(FILE_SIZE)}
        images["large"] = cached_layout(cache, "large", key, _large(deb))
    if "busybox-multi" in names:
        parts = {"amd64": busybox_image(test_cache), "arm64": busybox_arm64_image(test_cache)}
        key = {arch: os.path.basename(image.layout) for arch, image in parts.items()}
        images["busybox-multi"] = cached_layout(cache, "busybox-multi", key, _multi(parts))
    if "tenlayer" in names:
        bb = images["busybox"]
        key = {"base": os.path.basename(bb.layout), "extra": str(TENLAYER_EXTRA), "size": str(FILE_SIZE)}
        images["tenlayer"] = cached_layout(cache, "tenlayer", key, _tenlayer(bb))
    return BaseImages({n: images[n] for n in names})
