"""One image model for every transport: a manifest, its config, and where the blobs can be read.

Transports (OCI layout, docker-archive, registry) read into and write from this model, so a base image and a build
output are the same kind of thing wherever they live.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import BinaryIO, Protocol

from kiln.errors import ImageFormatError
from kiln.oci import mediatypes as mt
from kiln.oci.config import ImageConfig
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import sha256_digest
from kiln.oci.manifest import Index, Manifest
from kiln.oci.platform import Platform


class BlobReader(Protocol):
    def open_blob(self, desc: Descriptor) -> BinaryIO:
        """A stream of the blob's bytes (callers that need assurance verify the digest as they read)."""
        ...


@dataclass(frozen=True)
class Image:
    manifest: Manifest
    manifest_bytes: bytes
    config: ImageConfig
    config_bytes: bytes
    blobs: BlobReader

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest_bytes)

    @property
    def layers(self) -> tuple[Descriptor, ...]:
        return self.manifest.layers

    def layer_diff_ids(self) -> list[tuple[Descriptor, str]]:
        """Each layer descriptor with the diff_id the config gives it; a count mismatch is a corrupt image."""
        if len(self.manifest.layers) != len(self.config.diff_ids):
            raise ImageFormatError(
                f"image {self.digest}: {len(self.manifest.layers)} layers but "
                f"{len(self.config.diff_ids)} diff_ids in its config"
            )
        return list(zip(self.manifest.layers, self.config.diff_ids, strict=True))

    def descriptor(self) -> Descriptor:
        return Descriptor(self.manifest.media_type, self.digest, len(self.manifest_bytes))


def check_config_digest(manifest: Manifest, config_bytes: bytes, where: str) -> None:
    actual = sha256_digest(config_bytes)
    if actual != manifest.config.digest:
        raise ImageFormatError(
            f"{where}: config digest {actual} does not match the manifest's {manifest.config.digest}"
        )


def assemble_image(
    config: ImageConfig,
    layers: Sequence[Descriptor],
    blobs: BlobReader,
    *,
    docker: bool,
    keep: Callable[[bytes], str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Image:
    """An image made of a config and layers: the config and manifest serialised with the media types of one
    family (Docker schema 2 or OCI); with `keep`, both are also stored (keep returns the digest it stored)."""
    config_bytes = config.to_bytes()
    config_digest = keep(config_bytes) if keep is not None else sha256_digest(config_bytes)
    config_desc = Descriptor(mt.config_media_type(docker), config_digest, len(config_bytes))
    manifest = Manifest(config_desc, tuple(layers), mt.manifest_media_type(docker), dict(annotations or {}))
    manifest_bytes = manifest.to_bytes()
    if keep is not None:
        keep(manifest_bytes)
    return Image(manifest, manifest_bytes, config, config_bytes, blobs)


@dataclass(frozen=True)
class ImageIndex:
    """One build's images for several platforms, and the index (or Docker manifest list) that names them."""

    index: Index
    index_bytes: bytes
    images: tuple[Image, ...]  # in the index's order

    @property
    def digest(self) -> str:
        return sha256_digest(self.index_bytes)

    def descriptor(self) -> Descriptor:
        return Descriptor(self.index.media_type, self.digest, len(self.index_bytes))


# What a build makes: one image, or one image per platform under an index.
Built = Image | ImageIndex


def images_of(built: Built) -> tuple[Image, ...]:
    return built.images if isinstance(built, ImageIndex) else (built,)


def assemble_index(
    images: Sequence[Image], *, docker: bool, keep: Callable[[bytes], str] | None = None,
    platforms: Sequence[Platform] | None = None,
) -> ImageIndex:
    """An index of `images`, each entry carrying its platform: the one given (what the image was built for), else
    its config's; a Docker manifest list when `docker`."""
    chosen = platforms if platforms is not None else [image.config.platform for image in images]
    entries = tuple(replace(image.descriptor(), platform=p) for image, p in zip(images, chosen, strict=True))
    index = Index(entries, mt.index_media_type(docker))
    data = index.to_bytes()
    if keep is not None:
        keep(data)
    return ImageIndex(index, data, tuple(images))
