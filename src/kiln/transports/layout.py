"""OCI image layouts on local disk: ``oci-layout``, ``index.json`` and ``blobs/<algorithm>/<hex>``.

A layout holds several images, each named by the ``org.opencontainers.image.ref.name`` annotation of its
index.json entry (a tag names one image). Writing puts every blob in place first and replaces index.json last,
by rename, so a reader (or a crash) never sees an index that points at a missing blob, and a failed write leaves
the previous index as it was. Writers to the same layout are serialised by a lock on the ``oci-layout`` file,
which is the one file of a layout that is never replaced.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from kiln.atomic import write_atomically
from kiln.errors import DigestMismatch, ImageFormatError, UsageError
from kiln.oci import mediatypes as mt
from kiln.oci.canonical import canonical_json, load_json_object
from kiln.oci.config import ImageConfig
from kiln.oci.descriptor import Descriptor, pick_platform, platforms_offered
from kiln.oci.digest import new_hasher, split_digest, validate_digest
from kiln.oci.manifest import Index, Manifest, sniff_media_type
from kiln.oci.platform import Platform
from kiln.transports.blobstore import BlobStore
from kiln.transports.image import Built, Image, ImageIndex, check_config_digest, images_of

REF_NAME = "org.opencontainers.image.ref.name"
# containerd's name for the full reference; read as a fallback so layouts from `ctr export` resolve.
CONTAINERD_NAME = "io.containerd.image.name"
LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"

# Manifests, indexes and configs are read whole; anything bigger than this is not one.
_MAX_DOCUMENT = 64 << 20
_MAX_NESTING = 8
# The OCI image spec's grammar for ref.name: components of alphanumerics joined by separators, split by '/'.
_REF_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_REF_RE = re.compile(rf"^{_REF_COMPONENT}(?:/{_REF_COMPONENT})*$")


def blob_store(layout: Path) -> BlobStore:
    """The layout's blobs/ directory as a store (and the BlobReader of images read from it)."""
    return BlobStore(layout / "blobs")


# --- reading -------------------------------------------------------------------------------------------------


def _check_layout(layout: Path) -> None:
    marker = layout / LAYOUT_FILE
    try:
        data = marker.read_bytes()
    except FileNotFoundError:
        raise ImageFormatError(f"{layout}: not an OCI image layout ({LAYOUT_FILE} is missing)") from None
    except OSError as e:
        raise ImageFormatError(f"{marker}: cannot read: {e.strerror}") from None
    version = load_json_object(data, str(marker)).get("imageLayoutVersion")
    if not isinstance(version, str) or not version.startswith("1."):
        raise ImageFormatError(f"{marker}: unsupported imageLayoutVersion {version!r}")


def _read_index_bytes(layout: Path) -> bytes:
    path = layout / INDEX_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageFormatError(f"{layout}: not an OCI image layout ({INDEX_FILE} is missing)") from None
    except OSError as e:
        raise ImageFormatError(f"{path}: cannot read: {e.strerror}") from None


def _read_index(layout: Path) -> Index:
    _check_layout(layout)
    return Index.from_bytes(_read_index_bytes(layout), what=str(layout / INDEX_FILE))


def list_refs(layout: Path) -> list[tuple[str | None, Descriptor]]:
    """Each entry of the layout's index.json, in order, with its ref name (None when it has none)."""
    return [(desc.annotations.get(REF_NAME), desc) for desc in _read_index(layout).manifests]


def read_blob(layout: Path, desc: Descriptor, what: str) -> bytes:
    """A small blob (manifest, index, config) read whole and checked against its descriptor."""
    if desc.size > _MAX_DOCUMENT:
        raise ImageFormatError(f"{layout}: {what} {desc.digest} is {desc.size} bytes, too big for a {what}")
    path = blob_store(layout).path(desc.digest)
    try:
        with open(path, "rb") as f:
            data = f.read(desc.size + 1)
    except FileNotFoundError:
        raise ImageFormatError(f"{layout}: {what} blob {desc.digest} is missing") from None
    except OSError as e:
        raise ImageFormatError(f"{path}: cannot read: {e.strerror}") from None
    if len(data) != desc.size:
        raise ImageFormatError(
            f"{layout}: {what} blob {desc.digest}: descriptor says {desc.size} bytes, "
            f"the blob has {path.stat().st_size}"
        )
    hasher = new_hasher(desc.digest)
    hasher.update(data)
    actual = f"{split_digest(desc.digest)[0]}:{hasher.hexdigest()}"
    if actual != desc.digest:
        raise DigestMismatch(f"{path} ({what})", desc.digest, actual)
    return data


