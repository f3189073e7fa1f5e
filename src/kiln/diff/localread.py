"""Reading OCI layouts and docker-archive tarballs, for ``kiln diff`` alone.

kiln/transports/layout.py and archive.py are the real readers; this module is the fallback ``sources`` uses
while they are not there (or do not import), so the comparer never waits on them. It reads what it needs and
checks nothing beyond what the comparison relies on: the config digest against the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path
from typing import Any, BinaryIO

from kiln.errors import ImageFormatError
from kiln.oci import mediatypes as mt
from kiln.oci.config import ImageConfig
from kiln.oci.descriptor import Descriptor
from kiln.oci.manifest import Index, Manifest, sniff_media_type
from kiln.oci.platform import Platform
from kiln.transports.blobstore import BlobStore
from kiln.transports.image import Image, check_config_digest

REF_NAME = "org.opencontainers.image.ref.name"


def _load_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:
        raise ImageFormatError(f"{what}: not JSON: {e}") from None


def _pick_tagged(index: Index, tag: str | None, where: str) -> Descriptor:
    if tag is None:
        if len(index.manifests) != 1:
            tags = sorted(m.annotations.get(REF_NAME, "?") for m in index.manifests)
            raise ImageFormatError(f"{where}: {len(index.manifests)} images; name one by tag (tags: {tags})")
        return index.manifests[0]
    tagged = [m for m in index.manifests if m.annotations.get(REF_NAME) == tag]
    if not tagged:
        tags = sorted(m.annotations.get(REF_NAME, "?") for m in index.manifests)
        raise ImageFormatError(f"{where}: no image tagged {tag!r} (tags: {tags})")
    return tagged[-1]


def _pick_platform(index: Index, platform: Platform | None, where: str) -> Descriptor:
    wanted = platform or Platform.host()
    for desc in index.manifests:
        if desc.platform is not None and wanted.matches(desc.platform):
            return desc
    if len(index.manifests) == 1:
        return index.manifests[0]
    raise ImageFormatError(f"{where}: no image for {wanted.os}/{wanted.architecture}")


def read_layout(layout: Path, tag: str | None, platform: Platform | None = None) -> Image:
    """The image tagged ``tag`` (or the only one) in the OCI layout at ``layout``."""
    index_path = layout / "index.json"
    try:
        index_bytes = index_path.read_bytes()
    except OSError as e:
        raise ImageFormatError(f"{layout}: not an OCI layout: {e.strerror}") from None
    store = BlobStore(layout / "blobs")
    desc = _pick_tagged(Index.from_bytes(index_bytes, mt.OCI_INDEX, f"{index_path}"), tag, str(layout))
    for _ in range(4):  # index -> (nested index ->) manifest; deeper chains are not followed
        data = store.read_bytes(desc.digest)
        media_type = sniff_media_type(data, desc.media_type)
        if media_type in mt.MANIFEST_TYPES:
            manifest = Manifest.from_bytes(data, media_type, f"{layout} manifest {desc.digest}")
            config_bytes = store.read_bytes(manifest.config.digest)
            check_config_digest(manifest, config_bytes, str(layout))
            config = ImageConfig.from_bytes(config_bytes, f"{layout} config")
            return Image(manifest, data, config, config_bytes, store)
        if media_type not in mt.INDEX_TYPES:
            raise ImageFormatError(f"{layout}: {desc.digest} is neither a manifest nor an index ({media_type})")
        desc = _pick_platform(Index.from_bytes(data, media_type, f"{layout} index"), platform, str(layout))
    raise ImageFormatError(f"{layout}: indexes nested too deeply")


class _FileBlobs:
    """Blobs that are plain files, found by digest (a docker-archive's layers once extracted)."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        try:
            return open(self.files[desc.digest], "rb")
        except KeyError:
            raise ImageFormatError(f"blob {desc.digest} is not in the archive") from None


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _safe_member_path(name: str, where: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ImageFormatError(f"{where}: unsafe member name {name!r}")
    return "/".join(parts)


def read_archive(path: Path, workdir: Path, tag: str | None = None) -> Image:
    """The image in a docker-archive tarball (``docker save`` format); its files are unpacked into workdir."""
    files: dict[str, Path] = {}
    try:
        with tarfile.open(path, "r:*") as tf:
            for member in tf:
                if not member.isfile():
                    continue  # layer dirs, and symlinks docker uses to share a layer between images
                rel = _safe_member_path(member.name, str(path))
                dest = workdir / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(member)
                assert src is not None
                with open(dest, "wb") as out:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
                files[rel] = dest
            links = {
                _safe_member_path(m.name, str(path)): m.linkname for m in tf.getmembers() if m.issym() or m.islnk()
            }
    except (tarfile.TarError, OSError) as e:
        raise ImageFormatError(f"{path}: cannot read the archive: {e}") from None

    def archived(name: str) -> Path:
        rel = _safe_member_path(name, str(path))
        seen = 0
        while rel not in files and rel in links and seen < 8:  # docker's shared layers are symlinks
            target = links[rel]
            rel = _safe_member_path(os.path.normpath(os.path.join(os.path.dirname(rel), target)), str(path))
            seen += 1
        if rel not in files:
            raise ImageFormatError(f"{path}: {name} is missing from the archive")
        return files[rel]

    entries = _load_json(archived("manifest.json").read_bytes(), f"{path} manifest.json")
    if not isinstance(entries, list) or not entries:
        raise ImageFormatError(f"{path}: manifest.json lists no image")
    if tag is None:
        if len(entries) != 1:
            raise ImageFormatError(f"{path}: {len(entries)} images in the archive; name one by tag")
        entry = entries[0]
    else:
        matches = [e for e in entries if tag in (e.get("RepoTags") or [])]
        if not matches:
            raise ImageFormatError(f"{path}: no image tagged {tag!r}")
        entry = matches[0]
    config_path = archived(str(entry.get("Config")))
    config_bytes = config_path.read_bytes()
    config = ImageConfig.from_bytes(config_bytes, f"{path} config")
    layer_descs: list[Descriptor] = []
    blobs: dict[str, Path] = {}
    for name in entry.get("Layers") or []:
        layer_path = archived(str(name))
        digest = _sha256_file(layer_path)
        blobs[digest] = layer_path
        layer_descs.append(Descriptor(mt.OCI_LAYER, digest, layer_path.stat().st_size))
    config_desc = Descriptor(mt.OCI_CONFIG, "sha256:" + hashlib.sha256(config_bytes).hexdigest(), len(config_bytes))
    manifest = Manifest(config_desc, tuple(layer_descs))
    return Image(manifest, manifest.to_bytes(), config, config_bytes, _FileBlobs(blobs))
