"""The benchmark suite's own parts: kiln's event aggregation and the process-tree memory sampler."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.memory import TreeSampler  # noqa: E402
from bench.phases import median_phases, parse_events, phase_seconds, slowest_phase  # noqa: E402


def _line(**fields: object) -> str:
    return json.dumps(fields)


def test_phases_are_summed_by_whatever_name_kiln_uses() -> None:
    lines = [
        "not json: a RUN's stray output",
        _line(event="step", number=1),
        _line(event="phase", phase="execute", seconds=0.5, bytes=None),
        _line(event="phase", phase="layer", seconds=0.25, bytes=1000),
        _line(event="step_done", seconds=0.8, note=""),
        _line(event="step", number=2),
        _line(event="phase", phase="layer", seconds=0.125, bytes=24),
        _line(event="phase", phase="brand-new-phase", seconds=2.0),
        _line(event="step_done", seconds=2.2, note=""),
        _line(event="summary", seconds=3.0),
    ]
    events = parse_events(lines)
    assert events.phases["layer"].seconds == 0.375 and events.phases["layer"].bytes == 1024
    assert events.phases["layer"].count == 2
    assert events.per_step("layer") == [0.25, 0.125]
    assert events.per_step("execute") == [0.5]
    seconds = phase_seconds(events, wall=3.5)
    assert seconds["steps"] == pytest.approx(3.0)
    assert seconds["outside build"] == pytest.approx(0.5)
    assert slowest_phase(seconds) == ("brand-new-phase", 2.0)


def test_median_counts_a_missing_phase_as_zero() -> None:
    assert median_phases([{"a": 1.0}, {"a": 3.0, "b": 1.0}, {"a": 2.0}]) == {"a": 2.0, "b": 0.0}


def test_sampler_sees_memory_of_a_grandchild() -> None:
    # sh -> python holding 100 MiB of touched pages: the peak must include the grandchild.
    code = "import time; x = b'\\x01' * (100 << 20); time.sleep(1.0)"
    proc = subprocess.Popen(["sh", "-c", f'"{sys.executable}" -c "{code}"; true'])
    sampler = TreeSampler(interval=0.02)
    sampler.start(proc.pid)
    proc.wait(timeout=30)
    peak = sampler.stop()
    assert 100 << 20 < peak < 300 << 20
    assert sampler.samples > 10
