"""Image manifests and indexes (OCI and Docker schema 2 / manifest lists)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kiln.errors import ImageFormatError
from kiln.oci import mediatypes as mt
from kiln.oci.canonical import canonical_json, load_json_object
from kiln.oci.descriptor import Descriptor


@dataclass(frozen=True)
class Manifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str = mt.OCI_MANIFEST
    annotations: dict[str, str] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return _envelope(self.media_type, self.annotations,
                         config=self.config.to_dict(), layers=[layer.to_dict() for layer in self.layers])

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes, media_type: str | None = None, what: str = "manifest") -> Manifest:
        d, mtype, layers = _open_envelope(data, what, media_type or mt.OCI_MANIFEST, "layers")
        if mtype not in mt.MANIFEST_TYPES:
            raise ImageFormatError(f"{what}: not an image manifest ({mtype})")
        return cls(
            Descriptor.from_dict(d.get("config"), f"{what} config"),
            tuple(Descriptor.from_dict(x, f"{what} layer {i}") for i, x in enumerate(layers)),
            mtype,
            dict(d.get("annotations") or {}),
        )


@dataclass(frozen=True)
class Index:
    manifests: tuple[Descriptor, ...]
    media_type: str = mt.OCI_INDEX
    annotations: dict[str, str] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return _envelope(self.media_type, self.annotations, manifests=[m.to_dict() for m in self.manifests])

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes, media_type: str | None = None, what: str = "index") -> Index:
        d, mtype, manifests = _open_envelope(data, what, media_type or mt.OCI_INDEX, "manifests")
        return cls(
            tuple(Descriptor.from_dict(x, f"{what} entry {i}") for i, x in enumerate(manifests)),
            mtype,
            dict(d.get("annotations") or {}),
        )


def _envelope(media_type: str, annotations: dict[str, str], **body: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type, **body}
    if annotations:
        d["annotations"] = dict(annotations)
    return d


def _open_envelope(data: bytes, what: str, default_type: str, list_key: str) -> tuple[dict[str, Any], str, list[Any]]:
    """The document, its media type and its list of descriptors, after the checks both kinds share."""
    d = load_json_object(data, what)
    if d.get("schemaVersion") != 2:
        raise ImageFormatError(f"{what}: unsupported schemaVersion {d.get('schemaVersion')!r}")
    items = d.get(list_key)
    if not isinstance(items, list):
        raise ImageFormatError(f"{what}: '{list_key}' missing")
    return d, str(d.get("mediaType") or default_type), items


def sniff_media_type(data: bytes, declared: str | None = None) -> str:
    """The media type of a manifest-or-index document: its own field, else the declared one, else by shape."""
    d = load_json_object(data, "manifest")
    mtype = d.get("mediaType") or declared
    if mtype:
        return str(mtype)
    return mt.OCI_INDEX if "manifests" in d else mt.OCI_MANIFEST
