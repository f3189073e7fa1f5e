"""The comparisons themselves: two flattened trees, two configs, two lists of layer file sets.

Each returns Differences in a stable order (by path, by field), so reports and tests read the same every run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kiln.diff.flatten import FileEntry
from kiln.diff.ignore import ConfigFilter, PathFilter
from kiln.diff.model import Difference
from kiln.oci.config import ImageConfig

# Attributes compared for a path present on both sides, in report order.
FILE_ATTRIBUTES = ("type", "mode", "uid", "gid", "size", "sha256", "link", "rdev", "hardlinks")


def describe(entry: FileEntry) -> str:
    """One line a person can read: type, mode, owner and what makes the file what it is."""
    parts = [entry.type, f"{entry.mode:04o}", f"{entry.uid}:{entry.gid}"]
    if entry.type == "file":
        parts.append(f"size={entry.size} sha256={(entry.sha256 or '')[:12]}")
    if entry.link is not None:
        parts.append(f"-> {entry.link}")
    if entry.rdev is not None:
        parts.append(f"dev={entry.rdev[0]},{entry.rdev[1]}")
    if entry.hardlinks:
        parts.append(f"hardlinks={len(entry.hardlinks)}")
    if entry.xattrs:
        parts.append("xattrs=" + ",".join(name for name, _ in entry.xattrs))
    return " ".join(parts)


def _shown(attribute: str, value: Any) -> Any:
    if attribute == "mode":
        return f"{value:04o}"
    if attribute == "rdev" and value is not None:
        return f"{value[0]},{value[1]}"
    if attribute == "hardlinks":
        return list(value)
    return value


def compare_trees(
    a: dict[str, FileEntry], b: dict[str, FileEntry], ignore: PathFilter, *, mtimes: bool = False
) -> list[Difference]:
    out: list[Difference] = []
    for path in sorted(set(a) | set(b)):
        if ignore.ignored(path):
            continue
        ea, eb = a.get(path), b.get(path)
        if eb is None:
            assert ea is not None
            out.append(Difference("files", path, "only-a", a=describe(ea)))
            continue
        if ea is None:
            out.append(Difference("files", path, "only-b", b=describe(eb)))
            continue
        if ea.type != eb.type:  # the other attributes of two different kinds of file say nothing more
            out.append(Difference("files", path, "changed", "type", describe(ea), describe(eb)))
            continue
        for attr in FILE_ATTRIBUTES[1:]:
            va, vb = getattr(ea, attr), getattr(eb, attr)
            if attr == "hardlinks":
                va = tuple(p for p in va if not ignore.ignored(p))
                vb = tuple(p for p in vb if not ignore.ignored(p))
                va, vb = (va if len(va) > 1 else ()), (vb if len(vb) > 1 else ())
            if va != vb:
                out.append(Difference("files", path, "changed", attr, _shown(attr, va), _shown(attr, vb)))
        xa, xb = dict(ea.xattrs), dict(eb.xattrs)
        for name in sorted(set(xa) | set(xb)):
            if xa.get(name) != xb.get(name):
                out.append(Difference("files", path, "changed", f"xattr {name}", xa.get(name), xb.get(name)))
        if mtimes and ea.mtime_ns != eb.mtime_ns:
            out.append(Difference("files", path, "changed", "mtime", ea.mtime_ns / 1e9, eb.mtime_ns / 1e9))
    return out


def _keyed(items: dict[str, Any], other: dict[str, Any], field: str, ignore: ConfigFilter) -> list[Difference]:
    out: list[Difference] = []
    for key in sorted(set(items) | set(other)):
        if ignore.ignored(field, key):
            continue
        where = f"{field}:{key}"
        if key not in other:
            out.append(Difference("config", where, "only-a", a=items[key]))
        elif key not in items:
            out.append(Difference("config", where, "only-b", b=other[key]))
        elif items[key] != other[key]:
            out.append(Difference("config", where, "changed", a=items[key], b=other[key]))
    return out


def _argv(value: tuple[str, ...] | None) -> list[str] | None:
    # An empty list and no value mean the same to a runtime (nothing to run / inherit nothing); builders
    # differ in which they write (buildah's Docker format writes Entrypoint: []), so both compare as None.
    return list(value) if value else None


def plain_fields(config: ImageConfig) -> dict[str, Any]:
    c = config.config
    hc = c.healthcheck.to_dict() if c.healthcheck is not None else None
    return {
        "Cmd": _argv(c.cmd),
        "Entrypoint": _argv(c.entrypoint),
        "WorkingDir": c.working_dir,
        "User": c.user,
        "StopSignal": c.stop_signal,
        "Healthcheck": hc,
        "Shell": _argv(c.shell),
        "OnBuild": list(c.on_build),
        "architecture": config.architecture,
        "os": config.os,
        "variant": config.variant,
    }


_KeyedGetter = Callable[[ImageConfig], dict[str, Any]]
_KEYED: dict[str, _KeyedGetter] = {
    "Env": lambda cfg: cfg.config.env_dict(),
    "Labels": lambda cfg: dict(cfg.config.labels),
    "ExposedPorts": lambda cfg: {p: {} for p in cfg.config.exposed_ports},
    "Volumes": lambda cfg: {v: {} for v in cfg.config.volumes},
}


def compare_configs(a: ImageConfig, b: ImageConfig, ignore: ConfigFilter) -> list[Difference]:
    out: list[Difference] = []
    for field, getter in _KEYED.items():
        if not ignore.ignored(field):
            out += _keyed(getter(a), getter(b), field, ignore)
    pa, pb = plain_fields(a), plain_fields(b)
    for field in pa:
        if not ignore.ignored(field) and pa[field] != pb[field]:
            out.append(Difference("config", field, "changed", a=pa[field], b=pb[field]))
    return out


def compare_layers(a: list[tuple[str, ...]], b: list[tuple[str, ...]], ignore: PathFilter) -> list[Difference]:
    """Layer count, then (when the counts agree) each layer's set of entry names, whiteouts included."""
    if len(a) != len(b):
        return [Difference("layers", "count", "changed", a=len(a), b=len(b))]
    out: list[Difference] = []
    for i, (na, nb) in enumerate(zip(a, b, strict=True), start=1):
        sa = {n for n in na if not ignore.ignored(n)}
        sb = {n for n in nb if not ignore.ignored(n)}
        if sa != sb:
            out.append(Difference("layers", f"layer {i}", "changed", "entries", sorted(sa - sb), sorted(sb - sa)))
    return out