def _is_digest(ref: str) -> bool:
    try:
        validate_digest(ref)
    except ImageFormatError:
        return False
    return True


def _describe(desc: Descriptor) -> str:
    name = desc.annotations.get(REF_NAME)
    parts = [name] if name else []
    if desc.platform is not None:
        parts.append(str(desc.platform))
    parts.append(desc.digest)
    return " ".join(parts)


def choose_platform(entries: list[Descriptor], platform: Platform, where: str) -> Descriptor:
    """The entry for ``platform`` among alternatives (oci.descriptor.pick_platform)."""
    chosen = pick_platform(entries, platform)
    if chosen is None:
        raise ImageFormatError(f"{where}: no image for platform {platform}; available: {platforms_offered(entries)}")
    return chosen


def _select(index: Index, ref: str | None, platform: Platform, layout: Path) -> list[Descriptor]:
    """The top-level entries ``ref`` names (several when they are platform alternatives under one tag)."""
    entries = list(index.manifests)
    if not entries:
        raise ImageFormatError(f"{layout}: the layout holds no image")
    if ref is None:
        if len(entries) > 1:
            listed = "; ".join(_describe(d) for d in entries)
            raise ImageFormatError(f"{layout}: holds several images, name one of: {listed}")
        return entries
    if _is_digest(ref):
        found = [d for d in entries if d.digest == ref]
        if found:
            return found[:1]
        nested = _find_nested(layout, entries, ref, 0)
        if nested is not None:
            return [nested]
        raise ImageFormatError(f"{layout}: no image with digest {ref}")
    tagged = [d for d in entries if d.annotations.get(REF_NAME) == ref]
    if not tagged:
        tagged = [d for d in entries if d.annotations.get(CONTAINERD_NAME) == ref]
    if not tagged:
        names = sorted({d.annotations[REF_NAME] for d in entries if REF_NAME in d.annotations})
        raise ImageFormatError(f"{layout}: no image tagged {ref!r} (tags: {', '.join(names) or 'none'})")
    return tagged


def _find_nested(layout: Path, entries: list[Descriptor], digest: str, depth: int) -> Descriptor | None:
    """A manifest or index with ``digest`` inside the indexes the layout's index points to."""
    if depth > _MAX_NESTING:
        return None
    for desc in entries:
        if desc.media_type not in mt.INDEX_TYPES:
            continue
        child = Index.from_bytes(read_blob(layout, desc, "index"), what=f"{layout}: index {desc.digest}")
        for sub in child.manifests:
            if sub.digest == digest:
                return sub
        found = _find_nested(layout, list(child.manifests), digest, depth + 1)
        if found is not None:
            return found
    return None


def _resolve(layout: Path, desc: Descriptor, platform: Platform, depth: int) -> tuple[Manifest, bytes]:
    """Follow indexes down to the manifest for ``platform``."""
    if depth > _MAX_NESTING:
        raise ImageFormatError(f"{layout}: indexes nested more than {_MAX_NESTING} deep")
    data = read_blob(layout, desc, "manifest")
    where = f"{layout}: manifest {desc.digest}"
    mtype = sniff_media_type(data, desc.media_type or None)
    if mtype in mt.INDEX_TYPES:
        child = Index.from_bytes(data, desc.media_type or None, what=where)
        chosen = choose_platform(list(child.manifests), platform, f"{layout}: index {desc.digest}")
        return _resolve(layout, chosen, platform, depth + 1)
    return Manifest.from_bytes(data, desc.media_type or None, what=where), data


def read_image(layout: Path, ref: str | None = None, platform: Platform | None = None) -> Image:
    """The image ``ref`` names in the layout: a tag, a digest, or None for the only image there is.

    Indexes are followed to the manifest for ``platform`` (the host's by default). The manifest and config are
    verified against their digests; the layers are checked to be present with their recorded sizes and are read
    from the layout's blobs/ when used.
    """
    layout = Path(layout)
    platform = platform or Platform.host()
    index = _read_index(layout)
    entries = _select(index, ref, platform, layout)
    desc = entries[0] if len(entries) == 1 else choose_platform(entries, platform, f"{layout}: {ref}")
    manifest, manifest_bytes = _resolve(layout, desc, platform, 0)
    config_bytes = read_blob(layout, manifest.config, "config")
    check_config_digest(manifest, config_bytes, f"{layout}: image {desc.digest}")
    config = ImageConfig.from_bytes(config_bytes, f"{layout}: config {manifest.config.digest}")
    store = blob_store(layout)
    for layer in manifest.layers:
        if layer.urls and not store.has(layer.digest):
            continue  # a foreign layer: fetched from its URLs by whoever needs it, not kept in layouts
        try:
            size = store.size(layer.digest)
        except FileNotFoundError:
            raise ImageFormatError(f"{layout}: layer blob {layer.digest} is missing") from None
        if size != layer.size:
            raise ImageFormatError(
                f"{layout}: layer blob {layer.digest} is {size} bytes, the manifest says {layer.size}"
            )
    return Image(manifest, manifest_bytes, config, config_bytes, store)


