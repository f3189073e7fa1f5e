"""The registry transport: references, credentials and auth, and pulling and pushing over the distribution API."""

from kiln.transports.registry.options import RegistryOptions
from kiln.transports.registry.pull import fetch_image_index, pull_image, resolve
from kiln.transports.registry.push import push_image
from kiln.transports.registry.reference import Reference
from kiln.transports.registry.settings import registry_options
from kiln.transports.registry.sources import BlobOrigin, StoreBlobs

__all__ = [
    "BlobOrigin",
    "Reference",
    "RegistryOptions",
    "StoreBlobs",
    "fetch_image_index",
    "pull_image",
    "push_image",
    "registry_options",
    "resolve",
]
