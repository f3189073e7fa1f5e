"""Every setting of a registry interaction, as kaniko's flags name them; the CLI fills it once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class RegistryOptions:
    # TLS and plain HTTP (kaniko --insecure, --insecure-registry, --insecure-pull, --skip-tls-verify,
    # --skip-tls-verify-registry, --registry-certificate, --registry-client-cert).
    insecure: bool = False
    insecure_registries: frozenset[str] = frozenset()
    insecure_pull: bool = False
    skip_tls_verify: bool = False
    skip_tls_verify_registries: frozenset[str] = frozenset()
    skip_tls_verify_pull: bool = False
    registry_certificates: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    registry_client_certs: Mapping[str, tuple[str, str]] = field(default_factory=lambda: MappingProxyType({}))

    # Pull-through mirrors (kaniko --registry-mirror, --registry-map, --skip-default-registry-fallback).
    registry_mirrors: tuple[str, ...] = ()
    registry_maps: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    skip_default_registry_fallback: bool = False

    # Retries (kaniko --push-retry, --image-download-retry) on top of a few for transient faults, which every
    # request gets: a registry answering 503 once should not fail a build.
    push_retry: int = 0
    image_download_retry: int = 0
    # kaniko --push-ignore-immutable-tag-errors: a manifest PUT refused because the tag is immutable (the
    # messages of ECR and Artifact Registry) leaves that tag as it is instead of failing the push.
    ignore_immutable_tag_errors: bool = False
    transient_retries: int = 2
    retry_backoff: float = 0.5  # seconds before the first retry; doubles each time
    max_retry_wait: float = 30.0  # cap on backoff and on a server's Retry-After

    # Credentials: a config.json path overrides $DOCKER_CONFIG and ~/.docker.
    docker_config: Path | None = None

    # Transfers.
    max_concurrent_transfers: int = 4
    chunk_threshold: int = 64 << 20  # blobs above this are uploaded in PATCH chunks of chunk_size
    chunk_size: int = 64 << 20
    timeout: float = 60.0  # seconds of silence on a connection before it is abandoned
    user_agent: str = "kiln"

    def is_insecure(self, registry: str, pulling: bool = False) -> bool:
        """Plain HTTP for this registry."""
        return self.insecure or registry in self.insecure_registries or (pulling and self.insecure_pull)

    def skips_tls_verify(self, registry: str, pulling: bool = False) -> bool:
        return (
            self.skip_tls_verify
            or registry in self.skip_tls_verify_registries
            or (pulling and self.skip_tls_verify_pull)
        )