# --- writing -------------------------------------------------------------------------------------------------


def _check_tag(tag: str) -> None:
    if not _REF_RE.match(tag):
        raise UsageError(f"{tag!r} is not a valid OCI layout reference name")


@contextlib.contextmanager
def _locked_layout(layout: Path) -> Iterator[None]:
    """Create the layout if needed and hold its writer lock."""
    layout.mkdir(parents=True, exist_ok=True)
    marker = layout / LAYOUT_FILE
    if not marker.exists():
        own = (INDEX_FILE, "blobs")
        strangers = any(p.name not in own and not p.name.startswith(f".{LAYOUT_FILE}.") for p in layout.iterdir())
        # Another writer may have made the layout meanwhile (its marker, then its index's temporary file).
        if strangers and not marker.exists():
            raise ImageFormatError(f"{layout}: exists and is not an OCI image layout (no {LAYOUT_FILE})")
        _create_marker(marker)
    fd = os.open(marker, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _check_layout(layout)
        yield
    finally:
        os.close(fd)  # releases the lock


def _create_marker(marker: Path) -> None:
    """Write the oci-layout file complete, never replacing one: its inode carries the writers' lock."""
    fd, tmp = tempfile.mkstemp(prefix=f".{marker.name}.", dir=marker.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(canonical_json({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION}))
        os.chmod(tmp, 0o644)
        with contextlib.suppress(FileExistsError):  # another writer created it first: theirs is as good
            os.link(tmp, marker)
    finally:
        os.unlink(tmp)


def _copy_blobs(store: BlobStore, image: Image) -> None:
    for i, layer in enumerate(image.layers):
        if store.has(layer.digest):
            continue
        with image.blobs.open_blob(layer) as f:
            store.ingest_file(f, layer.digest, layer.size, what=f"layer {i} ({layer.digest})")
    config = image.manifest.config
    store.ingest([image.config_bytes], config.digest, config.size, what="image config")
    store.ingest([image.manifest_bytes], image.digest, what="manifest")


def _index_entries(layout: Path) -> dict[str, Any]:
    """The existing index.json as raw JSON (unknown fields kept), after checking it parses as an index."""
    path = layout / INDEX_FILE
    if not path.exists():
        return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
    data = _read_index_bytes(layout)
    Index.from_bytes(data, what=str(path))  # refuse to overwrite an index we cannot read
    return load_json_object(data, str(path))


def write_image(layout: Path, image: Built, tag: str | None = None) -> Descriptor:
    """Add ``image`` (an image, or an index with its images) to the layout (created if missing) under ``tag``,
    replacing what that tag named.

    Blobs go in first (each verified against its digest), index.json is replaced last; on any failure the
    previous index.json is left intact. Returns the index entry written.
    """
    layout = Path(layout)
    if tag is not None:
        _check_tag(tag)
    store = blob_store(layout)
    with _locked_layout(layout):
        for one in images_of(image):
            _copy_blobs(store, one)
        annotations = {REF_NAME: tag} if tag is not None else {}
        if isinstance(image, ImageIndex):
            store.ingest([image.index_bytes], image.digest, what="image index")
            entry = replace(image.descriptor(), annotations=annotations)
        else:
            plat = image.config.platform if image.config.os and image.config.architecture else None
            entry = Descriptor(image.manifest.media_type, image.digest, len(image.manifest_bytes), annotations, plat)
        index = _index_entries(layout)

        def replaced(raw: Any) -> bool:
            if not isinstance(raw, dict):
                return False
            names = raw.get("annotations") or {}
            if tag is not None:
                return bool(names.get(REF_NAME) == tag)
            # The same image written again without a tag: one untagged entry is enough.
            return REF_NAME not in names and raw.get("digest") == entry.digest

        index["manifests"] = [m for m in index.get("manifests", []) if not replaced(m)] + [entry.to_dict()]
        index.setdefault("mediaType", mt.OCI_INDEX)
        write_atomically(layout / INDEX_FILE, canonical_json(index))
        # The store's scratch directory is no part of a layout. Removed under the lock: another writer's
        # blobs may be passing through it otherwise.
        with contextlib.suppress(OSError):
            (store.root / ".tmp").rmdir()
    return entry
