"""What a comparison finds: a flat list of differences, each saying where, what, and the two sides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Section = Literal["files", "config", "layers"]
# only-a / only-b: present on one side alone; changed: present on both with different values.
Change = Literal["only-a", "only-b", "changed"]


@dataclass(frozen=True)
class Difference:
    section: Section
    where: str  # a path ("/etc/passwd"), a config field ("Env:PATH") or a layer ("layer 2")
    change: Change
    attribute: str = ""  # for files: "mode", "sha256", ...; empty when the whole item differs
    a: Any = None  # JSON-able values, already in their readable form (modes in octal, ...)
    b: Any = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"section": self.section, "where": self.where, "change": self.change}
        if self.attribute:
            d["attribute"] = self.attribute
        if self.change != "only-b":
            d["a"] = self.a
        if self.change != "only-a":
            d["b"] = self.b
        return d


@dataclass(frozen=True)
class DiffReport:
    a: str  # the two images as the user named them
    b: str
    differences: tuple[Difference, ...]
    layer_counts: tuple[int, int]
    layer_file_sets: tuple[tuple[tuple[str, ...], ...], tuple[tuple[str, ...], ...]] | None = field(
        default=None, compare=False
    )

    @property
    def same(self) -> bool:
        return not self.differences

    def in_section(self, section: Section) -> list[Difference]:
        return [d for d in self.differences if d.section == section]

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "same": self.same,
            "layer_counts": list(self.layer_counts),
            "differences": [d.to_dict() for d in self.differences],
        }


# A platform one side's index offers and the other's lacks.
Only = Literal["a", "b"]


@dataclass(frozen=True)
class PlatformDiff:
    """One platform of two indexes: the comparison of its two images, or the side that alone has it."""

    platform: str
    report: DiffReport | None
    only: Only | None = None

    @property
    def same(self) -> bool:
        return self.report is not None and self.report.same

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"platform": self.platform, "same": self.same}
        if self.only is not None:
            d["only"] = self.only
        if self.report is not None:
            d.update({k: v for k, v in self.report.to_dict().items() if k != "same"})
        return d


@dataclass(frozen=True)
class PlatformsReport:
    """Two indexes compared platform by platform (or an image and the entry of an index for its platform)."""

    a: str
    b: str
    platforms: tuple[PlatformDiff, ...]
    note: str = ""  # what was compared when it is not every platform of both sides

    @property
    def same(self) -> bool:
        return all(p.same for p in self.platforms)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"a": self.a, "b": self.b, "same": self.same,
                             "platforms": [p.to_dict() for p in self.platforms]}
        if self.note:
            d["note"] = self.note
        return d
