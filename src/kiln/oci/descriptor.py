"""Content descriptors: what a manifest or index says about a blob it points to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kiln.errors import ImageFormatError
from kiln.oci.digest import validate_digest
from kiln.oci.platform import Platform


def platform_to_dict(p: Platform) -> dict[str, Any]:
    d: dict[str, Any] = {"architecture": p.architecture, "os": p.os}
    if p.variant:
        d["variant"] = p.variant
    return d


def platform_from_dict(d: dict[str, Any]) -> Platform:
    return Platform(str(d.get("os", "")), str(d.get("architecture", "")), d.get("variant") or None)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict, compare=False)
    platform: Platform | None = None
    urls: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.platform is not None:
            d["platform"] = platform_to_dict(self.platform)
        if self.urls:
            d["urls"] = list(self.urls)
        return d

    @classmethod
    def from_dict(cls, d: Any, what: str = "descriptor") -> Descriptor:
        if not isinstance(d, dict):
            raise ImageFormatError(f"{what}: expected an object")
        try:
            media_type = str(d.get("mediaType", ""))
            digest = validate_digest(str(d["digest"]))
            size = int(d["size"])
        except (KeyError, TypeError, ValueError) as e:
            raise ImageFormatError(f"{what}: missing or bad field: {e}") from None
        if size < 0:
            raise ImageFormatError(f"{what}: negative size")
        plat = platform_from_dict(d["platform"]) if isinstance(d.get("platform"), dict) else None
        return cls(media_type, digest, size, dict(d.get("annotations") or {}), plat, tuple(d.get("urls") or ()))


def is_attestation(desc: Descriptor) -> bool:
    """A provenance or SBOM manifest beside the images of an index (BuildKit's: platform unknown/unknown)."""
    return "vnd.docker.reference.type" in desc.annotations or (
        desc.platform is not None and desc.platform.os in ("unknown", "")
    )


def pick_platform(entries: Sequence[Descriptor], platform: Platform) -> Descriptor | None:
    """The entry of an index that serves a build for `platform`, or None: attestations skipped, a lone entry
    without a platform taken as it is, an exact match (variant defaults applied) before a compatible one."""
    usable = [d for d in entries if not is_attestation(d)]
    if len(usable) == 1 and usable[0].platform is None:
        return usable[0]
    want = platform.normal()
    matching = [d for d in usable if d.platform is not None and want.matches(d.platform.normal())]
    exact = [d for d in matching if d.platform is not None and d.platform.normal() == want]
    best = exact or matching
    return best[0] if best else None


def platforms_offered(entries: Sequence[Descriptor]) -> str:
    """The platforms an index offers, for a message saying none fits."""
    shown = sorted({str(d.platform) if d.platform else f"(no platform) {d.digest}"
                    for d in entries if not is_attestation(d)})
    return ", ".join(shown) or "none"
