"""Pruning a registry layer-cache repository (kaniko's --cache-repo): kaniko #998, and registries that cap a
repository's tags (10,000 on some).

An entry is an image ``REPO:<key hex>`` (transports/layercache.py; kaniko writes the same shape); its age is its
config's ``created``, its size its blobs'. Tags that are not 64 hex digits are not cache entries and are never
touched. The registry deletes by manifest digest, which removes every tag on that manifest, so the unit here is a
manifest with all its tags: it goes only when every one of them would. The blobs stay until the registry's own
garbage collection (``registry garbage-collect``) reclaims those no manifest names any more.

A build reading an entry while it is deleted sees a miss (or has its blob already, which the registry keeps until
its collection): the cache is never a build's only copy of anything.
"""

from __future__ import annotations

import time
from functools import partial
from urllib.parse import urljoin

from kiln.errors import ImageFormatError, RegistryError, UsageError
from kiln.oci import mediatypes as mt
from kiln.oci.config import ImageConfig
from kiln.oci.manifest import Manifest
from kiln.store.diskusage import Footprint
from kiln.store.prune import Entry, Inventory
from kiln.transports.layercache import parse_created
from kiln.transports.registry.auth import repository_scope
from kiln.transports.registry.client import RegistryClient, pull_scope
from kiln.transports.registry.options import RegistryOptions
from kiln.transports.registry.pull import fetch_manifest, read_small_blob
from kiln.transports.registry.reference import Reference

KIND = "registry cache"
_MAX_CONFIG = 4 << 20
_PAGE = 1000
_MAX_TAGS = 1_000_000  # a repository listing more than this is not a cache of kiln's


def cache_reference(repository: str) -> Reference:
    ref = Reference.parse(repository)
    if ref.digest or (ref.tag != "latest" or repository.endswith(":latest")):
        raise UsageError(f"{repository!r} is not a repository (no tag or digest)", "--cache-repo")
    return Reference(ref.registry, ref.repository)


def list_tags(client: RegistryClient, ref: Reference) -> list[str]:
    """Every tag of the repository, following the registry's pages (its ``Link`` header)."""
    tags: list[str] = []
    path: str | None = f"/v2/{ref.repository}/tags/list?n={_PAGE}"
    while path is not None:
        resp = client.request("GET", path, scopes=[pull_scope(ref.repository)], reference=str(ref))
        if resp.status_code == 404:
            resp.close()
            return tags  # no such repository yet: nothing cached
        if resp.status_code != 200:
            raise client.fail(resp, "listing tags", str(ref))
        try:
            page = resp.json().get("tags") or []
        except (ValueError, AttributeError):
            raise RegistryError("listing tags: the registry's answer is not a tag list", str(ref)) from None
        tags += [t for t in page if isinstance(t, str)]
        if len(tags) > _MAX_TAGS:
            raise RegistryError(f"more than {_MAX_TAGS} tags: not a layer cache", str(ref))
        link = resp.links.get("next", {}).get("url")
        path = urljoin(client.base_url + path, link) if link else None
    return tags


def add_registry_cache(inv: Inventory, repository: str, opts: RegistryOptions, now: float | None = None) -> None:
    """The entries of a registry cache repository, into an inventory of their own (their bytes are the
    registry's, not this machine's)."""
    ref = cache_reference(repository)
    name = f"{ref.registry}/{ref.repository}"
    inv.where[KIND] = name
    client = RegistryClient(ref.registry, opts)
    now = time.time() if now is None else now
    manifests: dict[str, tuple[list[str], int, float]] = {}
    for tag in sorted(list_tags(client, ref)):
        if len(tag) != 64 or any(c not in "0123456789abcdef" for c in tag):
            continue
        tagged = Reference(ref.registry, ref.repository, tag)
        try:
            fetched = fetch_manifest(client, tagged)
            if fetched.media_type not in mt.MANIFEST_TYPES:
                continue
            manifest = Manifest.from_bytes(fetched.data, fetched.media_type, f"cache entry {tagged}")
            config = ImageConfig.from_bytes(
                read_small_blob(client, tagged, manifest.config, _MAX_CONFIG, "config"), f"cache entry {tagged}"
            )
        except RegistryError as e:
            if e.status == 404:
                continue  # deleted meanwhile
            raise
        except ImageFormatError:
            continue  # not an entry kiln or kaniko writes: left alone
        created = parse_created(config.created)
        size = len(fetched.data) + manifest.config.size + sum(d.size for d in manifest.layers)
        tags, _, _ = manifests.get(fetched.digest, ([], 0, 0.0))
        manifests[fetched.digest] = ([*tags, tag], size, created if created is not None else 0.0)
    for digest, (tags, size, created) in manifests.items():
        fp = Footprint(own=size)
        inv.usage.total += size
        shown = f"{tags[0]} (+{len(tags) - 1} tags)" if len(tags) > 1 else tags[0]
        inv.entries.append(Entry(KIND, shown, created, fp, remove=partial(_delete, client, ref, digest)))


def _delete(client: RegistryClient, ref: Reference, digest: str) -> bool:
    resp = client.request("DELETE", f"/v2/{ref.repository}/manifests/{digest}",
                          scopes=[repository_scope(ref.repository, "pull,push,delete")], reference=str(ref))
    if resp.status_code in (200, 202):
        resp.close()
        return True
    if resp.status_code == 404:
        resp.close()
        return False
    if resp.status_code == 405:
        resp.close()
        raise RegistryError("the registry does not allow deleting manifests (distribution: storage.delete.enabled)",
                            str(ref), 405)
    raise client.fail(resp, f"deleting {digest}", str(ref))
