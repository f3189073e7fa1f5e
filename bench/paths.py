"""Where the suite finds the repository, the test support code it reuses, and its cached base images."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
KILN = REPO / ".venv" / "bin" / "kiln"


def bench_cache_dir() -> Path:
    """Base images the suite builds (large base, ten-layer base): $KILN_BENCH_CACHE or <repo>/.cache/bench-images."""
    return Path(os.environ.get("KILN_BENCH_CACHE") or REPO / ".cache" / "bench-images")


def use_test_support() -> None:
    """Make tests/support importable: the suite reuses its registry, buildah and base-image helpers."""
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
