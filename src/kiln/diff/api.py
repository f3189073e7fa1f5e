"""diff_images: open two images, flatten both, compare files, config and (optionally) layers."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kiln.diff.compare import compare_configs, compare_layers, compare_trees
from kiln.diff.flatten import FileEntry, flatten_image, scan_tree
from kiln.diff.ignore import ConfigFilter, PathFilter
from kiln.diff.layers import layer_names
from kiln.diff.model import DiffReport, PlatformsReport
from kiln.diff.platforms import Side, compare_image_with_index, compare_indexes
from kiln.diff.sources import open_image
from kiln.oci.platform import Platform
from kiln.transports.address import ImageAddress, read_index
from kiln.transports.image import Image
from kiln.transports.registry.options import RegistryOptions


@dataclass(frozen=True)
class DiffOptions:
    ignore_paths: tuple[str, ...] = ()
    ignore_config: tuple[str, ...] = ()
    mtimes: bool = False
    layers: bool = False
    platform: Platform | None = None
    registry: RegistryOptions | None = None
    workdir: Path | None = None  # where images are unpacked (default: the system's temporary directory)


@contextmanager
def _scratch(parent: Path | None) -> Iterator[Path]:
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="kiln-diff-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def flattened_tree(image: Image, workdir: Path, label: str) -> dict[str, FileEntry]:
    root = workdir / "rootfs"
    root.mkdir()
    try:
        flatten_image(image, root, label)
        return scan_tree(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def diff_opened(
    image_a: Image, image_b: Image, options: DiffOptions, names: tuple[str, str] = ("A", "B")
) -> DiffReport:
    """Compare two images already opened."""
    paths = PathFilter.of(options.ignore_paths)
    configs = ConfigFilter.of(options.ignore_config)
    with _scratch(options.workdir) as work:
        (work / "a").mkdir()
        (work / "b").mkdir()
        tree_a = flattened_tree(image_a, work / "a", names[0])
        tree_b = flattened_tree(image_b, work / "b", names[1])
    differences = compare_trees(tree_a, tree_b, paths, mtimes=options.mtimes)
    differences += compare_configs(image_a.config, image_b.config, configs)
    file_sets = None
    if options.layers:
        sets_a, sets_b = layer_names(image_a), layer_names(image_b)
        differences += compare_layers(sets_a, sets_b, paths)
        file_sets = (tuple(sets_a), tuple(sets_b))
    return DiffReport(
        names[0],
        names[1],
        tuple(differences),
        (len(image_a.layers), len(image_b.layers)),
        file_sets,
    )


def _addresses(a: str | ImageAddress, b: str | ImageAddress, options: DiffOptions) -> tuple[ImageAddress, ...]:
    spec_a = a if isinstance(a, ImageAddress) else ImageAddress.parse(a)
    spec_b = b if isinstance(b, ImageAddress) else ImageAddress.parse(b)
    # Validate the filters before any slow work.
    PathFilter.of(options.ignore_paths)
    ConfigFilter.of(options.ignore_config)
    return spec_a, spec_b


def diff_images(a: str | ImageAddress, b: str | ImageAddress, options: DiffOptions | None = None) -> DiffReport:
    """Compare the images ``a`` and ``b`` name (``oci-layout:PATH[:TAG]``, ``docker-archive:PATH``, a reference):
    one image each, an index's entry for ``options.platform`` (default: this host's)."""
    options = options or DiffOptions()
    spec_a, spec_b = _addresses(a, b, options)
    with _scratch(options.workdir) as work:
        image_a = open_image(spec_a, work / "a", platform=options.platform, registry=options.registry)
        image_b = open_image(spec_b, work / "b", platform=options.platform, registry=options.registry)
        return diff_opened(image_a, image_b, options, (str(spec_a), str(spec_b)))


def diff_addresses(
    a: str | ImageAddress, b: str | ImageAddress, options: DiffOptions | None = None
) -> DiffReport | PlatformsReport:
    """What `kiln diff` compares: with a platform, or when neither side is an index, the two images
    (diff_images); otherwise platform by platform (kiln.diff.platforms)."""
    options = options or DiffOptions()
    spec_a, spec_b = _addresses(a, b, options)
    registry = options.registry or RegistryOptions()
    if options.platform is not None:
        return diff_images(spec_a, spec_b, options)
    index_a, index_b = read_index(spec_a, registry), read_index(spec_b, registry)
    if index_a is None and index_b is None:
        return diff_images(spec_a, spec_b, options)
    with _scratch(options.workdir) as work:
        side_a, side_b = Side(spec_a, index_a, "A", work / "a"), Side(spec_b, index_b, "B", work / "b")

        def open_one(address: ImageAddress, workdir: Path) -> Image:
            # By digest: the platform only matters for an image's own index, which an entry is not.
            return open_image(address, workdir, registry=registry)

        def compare(image_a: Image, image_b: Image, names: tuple[str, str]) -> DiffReport:
            return diff_opened(image_a, image_b, options, names)

        if index_a is not None and index_b is not None:
            return compare_indexes(side_a, side_b, open_one, compare)
        if index_a is None:
            return compare_image_with_index(side_a, side_b, open_one, compare)
        return compare_image_with_index(side_b, side_a, open_one, compare)
