"""RegistryOptions from the build's registry settings (kiln.options.RegistrySettings, filled from kaniko's flags).

The settings type lives above this package in the import order, so it is described here by the fields read.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from kiln.transports.registry.options import RegistryOptions


class RegistrySettingsLike(Protocol):
    @property
    def insecure(self) -> bool: ...
    @property
    def insecure_pull(self) -> bool: ...
    @property
    def insecure_registries(self) -> tuple[str, ...]: ...
    @property
    def skip_tls_verify(self) -> bool: ...
    @property
    def skip_tls_verify_pull(self) -> bool: ...
    @property
    def skip_tls_verify_registries(self) -> tuple[str, ...]: ...
    @property
    def registry_certificates(self) -> Mapping[str, str]: ...
    @property
    def registry_client_certs(self) -> Mapping[str, tuple[str, str]]: ...
    @property
    def registry_mirrors(self) -> tuple[str, ...]: ...
    @property
    def registry_maps(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def skip_default_registry_fallback(self) -> bool: ...
    @property
    def push_retry(self) -> int: ...
    @property
    def image_download_retry(self) -> int: ...
    @property
    def docker_config(self) -> str | None: ...


def registry_options(settings: RegistrySettingsLike, pull: bool) -> RegistryOptions:
    """The options for a pull (``pull=True``) or a push; the pull-only flags are dropped for a push."""
    maps: dict[str, tuple[str, ...]] = {}
    for original, mirror in settings.registry_maps:  # repeated --registry-map flags add mirrors in order
        maps[original] = (*maps.get(original, ()), mirror)
    return RegistryOptions(
        insecure=settings.insecure,
        insecure_registries=frozenset(settings.insecure_registries),
        insecure_pull=settings.insecure_pull and pull,
        skip_tls_verify=settings.skip_tls_verify,
        skip_tls_verify_registries=frozenset(settings.skip_tls_verify_registries),
        skip_tls_verify_pull=settings.skip_tls_verify_pull and pull,
        registry_certificates=MappingProxyType(dict(settings.registry_certificates)),
        registry_client_certs=MappingProxyType(dict(settings.registry_client_certs)),
        registry_mirrors=tuple(settings.registry_mirrors),
        registry_maps=MappingProxyType(maps),
        skip_default_registry_fallback=settings.skip_default_registry_fallback,
        push_retry=settings.push_retry,
        image_download_retry=settings.image_download_retry,
        docker_config=Path(settings.docker_config) if settings.docker_config else None,
    )
