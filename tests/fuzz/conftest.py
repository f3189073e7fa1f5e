"""Fixtures of the differential fuzzer: one set of builders (kiln's work directory, buildah) per test session."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import fuzzlib  # noqa: E402

from support.base_images import OciImage  # noqa: E402
from support.buildah import Buildah  # noqa: E402
from support.mounts import unmount_under  # noqa: E402


@pytest.fixture(scope="session")
def fuzz_builders(session_dir: Path, busybox_image: OciImage, buildah: Buildah) -> Iterator[fuzzlib.Builders]:
    work = session_dir / "fuzz"
    work.mkdir(exist_ok=True)
    yield fuzzlib.Builders(work, busybox_image, buildah)
    unmount_under(work)
