"""Content digests (``algorithm:hex``) as the OCI image spec defines them."""

from __future__ import annotations

import hashlib
import re
from typing import Protocol

from kiln.errors import ImageFormatError

_DIGEST_RE = re.compile(r"^(?P<algo>[a-z0-9]+(?:[.+_-][a-z0-9]+)*):(?P<hex>[a-zA-Z0-9=_-]+)$")
_HEX_LENGTH = {"sha256": 64, "sha512": 128}


class _Hash(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is well formed (known algorithms checked for length and hex), else raise."""
    m = _DIGEST_RE.match(digest)
    if not m:
        raise ImageFormatError(f"malformed digest {digest!r}")
    algo, hexpart = m.group("algo"), m.group("hex")
    want = _HEX_LENGTH.get(algo)
    if want is None:
        raise ImageFormatError(f"unsupported digest algorithm in {digest!r}")
    if len(hexpart) != want or not re.fullmatch(r"[0-9a-f]+", hexpart):
        raise ImageFormatError(f"malformed {algo} digest {digest!r}")
    return digest


def split_digest(digest: str) -> tuple[str, str]:
    algo, _, hexpart = validate_digest(digest).partition(":")
    return algo, hexpart


def new_hasher(digest: str) -> _Hash:
    """A hash object for the algorithm of ``digest``, to verify bytes as they stream."""
    algo, _ = split_digest(digest)
    return hashlib.new(algo)


class DigestingHash:
    """sha256 of a stream, fed as it passes; ``digest`` gives the ``sha256:...`` form."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes) -> None:
        self._h.update(data)
        self.size += len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()
