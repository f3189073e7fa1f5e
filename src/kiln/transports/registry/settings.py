"""The build's registry settings (kaniko's registry flags, as given once for the whole build), and the
RegistryOptions of one pull or push derived from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from kiln.transports.registry.options import RegistryOptions


@dataclass(frozen=True)
class RegistrySettings:
    """How to reach registries: TLS, plain HTTP, mirrors, retries (kaniko's flags of the same names)."""

    insecure: bool = False
    insecure_pull: bool = False
    insecure_registries: tuple[str, ...] = ()
    skip_tls_verify: bool = False
    skip_tls_verify_pull: bool = False
    skip_tls_verify_registries: tuple[str, ...] = ()
    registry_certificates: dict[str, str] = field(default_factory=dict)
    registry_client_certs: dict[str, tuple[str, str]] = field(default_factory=dict)
    registry_mirrors: tuple[str, ...] = ()
    registry_maps: tuple[tuple[str, str], ...] = ()
    skip_default_registry_fallback: bool = False
    push_retry: int = 0
    image_download_retry: int = 0
    docker_config: str | None = None
    # kaniko's --push-ignore-immutable-tag-errors: a tag the registry will not move is left as it is.
    ignore_immutable_tag_errors: bool = False
    # kaniko's --cache-dir (filled by kiln warm): base images looked up before any registry, as a mirror is; an
    # entry older than image_cache_ttl seconds (--cache-ttl) is not used.
    image_cache_dir: str | None = None
    image_cache_ttl: float = 336 * 3600.0


def registry_options(settings: RegistrySettings, pull: bool) -> RegistryOptions:
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
        ignore_immutable_tag_errors=settings.ignore_immutable_tag_errors and not pull,
        docker_config=Path(settings.docker_config) if settings.docker_config else None,
    )
