"""The conformance suite: every case under cases/ built by kiln and by buildah, then compared with kiln diff."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from harness import Bases, ServedFiles  # noqa: E402

from support.base_images import OciImage  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance: builds a Dockerfile with kiln and buildah and compares them")


@pytest.fixture(scope="session")
def bases(busybox_image: OciImage, busybox_ref: str, request: pytest.FixtureRequest) -> Bases:
    """Base image references; debian is fetched only when a debian case asks for it (it is slow)."""
    return Bases(busybox=busybox_ref, debian_getter=lambda: request.getfixturevalue("debian_ref"))


@pytest.fixture(scope="session")
def served(session_dir: Path) -> Iterator[ServedFiles]:
    """An HTTP server on 127.0.0.1 for ADD <url> cases (each case serves its own served/ directory)."""
    server = ServedFiles(session_dir / "served")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def kiln_dir(session_dir: Path) -> Path:
    """One kiln work directory per worker: base image blobs are fetched once and reused by every case."""
    path = session_dir / "kiln"
    path.mkdir(exist_ok=True)
    return path
