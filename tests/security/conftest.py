"""Fixtures for the attack tests: whole `kiln build` runs, as users run kiln (shared with tests/integration)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from integ_helpers import kiln, kiln_bb  # noqa: E402, F401 - fixtures shared with tests/integration
