"""Small images made by hand for the layout and archive tests: layers tarred with Python's tarfile and
compressed with the standard library (or zstandard), independent of kiln's own tar and compression code."""

from __future__ import annotations

import gzip
import io
import tarfile
from dataclasses import dataclass, field
from typing import BinaryIO

import zstandard

from kiln.oci import mediatypes as mt
from kiln.oci.config import ContainerConfig, History, ImageConfig
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import sha256_digest
from kiln.oci.manifest import Manifest
from kiln.transports.image import Image


class DictBlobs:
    """A BlobReader over blobs held in memory, keyed by digest."""

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        return io.BytesIO(self.blobs[desc.digest])


@dataclass(frozen=True)
class Entry:
    """One tar entry: a file (content), a directory (content None, is_dir), a symlink (link)."""

    path: str
    content: bytes | None = None
    mode: int = 0o644
    link: str = ""
    is_dir: bool = False
    uid: int = 0
    gid: int = 0


def tar_bytes(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.path)
            info.mode = e.mode
            info.uid, info.gid = e.uid, e.gid
            info.mtime = 1_700_000_000
            if e.is_dir:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif e.link:
                info.type = tarfile.SYMTYPE
                info.linkname = e.link
                tar.addfile(info)
            else:
                data = e.content or b""
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    assert compression == "none"
    return data


@dataclass
class HandImage:
    image: Image
    tars: list[bytes]  # the uncompressed tar of each layer, base first
    blobs: dict[str, bytes] = field(default_factory=dict)


def make_image(
    layers: list[list[Entry]],
    *,
    compression: str = "gzip",
    docker: bool = False,
    arch: str = "amd64",
    env: tuple[str, ...] = ("PATH=/usr/bin:/bin",),
    cmd: tuple[str, ...] = ("/bin/sh",),
    label: str = "",
) -> HandImage:
    tars = [tar_bytes(entries) for entries in layers]
    blobs: dict[str, bytes] = {}
    descs = []
    for tar in tars:
        blob = compress(tar, compression)
        blobs[sha256_digest(blob)] = blob
        descs.append(Descriptor(mt.layer_media_type(compression, docker), sha256_digest(blob), len(blob)))
    config = ImageConfig(
        architecture=arch,
        os="linux",
        created="2024-01-02T03:04:05Z",
        config=ContainerConfig(env=env, cmd=cmd, labels={"test": label} if label else {}),
        diff_ids=tuple(sha256_digest(t) for t in tars),
        history=tuple(History(created="2024-01-02T03:04:05Z", created_by=f"layer {i}") for i in range(len(tars))),
    )
    config_bytes = config.to_bytes()
    blobs[sha256_digest(config_bytes)] = config_bytes
    manifest = Manifest(
        Descriptor(mt.config_media_type(docker), sha256_digest(config_bytes), len(config_bytes)),
        tuple(descs),
        mt.manifest_media_type(docker),
    )
    manifest_bytes = manifest.to_bytes()
    image = Image(manifest, manifest_bytes, config, config_bytes, DictBlobs(blobs))
    return HandImage(image, tars, blobs)


BASE_LAYER = [
    Entry("etc", is_dir=True, mode=0o755),
    Entry("etc/hostname", b"kiln-test\n"),
    Entry("etc/motd", b"to be deleted\n"),
    Entry("bin", is_dir=True, mode=0o755),
    Entry("bin/hello", b"#!/bin/sh\necho hello\n", mode=0o755),
    Entry("bin/hi", link="hello"),
]
TOP_LAYER = [
    Entry("etc", is_dir=True, mode=0o755),
    Entry("etc/.wh.motd"),
    Entry("etc/hostname", b"changed\n"),
    Entry("srv", is_dir=True, mode=0o750, uid=1000, gid=1000),
    Entry("srv/data.bin", bytes(range(256)) * 64, mode=0o600, uid=1000, gid=1000),
]


def two_layer_image(**kwargs: object) -> HandImage:
    return make_image([BASE_LAYER, TOP_LAYER], **kwargs)  # type: ignore[arg-type]


# What the two layers above give once applied, whiteout honoured: path -> (kind, mode, uid, content or target).
TWO_LAYER_ROOTFS = {
    "etc": ("dir", 0o755, 0, None),
    "etc/hostname": ("file", 0o644, 0, b"changed\n"),
    "bin": ("dir", 0o755, 0, None),
    "bin/hello": ("file", 0o755, 0, b"#!/bin/sh\necho hello\n"),
    "bin/hi": ("symlink", 0o777, 0, "hello"),
    "srv": ("dir", 0o750, 1000, None),
    "srv/data.bin": ("file", 0o600, 1000, bytes(range(256)) * 64),
}
