"""Fixtures for the registry transport: images made by hand, a token service, a faulting proxy, options."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from faultproxy import FaultProxy  # noqa: E402
from tokenservice import TokenService  # noqa: E402

from kiln.oci import mediatypes as mt  # noqa: E402
from kiln.oci.config import ImageConfig  # noqa: E402
from kiln.oci.descriptor import Descriptor  # noqa: E402
from kiln.oci.digest import sha256_digest  # noqa: E402
from kiln.oci.manifest import Manifest  # noqa: E402
from kiln.transports.blobstore import BlobStore  # noqa: E402
from kiln.transports.image import Image  # noqa: E402
from kiln.transports.registry.options import RegistryOptions  # noqa: E402


class DictBlobs:
    """A BlobReader over blobs held in memory, keyed by digest."""

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs
        self.opened: list[str] = []

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        self.opened.append(desc.digest)
        return io.BytesIO(self.blobs[desc.digest])


def tar_layer(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1704067200
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@dataclass(frozen=True)
class MadeImage:
    image: Image
    blobs: dict[str, bytes]


def make_image(files: dict[str, bytes], arch: str = "amd64", docker: bool = False, layers: int = 1) -> MadeImage:
    """A small image built by hand (tarfile + hashlib), independent of kiln's own writers."""
    blobs: dict[str, bytes] = {}
    descs, diff_ids = [], []
    for i in range(layers):
        layer = tar_layer({f"{name}.{i}" if i else name: data for name, data in files.items()})
        digest = "sha256:" + hashlib.sha256(layer).hexdigest()
        blobs[digest] = layer
        descs.append(Descriptor(mt.OCI_LAYER if not docker else mt.DOCKER_LAYER_GZIP, digest, len(layer)))
        diff_ids.append(digest)
    config_bytes = json.dumps(
        {"architecture": arch, "os": "linux", "config": {"Env": ["A=1"]},
         "rootfs": {"type": "layers", "diff_ids": diff_ids}},
        sort_keys=True,
    ).encode()  # fmt: skip
    config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    blobs[config_digest] = config_bytes
    media = mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": media,
        "config": {"mediaType": mt.config_media_type(docker), "digest": config_digest, "size": len(config_bytes)},
        "layers": [d.to_dict() for d in descs],
    }
    manifest_bytes = json.dumps(manifest_doc, indent=2).encode()
    manifest = Manifest.from_bytes(manifest_bytes)
    image = Image(manifest, manifest_bytes, ImageConfig.from_bytes(config_bytes), config_bytes, DictBlobs(blobs))
    assert image.digest == sha256_digest(manifest_bytes)
    return MadeImage(image, blobs)


@pytest.fixture
def made_image() -> MadeImage:
    return make_image({"hello.txt": b"hello from kiln\n", "data.bin": bytes(range(256)) * 40})


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "store")


@pytest.fixture
def plain_opts(tmp_path: Path) -> RegistryOptions:
    """Plain HTTP everywhere, a config.json that does not exist, quick retries."""
    return RegistryOptions(insecure=True, docker_config=tmp_path / "no-docker-config.json", retry_backoff=0.01)


@pytest.fixture(scope="session")
def token_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenService]:
    service = TokenService(tmp_path_factory.mktemp("token"), "tokenuser", "token-secret-pass-9f3a")
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def token_registry(registry_factory, token_service: TokenService):
    """A plain-HTTP registry whose auth is Bearer tokens from token_service."""
    return registry_factory.start(name="token", extra_config=token_service.registry_config())


@pytest.fixture
def fault_proxy(registry) -> Iterator[FaultProxy]:
    proxy = FaultProxy(registry.url)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
