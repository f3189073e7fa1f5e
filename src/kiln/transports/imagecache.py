"""kaniko's --cache-dir: a local directory of base images, filled by ``kiln warm`` (kaniko's warmer), that a build
looks in before asking any registry.

Layout of the directory:
  ``<digest>/``            an OCI layout holding the one image whose manifest has that digest (the format of the
                           maintained kaniko fork's OCI warmer, so its executor can read what kiln stored)
  ``<digest>`` (a file)    kaniko 1.24's format: a docker tarball of the image, ``<digest>.json`` its manifest;
                           read, never written
  ``refs/<key>.json``      which digest a reference (as given, tag or digest) names for a platform when it was
                           stored, so a build finds a tagged base image without asking the registry

An entry is fresh for the TTL from the time it was stored (the mtime of ``<digest>``, as kaniko). Everything is
written beside its final place and renamed into it, so a build sharing the directory sees an image whole or not
at all; an entry that cannot be read is a miss, never an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kiln.atomic import write_atomically
from kiln.errors import KilnError, RegistryError
from kiln.oci.platform import Platform
from kiln.transports.image import Image
from kiln.transports.registry.options import RegistryOptions
from kiln.transports.registry.reference import Reference

DEFAULT_TTL = 336 * 3600.0  # kaniko's --cache-ttl default: two weeks


def _platform_text(platform: Platform) -> str:
    return "/".join(p for p in (platform.os, platform.architecture, platform.variant) if p)


def canonical_reference(ref: str) -> str:
    """One spelling per image reference (busybox -> docker.io/library/busybox:latest); the text itself when it
    does not parse (the registry will say what is wrong with it)."""
    try:
        return str(Reference.parse(ref))
    except RegistryError:
        return ref


@dataclass(frozen=True)
class RefEntry:
    reference: str
    platform: str
    digest: str


class ImageCache:
    """A --cache-dir. ``warn`` hears about entries that exist but cannot be used."""

    def __init__(self, root: Path, ttl: float = DEFAULT_TTL, warn: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.ttl = ttl
        self._warn = warn or (lambda message: None)

    # -- where things are ----------------------------------------------------------------------------------

    def _ref_path(self, ref: str, platform: Platform) -> Path:
        key = hashlib.sha256(f"{canonical_reference(ref)}\0{_platform_text(platform)}".encode()).hexdigest()
        return self.root / "refs" / f"{key}.json"

    def entry_path(self, digest: str) -> Path:
        return self.root / digest

    def fresh(self, digest: str, now: float | None = None) -> bool:
        """Whether an image with this manifest digest is stored and younger than the TTL."""
        try:
            stored = self.entry_path(digest).stat().st_mtime
        except (OSError, ValueError):
            return False
        return (now if now is not None else time.time()) - stored <= self.ttl

    def lookup_digest(self, ref: str, platform: Platform) -> str | None:
        """The manifest digest stored for a reference and platform (fresh or not), or the reference's own
        digest when it names one."""
        try:
            doc = json.loads(self._ref_path(ref, platform).read_bytes())
            digest = str(doc["digest"])
        except (OSError, ValueError, KeyError, TypeError):
            digest = ""
        if digest.startswith("sha256:"):
            return digest
        try:
            return Reference.parse(ref).digest
        except RegistryError:
            return None

    # -- reading -------------------------------------------------------------------------------------------

    def get(self, ref: str, platform: Platform, now: float | None = None) -> Image | None:
        """The stored image for ``ref`` (a tag is not checked with the registry), or None."""
        digest = self.lookup_digest(ref, platform)
        if digest is None:
            return None
        return self.get_digest(digest, platform, ref, now)

    def get_digest(self, digest: str, platform: Platform, ref: str, now: float | None = None) -> Image | None:
        """The image stored under a manifest digest, if fresh (``ref`` names it in warnings)."""
        if not self.fresh(digest, now):
            return None
        path = self.entry_path(digest)
        try:
            if path.is_dir():
                from kiln.transports.layout import read_image

                image = read_image(path, None, platform)
            else:
                from kiln.transports.archive import read_archive

                image = read_archive(path)
        except (KilnError, OSError) as e:
            self._warn(f"--cache-dir: cannot use the stored {ref} ({path}): {e}; pulling it instead")
            return None
        if image.digest != digest and path.is_dir():
            self._warn(f"--cache-dir: {path} holds {image.digest}, not {digest}; pulling {ref} instead")
            return None
        return image

    # -- writing -------------------------------------------------------------------------------------------

    def put(self, ref: str, platform: Platform, image: Image, *, replace: bool = False) -> Path:
        """Store ``image`` as what ``ref`` names for ``platform``; an image already stored under its digest is
        kept unless ``replace``. Returns the entry's path."""
        from kiln.transports.layout import write_image

        self.root.mkdir(parents=True, exist_ok=True)
        final = self.entry_path(image.digest)
        if replace or not self.fresh(image.digest):
            tmp = Path(tempfile.mkdtemp(prefix=".warm-", dir=self.root))
            try:
                write_image(tmp / "layout", image, canonical_reference(ref))
                self._swap_in(tmp / "layout", final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        self.remember(ref, platform, image.digest)
        return final

    def remember(self, ref: str, platform: Platform, digest: str) -> None:
        doc = {"reference": canonical_reference(ref), "platform": _platform_text(platform), "digest": digest,
               "stored": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_atomically(self._ref_path(ref, platform), json.dumps(doc, sort_keys=True).encode())

    def _swap_in(self, new: Path, final: Path) -> None:
        """Put a complete layout directory in place: renamed in when nothing is there, else the old entry is
        renamed aside first and removed after, so a reader opens the old image or the new one."""
        try:
            os.rename(new, final)
            return
        except OSError:
            if not final.exists() and not final.is_symlink():
                raise
        aside = final.with_name(f".old-{final.name}-{os.getpid()}-{time.monotonic_ns()}")
        os.rename(final, aside)
        try:
            os.rename(new, final)
        finally:
            if aside.is_dir() and not aside.is_symlink():
                shutil.rmtree(aside, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    aside.unlink()
        # kaniko 1.24's manifest beside a tarball entry belongs to what was replaced.
        with contextlib.suppress(OSError):
            final.with_name(final.name + ".json").unlink()


def current_digest(ref: str, platform: Platform, opts: RegistryOptions) -> str:
    """The manifest digest ``ref`` names in its registry now for ``platform`` (an index is followed to the
    platform's entry): what kaniko's warmer and executor key the directory by."""
    from kiln.transports.registry.pull import choose_platform, fetch_image_index, resolve

    index = fetch_image_index(ref, opts)
    if index is not None:
        return choose_platform(index, platform, ref).digest
    return resolve(ref, opts).digest
