"""A tmpfs for builder state, so neither builder is measured against the disk.

Mounted on a directory of our own under a fresh temporary directory, and always unmounted (with everything
buildah or kiln may have left mounted below it) before the directory is removed.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.paths import use_test_support

use_test_support()
from support.mounts import mounts_under, unmount_under  # noqa: E402


@contextmanager
def mounted_tmpfs(size: str = "20g", prefix: str = "kiln-bench-") -> Iterator[Path]:
    """A tmpfs of at most `size` (pages are only used when written), removed with its contents at the end."""
    # Lower-case letters and digits only: buildah reads `oci:` layouts below it as image names, which a
    # component like mkdtemp's "kdz1ptl_" (a trailing underscore) breaks.
    parent = Path(tempfile.gettempdir()) / f"{prefix}{uuid.uuid4().hex[:12]}"
    parent.mkdir(mode=0o700)
    parent.chmod(0o755)  # the rootless cases' user reads contexts and bases below it
    mount_point = parent / "tmpfs"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "bench-tmpfs", str(mount_point)],
                   check=True)  # fmt: skip
    try:
        yield mount_point
    finally:
        # Unmounting the tmpfs discards its contents; mounts left inside it (overlays) go first.
        unmount_under(mount_point)
        if mounts_under(parent):
            raise OSError(f"still mounted below {parent}; not removing it")
        shutil.rmtree(parent)
