"""Pull-through mirrors: the references to try, in order, for an image (kaniko --registry-mirror / --registry-map).

A mirror may carry a path prefix (``mirror.local/hub``): ``docker.io/library/busybox`` is then looked for as
``mirror.local/hub/library/busybox``. Mirrors serve pulls only.
"""

from __future__ import annotations

from kiln.errors import UsageError
from kiln.transports.registry.options import RegistryOptions
from kiln.transports.registry.reference import DOCKER_HUB, Reference, canonical_registry


def _mirrored(ref: Reference, mirror: str, flag: str) -> Reference:
    mirror = mirror.strip()
    for scheme in ("https://", "http://"):
        if mirror.startswith(scheme):
            mirror = mirror[len(scheme) :]
    host, _, prefix = mirror.rstrip("/").partition("/")
    if not host:
        raise UsageError(f"bad mirror {mirror!r}", flag)
    repository = f"{prefix}/{ref.repository}" if prefix else ref.repository
    return Reference(canonical_registry(host), repository, ref.tag, ref.digest)


def candidate_references(ref: Reference, opts: RegistryOptions) -> list[Reference]:
    """Mirrors first, in the order given, then the reference itself unless the fallback is turned off."""
    out: list[Reference] = []
    for key, mirrors in opts.registry_maps.items():
        if canonical_registry(key.strip()) == ref.registry:
            out += [_mirrored(ref, m, "--registry-map") for m in mirrors]
    if ref.registry == DOCKER_HUB:
        out += [_mirrored(ref, m, "--registry-mirror") for m in opts.registry_mirrors]
    if not out or not opts.skip_default_registry_fallback:
        out.append(ref)
    seen: list[Reference] = []
    for r in out:
        if r not in seen:
            seen.append(r)
    return seen
