"""Mirrors against real registries: a Docker Hub name served by a local mirror, and one mirror failing first."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import make_image
from kiln.errors import RegistryError
from kiln.oci.platform import Platform
from kiln.transports.registry.options import RegistryOptions
from kiln.transports.registry.pull import pull_image
from kiln.transports.registry.sources import BlobOrigin, StoreBlobs

AMD64 = Platform("linux", "amd64")


def test_docker_hub_name_from_mirrors(registry, registry_factory, plain_opts, store, tmp_path: Path) -> None:
    from kiln.transports.registry.push import push_image

    made = make_image({"mirror.txt": b"mirrored\n"})
    # What a pull-through cache of Docker Hub under the prefix "hub" holds for "kiln-mirror-test:1".
    push_image(made.image, [f"{registry.address}/hub/library/kiln-mirror-test:1"], plain_opts)
    empty = registry_factory.start(name="empty-mirror")
    opts = RegistryOptions(
        insecure=True,
        docker_config=tmp_path / "none.json",
        retry_backoff=0.01,
        registry_mirrors=(empty.address,),
        registry_maps={"docker.io": (f"{registry.address}/hub",)},
        skip_default_registry_fallback=True,  # docker.io itself is out of reach here: never try it
    )
    mark = empty.log_mark()
    image = pull_image("kiln-mirror-test:1", AMD64, store, opts)
    assert image.digest == made.image.digest
    # registry-map entries come first, then registry-mirror ones; the empty mirror was not needed.
    assert empty.requests_since(mark) == []
    assert isinstance(image.blobs, StoreBlobs)
    assert image.blobs.blob_origin(made.image.layers[0].digest) == BlobOrigin(
        registry.address, "hub/library/kiln-mirror-test"
    )

    opts2 = RegistryOptions(
        insecure=True, docker_config=tmp_path / "none.json", retry_backoff=0.01,
        registry_mirrors=(empty.address, f"{registry.address}/hub"), skip_default_registry_fallback=True,
    )  # fmt: skip
    mark = empty.log_mark()
    assert pull_image("kiln-mirror-test:1", AMD64, store, opts2).digest == made.image.digest
    assert [(m, s) for m, _, s in empty.requests_since(mark)] == [("GET", 404)]


def test_all_mirrors_fail(registry_factory, store, tmp_path: Path) -> None:
    empty = registry_factory.start(name="empty-mirror-2")
    opts = RegistryOptions(
        insecure=True, docker_config=tmp_path / "none.json", retry_backoff=0.01,
        registry_mirrors=(empty.address, f"{empty.address}/other"), skip_default_registry_fallback=True,
    )  # fmt: skip
    with pytest.raises(RegistryError) as info:
        pull_image("kiln-nowhere:1", AMD64, store, opts)
    text = str(info.value)
    assert "docker.io/library/kiln-nowhere:1" in text
    assert f"{empty.address}/library/kiln-nowhere:1" in text and f"{empty.address}/other/library/kiln-nowhere:1" in text
