"""What the user asked the comparison to leave out: paths (with everything below them) and config fields."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from kiln.errors import UsageError

# Config fields as the image config spells them; matching is case-insensitive.
CONFIG_FIELDS = (
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "Shell",
    "OnBuild",
    "architecture",
    "os",
    "variant",
)
# Fields compared item by item, so that one item (a label key, a variable) can be ignored alone.
KEYED_FIELDS = ("Env", "Labels", "ExposedPorts", "Volumes")
_GLOB = set("*?[")


def _normal_path(path: str) -> str:
    return "/" + path.strip("/")


@dataclass(frozen=True)
class PathFilter:
    """``/a/b`` ignores /a/b and everything below it; a pattern with * ? [ ] is matched against whole paths."""

    patterns: tuple[str, ...] = ()

    @classmethod
    def of(cls, patterns: tuple[str, ...] | list[str]) -> PathFilter:
        return cls(tuple(_normal_path(p) for p in patterns if p.strip()))

    def ignored(self, path: str) -> bool:
        for p in self.patterns:
            if _GLOB & set(p):
                if fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(path, p.rstrip("/") + "/*"):
                    return True
            elif p == "/" or path == p or path.startswith(p + "/"):
                return True
        return False


@dataclass(frozen=True)
class ConfigFilter:
    """``FIELD`` ignores a whole field; ``FIELD:KEY`` one label, variable, port or volume of a keyed field."""

    fields: frozenset[str] = frozenset()  # canonical spelling
    items: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def of(cls, specs: tuple[str, ...] | list[str]) -> ConfigFilter:
        by_lower = {f.lower(): f for f in CONFIG_FIELDS}
        fields: set[str] = set()
        items: set[tuple[str, str]] = set()
        for spec in specs:
            name, colon, key = spec.partition(":")
            canonical = by_lower.get(name.strip().lower())
            if canonical is None:
                raise UsageError(
                    f"unknown config field {name!r} (known: {', '.join(CONFIG_FIELDS)})", "--ignore-config"
                )
            if colon:
                if canonical not in KEYED_FIELDS:
                    raise UsageError(f"{canonical} has no items to name with ':'", "--ignore-config")
                items.add((canonical, key))
            else:
                fields.add(canonical)
        return cls(frozenset(fields), frozenset(items))

    def ignored(self, field: str, key: str | None = None) -> bool:
        return field in self.fields or (key is not None and (field, key) in self.items)
