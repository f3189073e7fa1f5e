"""The registry transport: references, credentials and auth, and pulling and pushing over the distribution API.

The names below are loaded when first used (PEP 562): importing a light module of this package (settings,
reference) must not import the HTTP client, which costs a command that never talks to a registry a tenth of a
second."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiln.transports.registry.options import RegistryOptions
    from kiln.transports.registry.pull import fetch_image_index, pull_image, resolve
    from kiln.transports.registry.push import push_image
    from kiln.transports.registry.reference import Reference
    from kiln.transports.registry.settings import registry_options
    from kiln.transports.registry.sources import BlobOrigin, StoreBlobs

_WHERE = {
    "RegistryOptions": "options",
    "fetch_image_index": "pull",
    "pull_image": "pull",
    "resolve": "pull",
    "push_image": "push",
    "Reference": "reference",
    "registry_options": "settings",
    "BlobOrigin": "sources",
    "StoreBlobs": "sources",
}

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
