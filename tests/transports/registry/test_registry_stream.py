"""A pulled layer unpacked while it downloads (the build's cold path): what a bad download leaves behind.

pull_image returns before the layers have arrived; the layer store extracts each from the blob store as it
grows. A blob that turns out corrupt must leave nothing usable in either store, and a dropped connection is
resumed where it stopped rather than started over.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from faultproxy import Fault

from conftest import make_image
from kiln.errors import DigestMismatch, ImageFormatError, RegistryError
from kiln.oci.config import chain_ids
from kiln.oci.platform import Platform
from kiln.store.layerstore import LayerStore
from kiln.transports.blobstore import BlobStore
from kiln.transports.registry.options import RegistryOptions
from kiln.transports.registry.pull import pull_image

AMD64 = Platform("linux", "amd64")


def unpack(image, blobs: BlobStore, layers: LayerStore) -> list[Path]:  # type: ignore[no-untyped-def]
    """What a build's overlay root does with a pulled image: its layers, extracted from the blob store."""
    pairs = image.layer_diff_ids()
    return layers.chain([d for _, d in pairs], [lambda desc=desc: blobs.open(desc.digest) for desc, _ in pairs])


def nothing_left(blobs: BlobStore, layers: LayerStore, digest: str, root: Path) -> None:
    assert not blobs.has(digest)
    assert not [p for p in (blobs.root / ".tmp").iterdir()], "a temporary blob was left"
    assert layers.chain_ids() == []
    assert not [p for p in (root / "layers" / "tmp").iterdir()], "an extraction was left"


@pytest.fixture
def stores(tmp_path: Path) -> tuple[BlobStore, LayerStore]:
    return BlobStore(tmp_path / "blobs"), LayerStore(tmp_path / "layers")


def content(name: str) -> bytes:
    # 4 MB: the proxy's "drop" cuts it after more than one chunk has arrived, so the download resumes mid-way.
    return hashlib.sha256(name.encode()).digest() * 125_000


def _pushed(registry, plain_opts: RegistryOptions, name: str):  # type: ignore[no-untyped-def]
    from kiln.transports.registry.push import push_image

    made = make_image({f"{name}.bin": content(name)})
    repo = f"kiln/stream-{made.image.digest[7:19]}"
    push_image(made.image, [registry.ref(repo, "t")], plain_opts)
    return made, repo


@pytest.mark.parametrize("kind", ["corrupt", "corrupt-tail"])
def test_a_corrupt_layer_leaves_nothing_in_either_store(
    fault_proxy, registry, plain_opts: RegistryOptions, stores, tmp_path: Path, kind: str
) -> None:  # type: ignore[no-untyped-def]
    blobs, layers = stores
    made, repo = _pushed(registry, plain_opts, kind)
    digest = made.image.layers[0].digest
    fault_proxy.add(Fault("GET", f"/blobs/{digest}", kind, times=99))
    image = pull_image(f"{fault_proxy.address}/{repo}:t", AMD64, blobs, plain_opts)
    with pytest.raises(ImageFormatError) as info:
        unpack(image, blobs, layers)
    if kind == "corrupt-tail":  # a readable tar to its end: the digest, checked at the blob's end, refuses it
        assert isinstance(info.value, DigestMismatch) and isinstance(info.value, RegistryError)
        assert digest in str(info.value) and fault_proxy.address in str(info.value)
    nothing_left(blobs, layers, digest, tmp_path)


def test_a_sound_layer_is_kept_in_both_stores(registry, plain_opts: RegistryOptions, stores) -> None:  # type: ignore[no-untyped-def]
    blobs, layers = stores
    made, repo = _pushed(registry, plain_opts, "sound")
    image = pull_image(registry.ref(repo, "t"), AMD64, blobs, plain_opts)
    [path] = unpack(image, blobs, layers)
    assert (path / "sound.bin").read_bytes() == content("sound")
    digest = made.image.layers[0].digest
    assert blobs.read_bytes(digest) == made.blobs[digest]
    assert layers.chain_ids() == chain_ids([d for _, d in image.layer_diff_ids()])[-1:]


def test_a_dropped_layer_download_is_resumed(fault_proxy, registry, plain_opts: RegistryOptions, stores) -> None:  # type: ignore[no-untyped-def]
    blobs, layers = stores
    made, repo = _pushed(registry, plain_opts, "resumed")
    digest = made.image.layers[0].digest
    fault_proxy.add(Fault("GET", f"/blobs/{digest}", "drop", times=1))
    image = pull_image(f"{fault_proxy.address}/{repo}:t", AMD64, blobs, plain_opts)
    [path] = unpack(image, blobs, layers)
    assert [s for m, p, s in fault_proxy.seen if m == "GET" and digest in p] == [200, 206]
    assert blobs.read_bytes(digest) == made.blobs[digest]
    assert (path / "resumed.bin").read_bytes() == content("resumed")
