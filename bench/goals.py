"""The performance issue's goals (issue 17), as targets over one run's cases and fixed costs: each passes,
fails with the figure that misses, or is n/a when the run lacks its case.

Wall-time goals are kiln's median (build + push); the push goal compares what pushing a 1 GiB layer adds to the
wall time (big-file against big-file-local) with the compressor's own time on that layer.
"""

from __future__ import annotations

from typing import Any

from bench.results import CaseResult
from bench.targets import Target, memory_target

_WALL_GOALS = (  # case, seconds, what
    ("small", 0.5, "the small case"),
    ("one-run", 0.35, "one RUN"),
    ("ten-runs-debian", 1.0, "ten one-line RUNs on a warm base"),
    ("ten-runs-debian-cold", 5.0, "ten RUNs from an empty kiln dir"),
)
_IMPORT_GOALS = (("kiln --version", 0.1), ("FROM scratch COPY build", 0.2))
PER_RUN_SECONDS = 0.040
PUSH_FACTOR = 1.1
PEAK_BYTES = 150e6


def _wall(cases: dict[str, CaseResult], name: str, limit: float, what: str) -> Target:
    goal = f"{what} <= {limit:g} s"
    median = cases[name].median_seconds("kiln") if name in cases else None
    if median is None:
        return Target(goal, "n/a", f"case {name} not measured")
    return Target(goal, "pass" if median <= limit else "fail", f"{name}: {median:.2f} s")


def _imports(imports: dict[str, Any], what: str, limit: float) -> Target:
    goal = f"{what} <= {limit:g} s wall"
    m = imports.get(what) or {}
    if "wall_seconds_median" not in m:
        return Target(goal, "n/a", "not measured")
    wall = m["wall_seconds_median"]
    return Target(goal, "pass" if wall <= limit else "fail", f"{wall * 1000:.0f} ms")


def _per_run(per_run: dict[str, Any] | None) -> Target:
    goal = f"per RUN <= {PER_RUN_SECONDS * 1000:.0f} ms"
    step = (per_run or {}).get("kiln_step_seconds_median")
    if step is None:
        return Target(goal, "n/a", "case run-true not measured")
    return Target(goal, "pass" if step <= PER_RUN_SECONDS else "fail", f"{step * 1000:.0f} ms")


def _push(push: dict[str, Any] | None) -> Target:
    goal = f"pushing a layer adds <= {PUSH_FACTOR:g} x its compression time"
    if not push or not push.get("kiln_compress_seconds"):
        return Target(goal, "n/a", "needs cases big-file and big-file-local")
    added, compress = push["kiln_added_seconds"], push["kiln_compress_seconds"]
    detail = (f"adds {added:.2f} s = {added / compress:.1f} x the compressor's {compress:.2f} s; the layer took "
              f"{push['kiln_layer_seconds_pushed']:.2f} s streaming vs {push['kiln_layer_seconds_unpushed']:.2f} s "
              "unpushed (the upload is the bound)")  # fmt: skip
    return Target(goal, "pass" if added <= PUSH_FACTOR * compress else "fail", detail)


def issue_goals(cases: list[CaseResult], overheads: dict[str, Any]) -> list[Target]:
    by_name = {c.name: c for c in cases if c.status == "ok"}
    imports = overheads.get("imports") or {}
    return [
        *(_imports(imports, what, limit) for what, limit in _IMPORT_GOALS),
        *(_wall(by_name, name, limit, what) for name, limit, what in _WALL_GOALS),
        _per_run(overheads.get("per_run")),
        _push(overheads.get("push")),
        memory_target(cases, PEAK_BYTES),
    ]
