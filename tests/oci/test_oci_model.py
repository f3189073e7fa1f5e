"""The image model: digests, descriptors, manifests, indexes, configs and the blob store."""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiln.errors import DigestMismatch, ImageFormatError, UsageError
from kiln.oci import mediatypes as mt
from kiln.oci.config import ImageConfig, chain_ids
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import sha256_digest, validate_digest
from kiln.oci.manifest import Index, Manifest
from kiln.oci.platform import Platform
from kiln.transports.blobstore import BlobStore

HEX = "a" * 64


def test_digest_validation() -> None:
    assert validate_digest("sha256:" + HEX)
    for bad in ("sha256:" + "A" * 64, "sha256:abc", "md5:" + HEX, "sha256" + HEX, "sha256:../../etc"):
        with pytest.raises(ImageFormatError):
            validate_digest(bad)


def test_manifest_bytes_are_what_is_hashed() -> None:
    layer = Descriptor(mt.OCI_LAYER_GZIP, "sha256:" + "b" * 64, 5)
    m = Manifest(Descriptor(mt.OCI_CONFIG, "sha256:" + HEX, 10), (layer,))
    data = m.to_bytes()
    assert Manifest.from_bytes(data) == m
    assert Manifest.from_bytes(data).to_bytes() == data
    parsed = json.loads(data)
    assert parsed["schemaVersion"] == 2 and parsed["layers"][0]["size"] == 5
    assert sha256_digest(data) == "sha256:" + hashlib.sha256(data).hexdigest()


def test_docker_manifest_and_index_round_trip() -> None:
    raw = json.dumps({
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST_LIST,
        "manifests": [{"mediaType": mt.DOCKER_MANIFEST, "digest": "sha256:" + HEX, "size": 7,
                       "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}}],
    }).encode()
    idx = Index.from_bytes(raw)
    assert idx.media_type == mt.DOCKER_MANIFEST_LIST
    assert idx.manifests[0].platform == Platform("linux", "arm64", "v8")


def test_manifest_refuses_an_index_and_bad_json() -> None:
    with pytest.raises(ImageFormatError):
        Manifest.from_bytes(b'{"schemaVersion":2,"mediaType":"' + mt.OCI_INDEX.encode() + b'","layers":[]}')
    with pytest.raises(ImageFormatError):
        Manifest.from_bytes(b"{not json")


def test_config_keeps_unknown_fields_and_history() -> None:
    raw = {
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z", "docker_version": "x",
        "config": {"Env": ["PATH=/bin", "A=b=c"], "Cmd": ["sh"], "ExposedPorts": {"80/tcp": {}}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + HEX]},
        "history": [{"created_by": "x", "empty_layer": True}],
    }
    cfg = ImageConfig.from_bytes(json.dumps(raw).encode())
    assert cfg.config.env_dict() == {"PATH": "/bin", "A": "b=c"}
    assert cfg.history[0].empty_layer
    again = json.loads(cfg.to_bytes())
    assert again["docker_version"] == "x"
    assert again["config"]["ExposedPorts"] == {"80/tcp": {}}
    assert cfg.config.with_env("PATH", "/usr/bin").env == ("PATH=/usr/bin", "A=b=c")


def test_chain_ids_by_hand() -> None:
    a, b = "sha256:" + HEX, "sha256:" + "b" * 64
    assert chain_ids([a, b]) == [a, "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()]


@pytest.mark.parametrize(
    ("text", "want"),
    [("linux/amd64", "linux/amd64"), ("linux/arm64/v8", "linux/arm64"), ("arm", "linux/arm/v7"),
     ("Linux/X86_64", "linux/amd64")],
)
def test_platform_parse(text: str, want: str) -> None:
    assert str(Platform.parse(text)) == want


def test_an_os_alone_is_that_os_on_this_machines_architecture() -> None:
    # containerd's rule (docker build --platform linux): not an architecture named "linux".
    host = platform.machine().lower()
    assert Platform.parse("linux").architecture == {"x86_64": "amd64", "aarch64": "arm64"}.get(host, host)
    assert Platform.parse("linux").os == "linux"


def test_platform_parse_error() -> None:
    with pytest.raises(UsageError):
        Platform.parse("linux/")


def test_blobstore_verifies_and_leaves_nothing_on_mismatch(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "s")
    good = b"hello"
    digest = sha256_digest(good)
    with pytest.raises(DigestMismatch):
        store.ingest([b"hellO"], digest)
    assert not store.has(digest)
    assert list((tmp_path / "s" / ".tmp").iterdir()) == []
    store.ingest([b"hel", b"lo"], digest)
    assert store.read_bytes(digest) == good


@given(st.binary(max_size=4096))
def test_blobstore_put_bytes_is_content_addressed(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        store = BlobStore(Path(d))
        digest = store.put_bytes(data)
        assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
        assert store.put_bytes(data) == digest
        assert store.read_bytes(digest) == data
