"""A report for people (grouped, one line per difference) and for machines (JSON)."""

from __future__ import annotations

import json
from typing import Any

from kiln.diff.model import Difference, DiffReport

_SECTION_TITLES = {"files": "Files", "config": "Config", "layers": "Layers"}


def _value(v: Any) -> str:
    if isinstance(v, str):
        return v
    return json.dumps(v, sort_keys=True, ensure_ascii=False)


def render_line(d: Difference) -> str:
    if d.change == "only-a":
        return f"- {d.where}: {_value(d.a)}"
    if d.change == "only-b":
        return f"+ {d.where}: {_value(d.b)}"
    attr = f" {d.attribute}" if d.attribute else ""
    return f"~ {d.where}:{attr} {_value(d.a)} != {_value(d.b)}"


def render_text(report: DiffReport, limit: int | None = None) -> str:
    """'-' only in A, '+' only in B, '~' in both but different; at most ``limit`` lines per section."""
    lines = [f"A: {report.a}", f"B: {report.b}", f"layers: {report.layer_counts[0]} vs {report.layer_counts[1]}"]
    if report.same:
        lines.append("no differences")
        return "\n".join(lines) + "\n"
    for section, title in _SECTION_TITLES.items():
        diffs = [d for d in report.differences if d.section == section]
        if not diffs:
            continue
        lines.append(f"{title} ({len(diffs)} difference{'s' if len(diffs) != 1 else ''}):")
        shown = diffs if limit is None else diffs[:limit]
        lines += ["  " + render_line(d) for d in shown]
        if len(shown) < len(diffs):
            lines.append(f"  ... and {len(diffs) - len(shown)} more")
    return "\n".join(lines) + "\n"


def render_json(report: DiffReport) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n"
