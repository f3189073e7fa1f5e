"""The comparer against real images and independent tools: umoci's unpack, skopeo's push, the test registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.diff import DiffOptions, diff_images
from kiln.diff.api import flattened_tree
from kiln.transports.layout import read_image as read_layout
from kiln.transports.registry.options import RegistryOptions
from support.base_images import OciImage
from support.images import flatten_layout
from support.registry import Registry

pytestmark = pytest.mark.root


def test_flatten_matches_umoci(busybox_image: OciImage, tmp_path: Path) -> None:
    ours = flattened_tree(read_layout(busybox_image.layout, busybox_image.tag), _mk(tmp_path / "k"), "busybox")
    theirs = flatten_layout(busybox_image.layout, busybox_image.tag, tmp_path)
    assert set(ours) == set(theirs)
    for path, info in theirs.items():
        mine = ours[path]
        assert (mine.type, mine.mode, mine.uid, mine.gid, mine.size, mine.sha256, mine.link) == (
            info.type, info.mode, info.uid, info.gid, info.size, info.sha256, info.link,
        ), path  # fmt: skip
    assert len(ours) > 100  # the applet links are there


def _mk(p: Path) -> Path:
    p.mkdir(parents=True)
    return p


def test_layout_equals_its_registry_copy(busybox_image: OciImage, busybox_ref: str, tmp_path: Path) -> None:
    opts = DiffOptions(workdir=tmp_path, layers=True, registry=RegistryOptions(insecure=True))
    report = diff_images(f"oci-layout:{busybox_image.layout}:{busybox_image.tag}", busybox_ref, opts)
    assert report.same, report.differences
    assert report.layer_counts == (1, 1)


def test_layout_differs_from_other_registry_image(
    busybox_image: OciImage, registry: Registry, busybox_ref: str, tmp_path: Path
) -> None:
    # Same registry, a tag that does not exist: an error, not "same".
    from kiln.errors import KilnError

    with pytest.raises(KilnError):
        diff_images(
            f"oci-layout:{busybox_image.layout}",
            registry.ref("base/busybox", "nope"),
            DiffOptions(workdir=tmp_path, registry=RegistryOptions(insecure=True)),
        )
