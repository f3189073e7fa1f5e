"""Image references, normalised exactly as Docker does (``busybox`` is ``docker.io/library/busybox:latest``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from kiln.errors import ImageFormatError, RegistryError
from kiln.oci.digest import validate_digest

DOCKER_HUB = "docker.io"
# Where Docker Hub's API actually answers, and the key Docker stores its credentials under.
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$")
_PATH_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_HEX64_RE = re.compile(r"^[a-f0-9]{64}$")
_NAME_MAX = 255


def canonical_registry(host: str) -> str:
    """Docker Hub's several host names are one registry, called docker.io."""
    return DOCKER_HUB if host.lower() in _HUB_ALIASES else host


@dataclass(frozen=True)
class Reference:
    registry: str  # host[:port], docker.io for Docker Hub
    repository: str  # path inside the registry, library/busybox for an official image
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse a reference; a bare name gets docker.io, library/ and the tag latest, as ``docker pull`` does."""
        original = text
        if not text or text != text.strip():
            raise RegistryError("invalid reference format", original)
        if _HEX64_RE.match(text):
            raise RegistryError("invalid reference format: a 64-character hex string is an image ID", original)

        digest = None
        if "@" in text:
            text, _, digest = text.partition("@")
            try:
                validate_digest(digest)
            except ImageFormatError as e:
                raise RegistryError(f"invalid reference format: {e}", original) from None

        # A tag follows the last ':' that comes after the last '/', so a registry port is not taken for a tag.
        tag = None
        colon = text.rfind(":")
        if colon > text.rfind("/"):
            text, tag = text[:colon], text[colon + 1 :]
            if not _TAG_RE.match(tag):
                raise RegistryError(f"invalid reference format: bad tag {tag!r}", original)

        first, slash, rest = text.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
            if not _DOMAIN_RE.match(first):
                raise RegistryError(f"invalid reference format: bad registry {first!r}", original)
            registry, path = canonical_registry(first), rest
        else:
            registry, path = DOCKER_HUB, text
        if registry == DOCKER_HUB and "/" not in path:
            path = "library/" + path

        if path != path.lower() and all(_PATH_COMPONENT_RE.match(c) for c in path.lower().split("/")):
            raise RegistryError("invalid reference format: repository name must be lowercase", original)
        if not path or not all(_PATH_COMPONENT_RE.match(c) for c in path.split("/")):
            raise RegistryError("invalid reference format", original)
        if len(registry) + 1 + len(path) > _NAME_MAX:
            raise RegistryError(f"invalid reference format: name longer than {_NAME_MAX} characters", original)
        if tag is None and digest is None:
            tag = "latest"
        return cls(registry, path, tag, digest)

    @property
    def name(self) -> str:
        """registry/repository, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What goes after /manifests/: the digest when there is one (it pins the tag), else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    def with_registry(self, registry: str, repository: str | None = None) -> Reference:
        return Reference(canonical_registry(registry), repository or self.repository, self.tag, self.digest)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out
