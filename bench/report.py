"""The tables the suite prints, and the JSON file it writes under bench/results/."""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.overheads import overhead_lines
from bench.results import CaseResult
from bench.targets import Target


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _mb(v: int | None) -> str:
    return "-" if v is None else f"{v / 1e6:.1f}"


def _table(header: Sequence[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    last = len(widths) - 1
    for row in rows:
        cells = [
            c.ljust(w) if i in (0, last) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


MAIN_HEADER = ["case", "kiln s", "buildah s", "kiln/buildah", "kiln peak MB", "buildah peak MB", "kiln pushed MB",
               "buildah pushed MB", "kiln slowest phase", "status"]  # fmt: skip


def main_table(cases: list[CaseResult]) -> str:
    rows = []
    for c in cases:
        j = c.to_json()
        slow = j["kiln_slowest_phase"]
        ratio = "n/a" if c.status == "n/a" else ("-" if c.ratio is None else f"{c.ratio:.2f}")
        rows.append([
            c.name, _s(j["kiln_median_seconds"]), _s(j["buildah_median_seconds"]), ratio,
            _mb(j["kiln_peak_rss_bytes"]), _mb(j["buildah_peak_rss_bytes"]), _mb(j["kiln_pushed_bytes"]),
            _mb(j["buildah_pushed_bytes"]), f"{slow['phase']} {slow['seconds']:.2f}s" if slow else "-",
            c.status if not c.reason else f"{c.status}: {c.reason[:70]}",
        ])  # fmt: skip
    return _table(MAIN_HEADER, rows)


IN_PLACE_HEADER = ["case (kiln variant)", "variant s", "as root s", "variant/as root", "buildah s",
                   "variant peak MB", "as root peak MB", "case as root"]  # fmt: skip


def in_place_table(cases: list[CaseResult]) -> str | None:
    """kiln in place vs kiln namespaced on the same Dockerfile, for the in-place cases run with their namespaced
    case; None when there is none."""
    by_name = {c.name: c for c in cases}
    rows = []
    for c in cases:
        other = by_name.get(c.namespaced_case or "")
        if other is None:
            continue
        inplace, namespaced = c.median_seconds("kiln"), other.median_seconds("kiln")
        ratio = "-" if inplace is None or not namespaced else f"{inplace / namespaced:.2f}"
        rows.append([c.name, _s(inplace), _s(namespaced), ratio, _s(c.median_seconds("buildah")),
                     _mb(c.peak_rss("kiln")), _mb(other.peak_rss("kiln")), other.name])  # fmt: skip
    return _table(IN_PLACE_HEADER, rows) if rows else None


def multi_platform_line(cases: list[CaseResult]) -> str | None:
    """What one two-platform build costs against the two single-platform builds it replaces, per builder."""
    by_name = {c.name: c for c in cases}
    both, amd64, arm64 = (by_name.get(n) for n in ("two-platforms", "two-platforms-amd64", "two-platforms-arm64"))
    if both is None or amd64 is None or arm64 is None:
        return None
    lines = []
    for builder in ("kiln", "buildah"):
        one, a, b = both.median_seconds(builder), amd64.median_seconds(builder), arm64.median_seconds(builder)
        if one is None or a is None or b is None:
            lines.append(f"{builder}: not measured")
            continue
        lines.append(f"{builder}: {one:.2f} s for both, {a:.2f} s + {b:.2f} s = {a + b:.2f} s one by one: "
                     f"{one / (a + b):.2f}x")
    return "\n".join(lines)


def phase_table(cases: list[CaseResult]) -> str:
    """kiln's median seconds per phase and case (phases as kiln names them)."""
    per_case = {c.name: c.kiln_phases() for c in cases}
    names = sorted({n for p in per_case.values() for n in p}, key=lambda n: (n in ("steps", "outside build"), n))
    if not names:
        return "(kiln reported no phases)"
    rows = [[case, *(_s(p.get(n)) for n in names)] for case, p in per_case.items() if p]
    return _table(["case (kiln, median s)", *names], rows)


def target_lines(targets: list[Target]) -> str:
    return "\n".join(f"[{t.status.upper():4}] {t.name}: {t.detail}" for t in targets)


def render(cases: list[CaseResult], targets: list[Target], settings: dict[str, Any],
           overheads: dict[str, Any] | None = None) -> str:  # fmt: skip
    parts = [
        f"kiln vs buildah: median wall time of {settings['repetitions']} alternating runs (build + push); "
        "peak = summed RSS of the process tree sampled every "
        f"{settings['sampler_interval_ms']} ms; pushed = bytes stored by the registry",
        main_table(cases),
    ]
    in_place = in_place_table(cases)
    if in_place is not None:
        parts += ["kiln's variants (--in-place in a throwaway root, entering it included; rootless, as an ordinary "
                  "user) vs kiln namespaced as root, same Dockerfile",
                  in_place]  # fmt: skip
    if (platforms := multi_platform_line(cases)) is not None:
        parts += ["two platforms in one build vs two single-platform builds (bench/cases.py's two-platforms)",
                  platforms]  # fmt: skip
    if overheads:
        parts += ["fixed costs (bench/overheads.py)", overhead_lines(overheads)]
    parts += [
        "kiln phases (from --log-format json; 'steps' = sum of step times, 'outside build' = wall - build time)",
        phase_table(cases),
        "targets",
        target_lines(targets),
    ]
    return "\n\n".join(parts)


def write_json(directory: Path, machine: dict[str, Any], settings: dict[str, Any], gzip: dict[str, Any] | None,
               cases: list[CaseResult], targets: list[dict[str, str]],
               overheads: dict[str, Any] | None = None) -> Path:  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    path = directory / f"{now:%Y-%m-%dT%H%M%SZ}-{machine['host']}.json"
    document = {
        "date": now.isoformat(timespec="seconds"),
        "machine": machine,
        "settings": settings,
        "gzip": gzip,
        "cases": [c.to_json() for c in cases],
        "targets": targets,
        "overheads": overheads,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
