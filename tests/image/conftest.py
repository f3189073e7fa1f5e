"""Fixtures of the tests of kiln's image: the image (built once per session by scripts/image.sh, with kiln), and
a fresh unpacked copy of it per test (a build in place rewrites the container's root).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from image_helpers import Container, KilnImage, build_kiln_image

from support.mounts import mounts_under, remove_tree
from support.procs import run
from support.registry import Registry


@pytest.fixture(scope="session")
def kiln_image(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> KilnImage:
    """kiln's image, built by `scripts/image.sh` with kiln: an OCI layout, a docker-archive, and pushed to the
    test registry (registry.ref("kiln/kiln"))."""
    flags = ["--destination", registry.ref("kiln/kiln"), "--", "--insecure-registry", registry.address]
    return build_kiln_image(tmp_path_factory, *flags, tar=True)


@pytest.fixture(scope="session")
def kiln_debug_image(tmp_path_factory: pytest.TempPathFactory) -> KilnImage:
    """The -debug variant (`scripts/image.sh --debug`): a busybox shell in /busybox."""
    return build_kiln_image(tmp_path_factory, "--debug")


def _unpacked(image: KilnImage, tmp_path: Path) -> Iterator[Container]:
    bundle = tmp_path / "bundle"
    run(["umoci", "unpack", "--image", image.image.ref.removeprefix("oci:"), str(bundle)])
    yield Container(bundle)
    assert not mounts_under(tmp_path), mounts_under(tmp_path)
    remove_tree(bundle)


@pytest.fixture
def container(kiln_image: KilnImage, tmp_path: Path) -> Iterator[Container]:
    """A fresh unpacked copy of kiln's image (umoci unpack); nothing stays mounted under it afterwards."""
    yield from _unpacked(kiln_image, tmp_path)


@pytest.fixture
def debug_container(kiln_debug_image: KilnImage, tmp_path: Path) -> Iterator[Container]:
    """A fresh unpacked copy of the -debug variant."""
    yield from _unpacked(kiln_debug_image, tmp_path)


