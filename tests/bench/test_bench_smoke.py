"""A smoke run of the benchmark suite: the small case, one repetition, checked for a table and sane JSON.

The suite itself is not part of the test command (it takes many minutes); this only shows it still runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# One worker runs both tests, so the module's one smoke run serves both (test.sh uses --dist loadgroup):
# two workers would each run the suite at once and fight over the machine.
pytestmark = [
    pytest.mark.slow, pytest.mark.root, pytest.mark.buildah, pytest.mark.registry,
    pytest.mark.xdist_group("bench-smoke"),
]  # fmt: skip


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:  # type: ignore[type-arg]
    if os.geteuid() != 0:
        pytest.skip("the suite mounts a tmpfs and runs buildah as root")
    for tool in ("buildah", "umoci", "docker-registry"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    results = tmp_path_factory.mktemp("bench-results")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--cases", "small", "--repetitions", "1", "--no-gzip",
         "--results-dir", str(results)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    files = list(results.glob("*.json"))
    assert len(files) == 1, files
    return proc.stdout, json.loads(files[0].read_text())


def test_table_has_a_row_for_the_small_case(smoke_run: tuple[str, dict]) -> None:  # type: ignore[type-arg]
    stdout, _ = smoke_run
    rows = [line.split() for line in stdout.splitlines() if line.startswith("small ")]
    assert rows, stdout
    assert "-" not in rows[0][1:4], stdout  # a builder that failed leaves "-" in its column
    kiln_s, buildah_s, ratio = (float(x) for x in rows[0][1:4])
    assert 0 < kiln_s < 300 and 0 < buildah_s < 300
    assert ratio == pytest.approx(kiln_s / buildah_s, abs=0.02)
    assert "targets" in stdout and "kiln peak memory" in stdout


def test_json_numbers_are_sane(smoke_run: tuple[str, dict]) -> None:  # type: ignore[type-arg]
    _, doc = smoke_run
    machine = doc["machine"]
    assert machine["cores"] == os.cpu_count()
    assert machine["kernel"] == os.uname().release
    assert "buildah version" in machine["buildah_version"]
    assert len(machine["kiln_revision"].removesuffix("-dirty")) == 40
    (case,) = doc["cases"]
    assert case["name"] == "small" and case["status"] == "ok", case["reason"]
    runs = case["runs"]
    # One alternating pair: kiln first, then buildah.
    assert [r["builder"] for r in runs] == ["kiln", "buildah"]
    for builder in ("kiln", "buildah"):
        # A Python process alone holds more than 5 MB; nothing in the small case needs a GB.
        assert 5e6 < case[f"{builder}_peak_rss_bytes"] < 2e9
        # The registry was emptied before the push, so the busybox base layer (about 1 MB compressed) is in it.
        assert 5e5 < case[f"{builder}_pushed_bytes"] < 5e7
    phases = case["kiln_phases_median_seconds"]
    assert phases and all(v >= 0 for v in phases.values())
    assert phases["steps"] <= case["kiln_median_seconds"]
    assert {t["name"] for t in doc["targets"]} >= {"faster than buildah in every case"}
