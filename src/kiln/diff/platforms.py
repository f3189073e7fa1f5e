"""Comparing images that are indexes: each platform's image against the other side's image for that platform.

Both sides indexes: every platform either offers (attestations left out) is compared, and one that only one side
offers is a difference. One side an index and the other one image: the image is compared with the index's entry
for the image's platform, and the report says so. Each side's images are opened by digest from where the index
is, so a registry's blobs shared between platforms are pulled once into the side's store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kiln.diff.model import DiffReport, Only, PlatformDiff, PlatformsReport
from kiln.errors import ImageFormatError
from kiln.oci.descriptor import Descriptor, is_attestation, pick_platform
from kiln.oci.manifest import Index
from kiln.oci.platform import Platform
from kiln.transports.address import ImageAddress, entry_address
from kiln.transports.image import Image


@dataclass(frozen=True)
class Side:
    """One side of the comparison: its address, its index (None for one image), its label and work directory."""

    address: ImageAddress
    index: Index | None
    label: str  # "A" or "B", as the report names the sides
    workdir: Path


def platform_key(platform: Platform | None, digest: str) -> str:
    """How a platform is shown and matched: one spelling per platform (linux/arm64 is linux/arm64/v8)."""
    return str(platform.normal()) if platform is not None else f"(no platform) {digest}"


def platform_entries(index: Index) -> dict[str, Descriptor]:
    """The index's images by platform, attestations left out; of two entries for one platform, the first (as a
    runtime pulling that platform would take)."""
    out: dict[str, Descriptor] = {}
    for desc in index.manifests:
        if not is_attestation(desc):
            out.setdefault(platform_key(desc.platform, desc.digest), desc)
    return out


# Opens one image of a side, its pulls going to the side's work directory (kiln.diff.api gives the options).
Opener = Callable[[ImageAddress, Path], Image]
# Compares two opened images, naming them as given.
Comparer = Callable[[Image, Image, tuple[str, str]], DiffReport]


def compare_indexes(a: Side, b: Side, open_one: Opener, compare: Comparer) -> PlatformsReport:
    """Both sides indexes: each platform of either, in sorted order."""
    assert a.index is not None and b.index is not None
    entries_a, entries_b = platform_entries(a.index), platform_entries(b.index)
    results: list[PlatformDiff] = []
    for key in sorted(entries_a.keys() | entries_b.keys()):
        desc_a, desc_b = entries_a.get(key), entries_b.get(key)
        if desc_a is None or desc_b is None:
            results.append(PlatformDiff(key, None, "a" if desc_a is not None else "b"))
            continue
        results.append(PlatformDiff(key, _compare_entries(a, desc_a, b, desc_b, open_one, compare)))
    return PlatformsReport(str(a.address), str(b.address), tuple(results))


def compare_image_with_index(image_side: Side, index_side: Side, open_one: Opener,
                             compare: Comparer) -> PlatformsReport:
    """One side an image, the other an index: the image against the index's entry for the image's platform."""
    assert index_side.index is not None
    image = open_one(image_side.address, image_side.workdir)
    if not (image.config.os and image.config.architecture):
        raise ImageFormatError(f"{image_side.address}: its config names no platform to find in "
                               f"{index_side.address}'s index: give --platform")
    platform = image.config.platform.normal()
    key = platform_key(platform, image.digest)
    chosen = pick_platform(index_side.index.manifests, platform)
    a_is_image = image_side.label == "A"
    if chosen is None:
        note = f"{image_side.label} is one image ({key}); {index_side.label} is an index without an entry for it"
        only: Only = "a" if a_is_image else "b"
        return _report(image_side, index_side, (PlatformDiff(key, None, only),), note, a_is_image)
    note = (f"{image_side.label} is one image ({key}): compared with the entry of {index_side.label}'s index for "
            f"that platform")
    entry_at = entry_address(index_side.address, chosen.digest)
    entry = open_one(entry_at, index_side.workdir)
    names = (str(image_side.address), str(entry_at))
    pair = (image, entry) if a_is_image else (entry, image)
    shown = names if a_is_image else (names[1], names[0])
    return _report(image_side, index_side, (PlatformDiff(key, compare(*pair, shown)),), note, a_is_image)


def _report(image_side: Side, index_side: Side, results: tuple[PlatformDiff, ...], note: str,
            a_is_image: bool) -> PlatformsReport:
    a, b = (image_side, index_side) if a_is_image else (index_side, image_side)
    return PlatformsReport(str(a.address), str(b.address), results, note)


def _compare_entries(a: Side, desc_a: Descriptor, b: Side, desc_b: Descriptor, open_one: Opener,
                     compare: Comparer) -> DiffReport:
    at_a, at_b = entry_address(a.address, desc_a.digest), entry_address(b.address, desc_b.digest)
    return compare(open_one(at_a, a.workdir), open_one(at_b, b.workdir), (str(at_a), str(at_b)))
