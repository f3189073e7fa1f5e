"""kiln's own timings: the JSON lines `kiln build --log-format json` writes on stderr, aggregated by phase name.

Phases are whatever names kiln emits ({"event": "phase", "phase": NAME, "seconds": S, "bytes": B}); nothing
here knows a list of them, so a new phase shows up in the tables as soon as kiln reports it. Two pseudo-phases
are added: "steps" (sum of step_done seconds) and "outside build" (wall time minus the build's own summary
seconds: interpreter start-up, imports, exit).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PhaseTotal:
    seconds: float = 0.0
    bytes: int = 0
    count: int = 0


@dataclass
class KilnEvents:
    """What one kiln run reported about itself."""

    phases: dict[str, PhaseTotal] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)

    def step_notes(self) -> list[str]:
        return [str(s.get("note") or "") for s in self.steps]

    def per_step(self, phase: str) -> list[float]:
        """Seconds of `phase` per step that reported it, in order (used for the proportionality target)."""
        return list(self._per_step.get(phase, []))

    _per_step: dict[str, list[float]] = field(default_factory=dict, repr=False)


def parse_events(lines: Iterable[str]) -> KilnEvents:
    out = KilnEvents()
    step_phases: dict[str, float] = {}
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind = event.get("event")
        if kind == "phase":
            name = str(event.get("phase", "?"))
            total = out.phases.setdefault(name, PhaseTotal())
            total.seconds += float(event.get("seconds") or 0.0)
            total.bytes += int(event.get("bytes") or 0)
            total.count += 1
            step_phases[name] = step_phases.get(name, 0.0) + float(event.get("seconds") or 0.0)
        elif kind == "step":
            step_phases = {}
        elif kind == "step_done":
            out.steps.append(event)
            for name, seconds in step_phases.items():
                out._per_step.setdefault(name, []).append(seconds)
            step_phases = {}
        elif kind == "summary":
            out.summary = event
        elif kind in ("error", "warning"):
            out.errors.append(str(event.get("message", "")))
    return out


def phase_seconds(events: KilnEvents, wall: float) -> dict[str, float]:
    """Seconds per phase for one run, with the pseudo-phases "steps" and "outside build"."""
    seconds = {name: total.seconds for name, total in events.phases.items()}
    seconds["steps"] = sum(float(s.get("seconds") or 0.0) for s in events.steps)
    if events.summary is not None:
        seconds["outside build"] = max(0.0, wall - float(events.summary.get("seconds") or 0.0))
    return seconds


def median_phases(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """The median over runs of each phase's seconds (a phase missing from a run counts as 0 there)."""
    names = sorted({name for run in runs for name in run})
    return {name: statistics.median(run.get(name, 0.0) for run in runs) for name in names}


def slowest_phase(phases: dict[str, float]) -> tuple[str, float] | None:
    """The real phase (not the "steps" total) taking the most time."""
    real = {k: v for k, v in phases.items() if k != "steps"}
    if not real:
        return None
    name = max(real, key=lambda k: real[k])
    return name, real[name]
