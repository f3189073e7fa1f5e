"""One way to name an image wherever it lives, and one way to open it.

Accepted spellings (what users of skopeo, buildah and BuildKit type):
    oci-layout://PATH[:TAG|@DIGEST]   oci-layout:PATH[:TAG]   oci:PATH[:TAG]          an OCI image layout
    docker-archive://PATH[:TAG]       docker-archive:PATH[:TAG]                       a `docker save` tarball
    docker-image://REF                docker://REF            REF                     a registry image
Printed one way: `oci-layout://PATH[:TAG]`, `docker-archive://PATH[:TAG]`, and a registry image as its reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kiln.errors import DigestMismatch, ImageFormatError, UsageError
from kiln.oci import mediatypes as mt
from kiln.oci.digest import sha256_digest
from kiln.oci.manifest import Index
from kiln.oci.platform import Platform
from kiln.transports.blobstore import BlobStore
from kiln.transports.image import Built, Image, ImageIndex
from kiln.transports.registry.options import RegistryOptions

Transport = Literal["oci-layout", "docker-archive", "registry"]

# An index is a few KiB of JSON; a blob bigger than this named by digest is a layer, not an index.
_MAX_INDEX = 8 << 20

# Longest first: "oci-layout:" must not be read as "oci:" + "layout:...".
_PREFIXES: tuple[tuple[str, Transport], ...] = (
    ("oci-layout://", "oci-layout"),
    ("docker-archive://", "docker-archive"),
    ("docker-image://", "registry"),
    ("oci-layout:", "oci-layout"),
    ("docker-archive:", "docker-archive"),
    ("docker://", "registry"),
    ("oci:", "oci-layout"),
)


@dataclass(frozen=True)
class ImageAddress:
    transport: Transport
    location: str  # a path, or the registry reference
    tag: str | None = None  # of a layout or archive: a tag, or a digest (sha256:...) in a layout

    @classmethod
    def parse(cls, text: str, flag: str = "IMAGE") -> ImageAddress:
        for prefix, transport in _PREFIXES:
            if text.startswith(prefix):
                rest = text[len(prefix) :]
                if transport == "registry":
                    if not rest:
                        raise UsageError(f"no image reference in {text!r}", flag)
                    return cls("registry", rest)
                path, tag = _split_tag(rest)
                if not path:
                    raise UsageError(f"no path in {text!r}", flag)
                return cls(transport, path, tag)
        if text.startswith(("/", "./", "../")) or Path(text).exists():
            raise UsageError(f"{text!r} looks like a path: write oci-layout://{text} or docker-archive://{text}", flag)
        if "://" in text:
            raise UsageError(f"unknown image transport in {text!r} (oci-layout://, docker-archive://, docker://)",
                             flag)
        return cls("registry", text)

    @classmethod
    def layout(cls, path: Path | str, tag: str | None = None) -> ImageAddress:
        return cls("oci-layout", str(path), tag)

    @classmethod
    def archive(cls, path: Path | str) -> ImageAddress:
        return cls("docker-archive", str(path))

    def __str__(self) -> str:
        if self.transport == "registry":
            return self.location
        separator = "@" if self.tag and self.tag.startswith("sha256:") else ":"
        return f"{self.transport}://{self.location}" + (f"{separator}{self.tag}" if self.tag else "")


def _split_tag(rest: str) -> tuple[str, str | None]:
    """PATH[:TAG] or PATH@DIGEST: the last colon starts a tag unless what follows it looks like a path, or PATH
    exists whole (a colon in a directory name stays in the path)."""
    if Path(rest).exists():
        return rest, None
    if "@" in rest:
        path, _, digest = rest.rpartition("@")
        return path, digest
    path, colon, tag = rest.rpartition(":")
    if colon and path and tag and "/" not in tag:
        return path, tag
    return rest, None


def _existing_layout(address: ImageAddress) -> Path:
    layout = Path(address.location)
    if not (layout / "index.json").is_file():
        raise ImageFormatError(f"{layout}: not an OCI layout (no index.json)")
    return layout


def open_image(
    address: ImageAddress, blobs: BlobStore, platform: Platform, registry: RegistryOptions,
) -> Image:
    """Open the image at `address`. A registry image is pulled into `blobs`; layouts and archives are read
    where they are (their images read blobs from there)."""
    if address.transport == "oci-layout":
        from kiln.transports.layout import read_image

        return read_image(_existing_layout(address), address.tag, platform)
    if address.transport == "docker-archive":
        from kiln.transports.archive import read_archive

        archive = Path(address.location)
        if not archive.is_file():
            raise ImageFormatError(f"{archive}: no such archive")
        return read_archive(archive, address.tag)
    from kiln.transports.registry.pull import pull_image

    return pull_image(address.location, platform, blobs, registry)


def read_index(address: ImageAddress, registry: RegistryOptions) -> Index | None:
    """The index (or Docker manifest list) `address` names, read without pulling any image; None when it names
    one image. A docker-archive always holds one image. In a layout, several top-level entries under one tag
    (platform alternatives, as some tools write them) are read as one index of those entries."""
    if address.transport == "registry":
        from kiln.transports.registry.pull import fetch_image_index

        return fetch_image_index(address.location, registry)
    if address.transport == "oci-layout":
        return _layout_index(_existing_layout(address), address.tag)
    return None


def _layout_index(layout: Path, tag: str | None) -> Index | None:
    from kiln.transports.layout import CONTAINERD_NAME, REF_NAME, blob_store, list_refs, read_blob

    entries = [desc for _, desc in list_refs(layout)]
    if tag is not None and tag.startswith(("sha256:", "sha512:")):
        # A digest may name an entry nested in an index: read the blob it names (if it is small enough to be an
        # index at all), and see. A missing one is left to read_image, which says so.
        store = blob_store(layout)
        if not store.has(tag) or store.size(tag) > _MAX_INDEX:
            return None
        data = store.read_bytes(tag)
        actual = sha256_digest(data) if tag.startswith("sha256:") else tag
        if actual != tag:
            raise DigestMismatch(f"{store.path(tag)} (index)", tag, actual)
        return _if_index(data, "", f"{layout}: index {tag}")
    if tag is not None:
        entries = ([d for d in entries if d.annotations.get(REF_NAME) == tag]
                   or [d for d in entries if d.annotations.get(CONTAINERD_NAME) == tag])
    if len(entries) > 1 and tag is not None:
        return Index(tuple(entries))
    if len(entries) != 1:
        return None  # none, or several images and no tag: read_image says which names there are
    entry = entries[0]
    if entry.media_type and entry.media_type not in mt.INDEX_TYPES:
        return None
    return _if_index(read_blob(layout, entry, "index"), entry.media_type, f"{layout}: index {entry.digest}")


def _if_index(data: bytes, declared: str, what: str) -> Index | None:
    from kiln.oci.manifest import sniff_media_type

    media_type = sniff_media_type(data, declared or None)
    return Index.from_bytes(data, media_type, what) if media_type in mt.INDEX_TYPES else None


def entry_address(address: ImageAddress, digest: str) -> ImageAddress:
    """The address of one manifest of the index `address` names: the same layout or repository, by digest."""
    if address.transport == "registry":
        from kiln.transports.registry.reference import Reference

        ref = Reference.parse(address.location)
        return ImageAddress("registry", str(Reference(ref.registry, ref.repository, None, digest)))
    return ImageAddress(address.transport, address.location, digest)


def save_image(address: ImageAddress, image: Built, names: list[str]) -> ImageAddress:
    """Write `image` to a local address and return where it went: into a layout under the address's tag (or
    "latest", so that tools needing a tag can read it), or into an archive naming `names` (the references it
    carries; those pinned by digest left out; one image, not an index). Registries are written by push_image,
    which sends the blobs once for every destination of one registry."""
    if address.transport == "oci-layout":
        from kiln.transports.layout import write_image

        tag = address.tag or "latest"
        write_image(Path(address.location), image, tag)
        return ImageAddress.layout(address.location, tag)
    if address.transport == "docker-archive":
        from kiln.transports.archive import write_archive

        if isinstance(image, ImageIndex):
            raise UsageError(f"{address}: a docker-archive holds one platform's image, and this is an index of "
                             f"{len(image.images)}")
        write_archive(Path(address.location), image, [n for n in names if "@" not in n])
        return address
    raise UsageError(f"{address}: images are pushed to registries, not saved")
