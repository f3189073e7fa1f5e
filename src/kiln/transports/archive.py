"""docker-archive tarballs: what `docker save` writes and `docker load` / `podman load` read.

The archive holds ``manifest.json`` (``[{"Config": ..., "RepoTags": [...], "Layers": [...]}]``), the config as
``<hex>.json``, one file per layer, and the legacy ``repositories`` file with a ``<layer id>/`` directory per
layer (``VERSION``, ``json``, ``layer.tar`` as a link to the layer file) for readers of the old format.

Layers are written as their blobs are: a gzip layer stays compressed (``<digest hex>.tar.gz``; docker and
podman load decompress it, as go-containerregistry's tarballs rely on) and an uncompressed one is
``<digest hex>.tar``. zstd layers, which older docker cannot load, are decompressed to ``<diff_id hex>.tar``.

Reading takes plain or compressed layer files and builds a Docker schema 2 image over gzip blobs: a gzip layer
is kept as it is, any other is recompressed, and each layer's diff_id is checked against the config.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
import shutil
import tarfile
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from kiln.atomic import atomic_file
from kiln.errors import DigestMismatch, ImageFormatError, UsageError
from kiln.layers.compress import CompressingWriter, Writable, open_decompressed, sniff_compression
from kiln.oci import mediatypes as mt
from kiln.oci.canonical import canonical_json
from kiln.oci.config import ImageConfig, chain_ids
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import new_hasher, sha256_digest, split_digest
from kiln.oci.manifest import Manifest
from kiln.transports.blobstore import CHUNK, BlobStore
from kiln.transports.image import Image

MANIFEST_FILE = "manifest.json"
REPOSITORIES_FILE = "repositories"
# Fixed metadata for every entry, so the same image always gives the same archive bytes.
_MTIME = 0
_MAX_JSON = 64 << 20
_MAX_LINKS = 16
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# The attributes of the image config a legacy top layer's json carries (what docker save put there).
_LEGACY_CONFIG_KEYS = ("architecture", "config", "container", "container_config", "created", "docker_version", "os")


# --- writing -------------------------------------------------------------------------------------------------


def normalise_repo_tag(ref: str) -> str:
    """``name[:tag]`` as RepoTags holds it: a tag is added when missing; digests cannot be tags."""
    if "@" in ref:
        raise UsageError(f"{ref!r}: a docker-archive names images by tag, not by digest")
    last = ref.rsplit("/", 1)[-1]
    if not last or not ref or any(c.isspace() for c in ref):
        raise UsageError(f"{ref!r} is not a valid image name")
    return ref if ":" in last else f"{ref}:latest"


@dataclass(frozen=True)
class _LayerFile:
    name: str  # the file name in the archive
    desc: Descriptor
    diff_id: str
    decompress: bool  # written as its uncompressed tar rather than as the blob


def _plan_layers(image: Image) -> list[_LayerFile]:
    out = []
    for desc, diff_id in image.layer_diff_ids():
        compression = mt.layer_compression(desc.media_type)
        if compression == "gzip":
            out.append(_LayerFile(f"{split_digest(desc.digest)[1]}.tar.gz", desc, diff_id, False))
        elif compression == "none":
            out.append(_LayerFile(f"{split_digest(desc.digest)[1]}.tar", desc, diff_id, False))
        else:
            out.append(_LayerFile(f"{split_digest(diff_id)[1]}.tar", desc, diff_id, True))
    return out


def _info(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = kind
    info.linkname = link
    info.mtime = _MTIME
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o777 if kind == tarfile.SYMTYPE else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _VerifyingReader:
    """Reads a blob and checks its digest and size when it has been read to the end."""

    def __init__(self, src: BinaryIO, desc: Descriptor, what: str) -> None:
        self._src = src
        self._desc = desc
        self._what = what
        self._hash = new_hasher(desc.digest)
        self._size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._src.read(n)
        self._hash.update(data)
        self._size += len(data)
        if self._size > self._desc.size:
            raise ImageFormatError(f"{self._what}: more than the {self._desc.size} bytes its descriptor says")
        return data

    def check(self) -> None:
        if self._size != self._desc.size:
            raise ImageFormatError(f"{self._what}: {self._size} bytes, its descriptor says {self._desc.size}")
        actual = f"{split_digest(self._desc.digest)[0]}:{self._hash.hexdigest()}"
        if actual != self._desc.digest:
            raise DigestMismatch(self._what, self._desc.digest, actual)


def _add_blob(tar: tarfile.TarFile, layer: _LayerFile, image: Image, scratch: Path) -> None:
    what = f"layer {layer.desc.digest}"
    with image.blobs.open_blob(layer.desc) as src:
        reader = _VerifyingReader(src, layer.desc, what)
        if not layer.decompress:
            tar.addfile(_info(layer.name, layer.desc.size), reader)
            reader.check()
            return
        # The uncompressed size goes in the tar header before the data: decompress to a scratch file first.
        with tempfile.TemporaryFile(dir=scratch) as tmp:
            diff = hashlib.sha256()
            with open_decompressed(reader) as plain:
                for chunk in iter(lambda: plain.read(CHUNK), b""):
                    diff.update(chunk)
                    tmp.write(chunk)
            reader.read()  # anything after the compressed stream still counts towards the digest
            reader.check()
            if "sha256:" + diff.hexdigest() != layer.diff_id:
                raise DigestMismatch(f"{what} (uncompressed)", layer.diff_id, "sha256:" + diff.hexdigest())
            size = tmp.tell()
            tmp.seek(0)
            tar.addfile(_info(layer.name, size), tmp)


def _legacy_entries(image: Image, layers: list[_LayerFile]) -> tuple[list[tuple[str, bytes | str]], str]:
    """The per-layer directories of the pre-1.10 format, and the id of the top layer.

    Layer ids are the chain ids of the layers (unique for each stack, so ``parent`` links cannot loop);
    docker derives its own ids on load and ignores these when manifest.json is present.
    """
    entries: list[tuple[str, bytes | str]] = []
    config = image.config.to_dict()
    parent = ""
    ids = [split_digest(c)[1] for c in chain_ids([layer.diff_id for layer in layers])]
    for i, (layer, layer_id) in enumerate(zip(layers, ids, strict=True)):
        meta: dict[str, Any] = {"id": layer_id}
        if parent:
            meta["parent"] = parent
        if i == len(layers) - 1:
            meta.update({k: config[k] for k in _LEGACY_CONFIG_KEYS if k in config})
        entries.append((f"{layer_id}/VERSION", b"1.0"))
        entries.append((f"{layer_id}/json", canonical_json(meta)))
        entries.append((f"{layer_id}/layer.tar", f"../{layer.name}"))  # str: a symlink
        parent = layer_id
    return entries, parent


def _repositories(repo_tags: list[str], top_layer: str) -> bytes:
    repos: dict[str, dict[str, str]] = {}
    for ref in repo_tags:
        last_slash = ref.rfind("/")
        colon = ref.rfind(":")
        name, tag = (ref[:colon], ref[colon + 1 :]) if colon > last_slash else (ref, "latest")
        repos.setdefault(name, {})[tag] = top_layer
    return canonical_json(repos)


def write_archive(path: Path, image: Image, repo_tags: Sequence[str] = ()) -> None:
    """Write ``image`` as a docker-archive tarball at ``path``, tagged with ``repo_tags``.

    The archive is written to a temporary file beside ``path`` and renamed over it at the end: a failure (a
    blob that does not match its digest, a full disk) leaves no partial archive. The same image and tags
    always give the same bytes.
    """
    path = Path(path)
    tags = list(dict.fromkeys(normalise_repo_tag(t) for t in repo_tags))
    layers = _plan_layers(image)
    config_name = f"{split_digest(image.manifest.config.digest)[1]}.json"
    if sha256_digest(image.config_bytes) != image.manifest.config.digest:
        raise DigestMismatch("image config", image.manifest.config.digest, sha256_digest(image.config_bytes))
    manifest = [{"Config": config_name, "RepoTags": tags, "Layers": [layer.name for layer in layers]}]

    small: dict[str, bytes | str] = {config_name: image.config_bytes, MANIFEST_FILE: canonical_json(manifest)}
    if layers:
        legacy, top = _legacy_entries(image, layers)
        small.update(legacy)
        if tags:
            small[REPOSITORIES_FILE] = _repositories(tags, top)
    by_name: dict[str, _LayerFile | bytes | str] = {**small, **{layer.name: layer for layer in layers}}
    dirs = sorted({name.split("/")[0] for name in by_name if "/" in name})

    with atomic_file(path) as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted([*by_name, *(d + "/" for d in dirs)]):
            item = by_name.get(name)
            if item is None:
                tar.addfile(_info(name.rstrip("/"), kind=tarfile.DIRTYPE))
            elif isinstance(item, _LayerFile):
                _add_blob(tar, item, image, path.parent)
            elif isinstance(item, str):
                tar.addfile(_info(name, kind=tarfile.SYMTYPE, link=item))
            else:
                tar.addfile(_info(name, len(item)), io.BytesIO(item))


# --- reading -------------------------------------------------------------------------------------------------


class _TemporaryBlobStore(BlobStore):
    """A store in a temporary directory that is removed when the store (and every Image using it) is gone."""

    def __init__(self) -> None:
        super().__init__(Path(tempfile.mkdtemp(prefix="kiln-archive-")))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.root, ignore_errors=True)


class _Archive:
    """The members of an archive by normalised name, links followed inside the archive."""

    def __init__(self, tar: tarfile.TarFile, path: Path) -> None:
        self.tar = tar
        self.path = path
        self.members: dict[str, tarfile.TarInfo] = {}
        for member in tar:
            self.members[self._norm(member.name)] = member

    @staticmethod
    def _norm(name: str) -> str:
        return posixpath.normpath("/" + name).lstrip("/")

    def member(self, name: str) -> tarfile.TarInfo:
        key = self._norm(name)
        for _ in range(_MAX_LINKS):
            info = self.members.get(key)
            if info is None:
                raise ImageFormatError(f"{self.path}: {name} is missing from the archive")
            if info.issym():
                key = self._norm(posixpath.join(posixpath.dirname(key), info.linkname))
            elif info.islnk():
                key = self._norm(info.linkname)
            elif info.isfile():
                return info
            else:
                raise ImageFormatError(f"{self.path}: {name} is not a file in the archive")
        raise ImageFormatError(f"{self.path}: {name}: too many levels of links")

    def open(self, name: str) -> IO[bytes]:
        f = self.tar.extractfile(self.member(name))
        if f is None:
            raise ImageFormatError(f"{self.path}: {name} is not a file in the archive")
        return f

    def read_json_file(self, name: str) -> bytes:
        info = self.member(name)
        if info.size > _MAX_JSON:
            raise ImageFormatError(f"{self.path}: {name} is too big ({info.size} bytes)")
        with self.open(name) as f:
            return f.read()


def _choose_entry(entries: list[Any], tag: str | None, path: Path) -> dict[str, Any]:
    if not entries:
        raise ImageFormatError(f"{path}: {MANIFEST_FILE} lists no image")
    tags_of = [list(e.get("RepoTags") or []) if isinstance(e, dict) else [] for e in entries]
    listed = "; ".join(", ".join(t) or f"@{i} (untagged)" for i, t in enumerate(tags_of))
    if tag is None:
        if len(entries) > 1:
            raise ImageFormatError(f"{path}: holds several images, name one of: {listed}")
        chosen = entries[0]
    elif re.fullmatch(r"@\d+", tag):
        i = int(tag[1:])
        if i >= len(entries):
            raise ImageFormatError(f"{path}: no image {tag} (images: {listed})")
        chosen = entries[i]
    else:
        want = _comparable(tag)
        found = [e for e, tags in zip(entries, tags_of, strict=True) if any(_comparable(t) == want for t in tags)]
        if not found:
            raise ImageFormatError(f"{path}: no image tagged {tag!r} (images: {listed})")
        chosen = found[0]
    if not isinstance(chosen, dict):
        raise ImageFormatError(f"{path}: {MANIFEST_FILE}: an entry is not an object")
    return chosen


def _comparable(ref: str) -> str:
    """A name as docker would normalise it, so ``busybox`` and ``docker.io/library/busybox:latest`` agree."""
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        ref += ":latest"
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


class _Tee:
    """Passes reads through and copies every byte read into ``sink``."""

    def __init__(self, src: IO[bytes], sink: Any) -> None:
        self._src = src
        self._sink = sink

    def read(self, n: int = -1) -> bytes:
        data = self._src.read(n)
        if data:
            self._sink.write(data)
        return data


def _ingest_layer(archive: _Archive, name: str, diff_id: str, store: BlobStore) -> Descriptor:
    """Put one layer file into ``store`` as a gzip blob, checking its content against ``diff_id``."""
    what = f"{archive.path}: layer {name}"
    try:
        return _ingest_layer_file(archive, name, diff_id, store, what)
    except DigestMismatch:
        raise
    except ImageFormatError as e:
        if str(archive.path) in str(e):
            raise
        raise ImageFormatError(f"{what}: {e}") from e


def _ingest_layer_file(archive: _Archive, name: str, diff_id: str, store: BlobStore, what: str) -> Descriptor:
    with archive.open(name) as f:
        kind = sniff_compression(f.read(6))
        f.seek(0)
        diff = hashlib.sha256()
        with store.writer() as w:
            if kind == "gzip":
                # Kept byte for byte; decompressed on the side only to check the diff_id.
                tee = _Tee(f, w)
                with open_decompressed(tee) as plain:
                    for chunk in iter(lambda: plain.read(CHUNK), b""):
                        diff.update(chunk)
                while tee.read(CHUNK):
                    pass
            else:
                with open_decompressed(f) as plain:
                    # The compressor only ever hands bytes on, which is all BlobWriter.write takes.
                    gz = CompressingWriter(cast(Writable, w), "gzip")
                    for chunk in iter(lambda: plain.read(CHUNK), b""):
                        diff.update(chunk)
                        gz.write(chunk)
                    gz.close()
            actual = "sha256:" + diff.hexdigest()
            if actual != diff_id:
                raise DigestMismatch(f"{what} (uncompressed)", diff_id, actual)
            assert w.hash is not None  # a hashed writer
            size = w.hash.size
            digest = w.commit()
    return Descriptor(mt.DOCKER_LAYER_GZIP, digest, size)


def _config_matches_name(name: str, config_bytes: bytes) -> bool:
    stem = posixpath.basename(name).removesuffix(".json")
    return not _HEX64.match(stem) or sha256_digest(config_bytes) == f"sha256:{stem}"


def read_archive(path: Path, tag: str | None = None, *, store: BlobStore | None = None) -> Image:
    """The image ``tag`` names in a docker-archive (None: the only one; ``@N``: the N-th).

    Layer blobs are put in ``store`` (a temporary store, removed with the image, when None). The result is a
    Docker schema 2 image over gzip blobs whose diff_ids have been checked against its config.
    """
    path = Path(path)
    try:
        with tarfile.open(path, "r:*") as tar:
            archive = _Archive(tar, path)
            return _read(archive, tag, store)
    except FileNotFoundError:
        raise ImageFormatError(f"{path}: no such archive") from None
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ImageFormatError(f"{path}: corrupt or unreadable docker-archive: {e}") from None


def _read(archive: _Archive, tag: str | None, store: BlobStore | None) -> Image:
    path = archive.path
    if MANIFEST_FILE not in archive.members:
        raise ImageFormatError(f"{path}: no {MANIFEST_FILE} (not a docker-archive, or docker's pre-1.10 format)")
    try:
        entries = json.loads(archive.read_json_file(MANIFEST_FILE))
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageFormatError(f"{path}: {MANIFEST_FILE}: not valid JSON: {e}") from None
    if not isinstance(entries, list):
        raise ImageFormatError(f"{path}: {MANIFEST_FILE}: expected a list")
    entry = _choose_entry(entries, tag, path)
    config_name, layer_names = entry.get("Config"), entry.get("Layers")
    if not isinstance(config_name, str) or not isinstance(layer_names, list):
        raise ImageFormatError(f"{path}: {MANIFEST_FILE}: an entry lacks Config or Layers")
    config_bytes = archive.read_json_file(config_name)
    if not _config_matches_name(config_name, config_bytes):
        raise DigestMismatch(f"{path}: {config_name}", f"sha256:{posixpath.basename(config_name)[:64]}",
                             sha256_digest(config_bytes))  # fmt: skip
    config = ImageConfig.from_bytes(config_bytes, f"{path}: {config_name}")
    if len(layer_names) != len(config.diff_ids):
        raise ImageFormatError(
            f"{path}: {len(layer_names)} layers but {len(config.diff_ids)} diff_ids in {config_name}"
        )
    store = store if store is not None else _TemporaryBlobStore()
    layers = tuple(
        _ingest_layer(archive, str(name), diff_id, store)
        for name, diff_id in zip(layer_names, config.diff_ids, strict=True)
    )
    config_desc = Descriptor(mt.DOCKER_CONFIG, store.put_bytes(config_bytes), len(config_bytes))
    manifest = Manifest(config_desc, layers, mt.DOCKER_MANIFEST)
    manifest_bytes = manifest.to_bytes()
    store.put_bytes(manifest_bytes)
    return Image(manifest, manifest_bytes, config, config_bytes, store)
