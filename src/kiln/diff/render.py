"""A report for people (grouped, one line per difference) and for machines (JSON)."""

from __future__ import annotations

import json
from typing import Any

from kiln.diff.model import Difference, DiffReport, PlatformDiff, PlatformsReport

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


def render_text(report: DiffReport | PlatformsReport, limit: int | None = None) -> str:
    """'-' only in A, '+' only in B, '~' in both but different; at most ``limit`` lines per section."""
    if isinstance(report, PlatformsReport):
        return render_platforms_text(report, limit)
    lines = [f"A: {report.a}", f"B: {report.b}", f"layers: {report.layer_counts[0]} vs {report.layer_counts[1]}"]
    if report.same:
        lines.append("no differences")
        return "\n".join(lines) + "\n"
    return "\n".join(lines + _sections(report, limit)) + "\n"


def _sections(report: DiffReport, limit: int | None) -> list[str]:
    lines: list[str] = []
    for section, title in _SECTION_TITLES.items():
        diffs = [d for d in report.differences if d.section == section]
        if not diffs:
            continue
        lines.append(f"{title} ({len(diffs)} difference{_s(len(diffs))}):")
        shown = diffs if limit is None else diffs[:limit]
        lines += ["  " + render_line(d) for d in shown]
        if len(shown) < len(diffs):
            lines.append(f"  ... and {len(diffs) - len(shown)} more")
    return lines


def render_platforms_text(report: PlatformsReport, limit: int | None = None) -> str:
    """One block per platform: a heading saying whether it differs, then its sections indented under it."""
    lines = [f"A: {report.a}", f"B: {report.b}"]
    if report.note:
        lines.append(f"note: {report.note}")
    for p in report.platforms:
        lines += _platform_block(p, limit)
    differing = sum(not p.same for p in report.platforms)
    lines.append(f"no differences in {len(report.platforms)} platform{_s(len(report.platforms))}" if report.same
                 else f"{differing} of {len(report.platforms)} platform{_s(len(report.platforms))} differ")
    return "\n".join(lines) + "\n"


def _platform_block(p: PlatformDiff, limit: int | None) -> list[str]:
    if p.report is None:
        return [f"{p.platform}: only in {(p.only or '').upper()}"]
    r = p.report
    counts = f"layers: {r.layer_counts[0]} vs {r.layer_counts[1]}"
    if r.same:
        return [f"{p.platform}: no differences ({counts})"]
    head = [f"{p.platform}: {len(r.differences)} difference{_s(len(r.differences))} ({counts})",
            f"  A: {r.a}", f"  B: {r.b}"]
    return head + ["  " + line for line in _sections(r, limit)]


def _s(n: int) -> str:
    return "s" if n != 1 else ""


def render_json(report: DiffReport | PlatformsReport) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n"
