"""The targets kiln's numbers are tracked against. Each is reported as pass, fail or n/a; none fails the run.

- faster than buildah in every case (median wall time, build + push);
- snapshot time proportional to what changed: a step changing one small file on the large base (500 MiB more
  files) must snapshot about as fast as the same step on plain debian: per-step time of the "snapshot" phase
  (or "layer", which contains it, while kiln reports no finer phase) on ten-runs-large <= 1.5 x that on
  ten-runs-debian + 20 ms;
- gzip >= 300 MB/s per core, measured in-process with bench/gzip_throughput.py's data and CompressingWriter at
  kiln's default level (one thread, so per core);
- kiln's peak memory (RSS of its process tree) < 200 MB in every case.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from bench.results import CaseResult

GZIP_MB_PER_S = 300.0
PEAK_BYTES = 200e6
SNAPSHOT_FACTOR = 1.5
SNAPSHOT_SLACK = 0.02


@dataclass
class Target:
    name: str
    status: str
    """pass, fail or n/a"""
    detail: str


def measure_gzip(mib: int = 128, repeats: int = 2) -> dict[str, Any]:
    """Best of `repeats` single-threaded passes of kiln's gzip over gzip_throughput.py's mixed data."""
    from bench import gzip_throughput as g

    chunks = g.make_chunks(mib)
    best = 0.0
    ratio = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        out = g.kiln("gzip", None)(chunks)
        best = max(best, mib * g.CHUNK / (time.perf_counter() - started) / 1e6)
        ratio = out / (mib * g.CHUNK)
    return {"mib": mib, "level": "default", "mb_per_s": round(best, 1), "ratio": round(ratio, 3)}


def _faster(cases: list[CaseResult]) -> Target:
    measured = [c for c in cases if c.ratio is not None]
    if not measured:
        return Target("faster than buildah in every case", "n/a", "no case measured with both builders")
    slower = [f"{c.name} ({c.ratio:.2f})" for c in measured if c.ratio is not None and c.ratio >= 1.0]
    missing = [c.name for c in cases if c.ratio is None]
    detail = ("slower in: " + ", ".join(slower)) if slower else f"faster in all {len(measured)} measured cases"
    if missing:
        detail += f"; not measured: {', '.join(missing)}"
    return Target("faster than buildah in every case", "fail" if slower else "pass", detail)


def _snapshot(cases: list[CaseResult]) -> Target:
    name = "snapshot time proportional to what changed"
    by_name = {c.name: c for c in cases}
    large, small = by_name.get("ten-runs-large"), by_name.get("ten-runs-debian")
    if large is None or small is None:
        return Target(name, "n/a", "needs cases ten-runs-large and ten-runs-debian")
    for phase in ("snapshot", "layer"):
        big_step, small_step = large.per_step_median(phase), small.per_step_median(phase)
        if big_step is not None and small_step is not None:
            limit = SNAPSHOT_FACTOR * small_step + SNAPSHOT_SLACK
            detail = (f"phase {phase!r} per step: {big_step * 1000:.1f} ms on the large base vs "
                      f"{small_step * 1000:.1f} ms on debian (limit {limit * 1000:.1f} ms)")  # fmt: skip
            return Target(name, "pass" if big_step <= limit else "fail", detail)
    return Target(name, "n/a", "kiln reported no snapshot or layer phase for both ten-runs cases")


def _gzip(gzip: dict[str, Any] | None, cases: list[CaseResult]) -> Target:
    name = f"gzip >= {GZIP_MB_PER_S:.0f} MB/s per core"
    if gzip is None:
        return Target(name, "n/a", "not measured")
    rate = float(gzip["mb_per_s"])
    detail = f"{rate:.0f} MB/s at the default level over gzip_throughput.py's mixed data ({gzip['mib']} MiB)"
    return Target(name, "pass" if rate >= GZIP_MB_PER_S else "fail", detail)


def memory_target(cases: list[CaseResult], limit: float = PEAK_BYTES) -> Target:
    """kiln's peak memory below `limit` bytes in every case."""
    name = f"kiln peak memory < {limit / 1e6:.0f} MB"
    peaks = {c.name: p for c in cases if (p := c.peak_rss("kiln")) is not None}
    if not peaks:
        return Target(name, "n/a", "no kiln run succeeded")
    worst = max(peaks, key=lambda k: peaks[k])
    over = [f"{k} ({v / 1e6:.0f} MB)" for k, v in peaks.items() if v >= limit]
    detail = f"highest {peaks[worst] / 1e6:.0f} MB in {worst}" + (f"; over in: {', '.join(over)}" if over else "")
    return Target(name, "fail" if over else "pass", detail)


def evaluate(cases: list[CaseResult], gzip: dict[str, Any] | None) -> list[Target]:
    return [_faster(cases), _snapshot(cases), _gzip(gzip, cases), memory_target(cases)]


def targets_json(targets: list[Target]) -> list[dict[str, str]]:
    return [asdict(t) for t in targets]
