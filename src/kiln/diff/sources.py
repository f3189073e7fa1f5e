"""The images `kiln diff` compares, opened through transports/address.py like every other image of kiln's:
anything an image needs on disk (blobs pulled from a registry) goes in the comparison's own work directory."""

from __future__ import annotations

from pathlib import Path

from kiln.oci.platform import Platform
from kiln.transports.address import ImageAddress
from kiln.transports.address import open_image as open_address
from kiln.transports.blobstore import BlobStore
from kiln.transports.image import Image
from kiln.transports.registry.options import RegistryOptions


def open_image(
    address: ImageAddress,
    workdir: Path,
    *,
    platform: Platform | None = None,
    registry: RegistryOptions | None = None,
) -> Image:
    return open_address(address, BlobStore(workdir / "blobs"), platform or Platform.host(),
                        registry or RegistryOptions())
