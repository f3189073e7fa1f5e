"""Bytes pushed, read from the registry's storage.

The registry's storage is emptied before every timed run, so nothing can be skipped or cross-repository
mounted from an earlier run, and after the run every blob in it (layers, config, manifest) was uploaded by that
run: their total size is the bytes pushed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def _docker_dir(storage: Path) -> Path:
    return storage / "docker"


def empty_storage(storage: Path) -> None:
    """Remove every repository and blob (the registry keeps no cache in memory: it reads its files each time)."""
    shutil.rmtree(_docker_dir(storage), ignore_errors=True)


def stored_bytes(storage: Path) -> int:
    blobs = _docker_dir(storage) / "registry" / "v2" / "blobs"
    total = 0
    for d, _, files in os.walk(blobs):
        if "data" in files:
            total += os.path.getsize(os.path.join(d, "data"))
    return total
