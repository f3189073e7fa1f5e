"""Naming and opening the images to compare: ``oci-layout:PATH[:TAG]``, ``docker-archive:PATH[:TAG]`` or a
registry reference (``docker://`` optional).

OCI layouts and archives are read by kiln.transports.layout / archive when those modules exist, else by this
package's own small reader (localread); registry images are pulled with kiln.transports.registry into a
temporary blob store.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from kiln.errors import ImageFormatError, UsageError
from kiln.oci.platform import Platform
from kiln.transports.blobstore import BlobStore
from kiln.transports.image import Image
from kiln.transports.registry.options import RegistryOptions

Transport = Literal["oci-layout", "docker-archive", "registry"]
_PREFIXES: dict[str, Transport] = {
    "oci-layout:": "oci-layout",
    "oci:": "oci-layout",  # skopeo's and buildah's spelling
    "docker-archive:": "docker-archive",
    "docker://": "registry",
}


@dataclass(frozen=True)
class ImageSpec:
    transport: Transport
    location: str  # a path, or the registry reference
    tag: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageSpec:
        for prefix, transport in _PREFIXES.items():
            if text.startswith(prefix):
                rest = text[len(prefix) :]
                if transport == "registry":
                    return cls("registry", rest)
                path, tag = _split_tag(rest)
                if not path:
                    raise UsageError(f"no path in {text!r}", "IMAGE")
                return cls(transport, path, tag)
        if text.startswith(("/", "./", "../")) or Path(text).exists():
            raise UsageError(f"{text!r} looks like a path: write oci-layout:{text} or docker-archive:{text}", "IMAGE")
        return cls("registry", text)

    def __str__(self) -> str:
        if self.transport == "registry":
            return self.location
        return f"{self.transport}:{self.location}" + (f":{self.tag}" if self.tag else "")


def _split_tag(rest: str) -> tuple[str, str | None]:
    """PATH[:TAG]: the last colon starts a tag unless what follows it looks like a path, or PATH exists whole."""
    if Path(rest).exists():
        return rest, None
    path, colon, tag = rest.rpartition(":")
    if colon and path and tag and "/" not in tag:
        return path, tag
    return rest, None


def _transport_reader(module: str, name: str) -> Callable[..., Image] | None:
    """A reader from kiln.transports when it is there: this package must work before those modules land."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    return cast("Callable[..., Image] | None", getattr(mod, name, None))


def open_image(
    spec: ImageSpec,
    workdir: Path,
    *,
    platform: Platform | None = None,
    registry: RegistryOptions | None = None,
) -> Image:
    """Open the image ``spec`` names; anything it needs on disk (pulled blobs, unpacked archives) goes in workdir."""
    if spec.transport == "oci-layout":
        layout = Path(spec.location)
        if not (layout / "index.json").is_file():
            raise ImageFormatError(f"{layout}: not an OCI layout (no index.json)")
        reader = _transport_reader("kiln.transports.layout", "read_image")
        if reader is not None:
            return reader(layout, spec.tag, platform)
        from kiln.diff.localread import read_layout

        return read_layout(layout, spec.tag, platform)
    if spec.transport == "docker-archive":
        archive = Path(spec.location)
        if not archive.is_file():
            raise ImageFormatError(f"{archive}: no such archive")
        reader = _transport_reader("kiln.transports.archive", "read_archive")
        if reader is not None:
            return reader(archive, spec.tag)
        from kiln.diff.localread import read_archive

        unpacked = workdir / "archive"
        unpacked.mkdir(parents=True, exist_ok=True)
        return read_archive(archive, unpacked, spec.tag)
    from kiln.transports.registry.pull import pull_image

    store = BlobStore(workdir / "blobs")
    return pull_image(spec.location, platform or Platform.host(), store, registry or RegistryOptions())
