"""Per-case results: the runs of both builders, reduced to medians, peaks and kiln's phases."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.builders import RunOutcome
from bench.phases import median_phases, phase_seconds, slowest_phase


@dataclass
class Run:
    builder: str
    index: int
    seconds: float
    peak_rss: int
    pushed_bytes: int
    ok: bool
    error: str = ""
    phases: dict[str, float] = field(default_factory=dict)
    per_step: dict[str, list[float]] = field(default_factory=dict)
    cache_hits: int = 0
    steps: int = 0
    step_seconds: list[float] = field(default_factory=list)


def run_record(builder: str, index: int, outcome: RunOutcome, pushed: int) -> Run:
    run = Run(builder, index, round(outcome.seconds, 3), outcome.peak_rss, pushed, outcome.ok, outcome.error)
    if outcome.events is not None:
        ev = outcome.events
        run.phases = {k: round(v, 4) for k, v in phase_seconds(ev, outcome.seconds).items()}
        run.per_step = {name: ev.per_step(name) for name in ev.phases}
        run.steps = len(ev.steps)
        run.step_seconds = [float(s.get("seconds") or 0.0) for s in ev.steps]
        run.cache_hits = sum(1 for s in ev.steps if s.get("cached") or "cache" in str(s.get("note") or "").lower())
    return run


@dataclass
class CaseResult:
    name: str
    description: str
    status: str = "ok"
    """ok, n/a (cannot be measured yet, see reason) or error (a builder failed, see reason)."""
    reason: str = ""
    runs: list[Run] = field(default_factory=list)
    namespaced_case: str | None = None
    """Set for a case where kiln builds in place: the case with the same Dockerfile built namespaced."""

    def _ok(self, builder: str) -> list[Run]:
        return [r for r in self.runs if r.builder == builder and r.ok]

    def median_seconds(self, builder: str) -> float | None:
        runs = self._ok(builder)
        return round(statistics.median(r.seconds for r in runs), 3) if runs else None

    def peak_rss(self, builder: str) -> int | None:
        runs = self._ok(builder)
        return max(r.peak_rss for r in runs) if runs else None

    def pushed_bytes(self, builder: str) -> int | None:
        runs = self._ok(builder)
        return int(statistics.median(r.pushed_bytes for r in runs)) if runs else None

    @property
    def ratio(self) -> float | None:
        k, b = self.median_seconds("kiln"), self.median_seconds("buildah")
        if self.status != "ok" or k is None or not b:
            return None
        return round(k / b, 3)

    def kiln_phases(self) -> dict[str, float]:
        return median_phases([r.phases for r in self._ok("kiln")])

    def per_step_median(self, phase: str) -> float | None:
        """The median over kiln's runs of the median seconds of `phase` per step."""
        values = [statistics.median(r.per_step[phase]) for r in self._ok("kiln") if r.per_step.get(phase)]
        return statistics.median(values) if values else None

    def to_json(self) -> dict[str, Any]:
        slowest = slowest_phase(self.kiln_phases())
        return {
            "name": self.name,
            "description": self.description,
            "status": self.status,
            "kiln_mode": "namespaced" if self.namespaced_case is None else "in place",
            "namespaced_case": self.namespaced_case,
            "reason": self.reason,
            "kiln_median_seconds": self.median_seconds("kiln"),
            "buildah_median_seconds": self.median_seconds("buildah"),
            "ratio_kiln_to_buildah": self.ratio,
            "kiln_peak_rss_bytes": self.peak_rss("kiln"),
            "buildah_peak_rss_bytes": self.peak_rss("buildah"),
            "kiln_pushed_bytes": self.pushed_bytes("kiln"),
            "buildah_pushed_bytes": self.pushed_bytes("buildah"),
            "kiln_phases_median_seconds": self.kiln_phases(),
            "kiln_slowest_phase": {"phase": slowest[0], "seconds": round(slowest[1], 3)} if slowest else None,
            "runs": [asdict(r) for r in self.runs],
        }
