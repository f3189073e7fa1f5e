"""Fixtures of the rootless tests: the two ordinary users scripts/install-deps.sh makes, and a directory they can
use."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.mounts import remove_tree
from support.rootless import User, user_named


@pytest.fixture(scope="session")
def rootless_user() -> User:
    """The user with subordinate IDs: its builds run in a user namespace with a full map."""
    return user_named("kiln-rootless")


@pytest.fixture(scope="session")
def oneid_user() -> User:
    """The user without subordinate IDs: its builds fall back to a one-ID map."""
    return user_named("kiln-oneid")


@pytest.fixture
def user_dir(rootless_user: User) -> Iterator[Path]:
    """A directory kiln-rootless (and, for reading, every user) can use: not pytest's, which is root's alone."""
    path = Path(tempfile.mkdtemp(prefix="kiln-rootless-test-", dir="/tmp"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        remove_tree(path)
