"""Faults a real registry does not make, injected by a proxy in front of it: each ends in success after retries
or in a RegistryError naming the reference, and never leaves a corrupt blob in the store.

Layers arrive after pull_image returns (a build reads each as it downloads): their faults reach whoever reads
them, so the tests read every layer (pull_and_read) as a build does."""

from __future__ import annotations

from pathlib import Path

import pytest
from faultproxy import Fault

from conftest import make_image
from kiln.errors import DigestMismatch, RegistryError
from kiln.oci.platform import Platform
from kiln.transports.blobstore import BlobStore
from kiln.transports.image import Image
from kiln.transports.registry.options import RegistryOptions
from kiln.transports.registry.pull import pull_image
from kiln.transports.registry.push import push_image

AMD64 = Platform("linux", "amd64")


def pull_and_read(ref: str, store: BlobStore, opts: RegistryOptions) -> Image:
    """Pull, then read every layer from the store, as a build that unpacks them does."""
    image = pull_image(ref, AMD64, store, opts)
    for layer in image.layers:
        store.read_bytes(layer.digest)
    return image


def store_files(store: BlobStore) -> list[Path]:
    return [p for p in store.root.rglob("*") if p.is_file()]


def assert_store_sound(store: BlobStore) -> None:
    import hashlib

    for path in store_files(store):
        assert ".tmp" not in path.parts, f"temporary file left: {path}"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name


@pytest.fixture
def pushed(registry, plain_opts):
    made = make_image({"fault.txt": b"faults " * 5000}, layers=2)
    repo = f"kiln/faults-{made.image.digest[7:19]}"
    push_image(made.image, [registry.ref(repo, "t")], plain_opts)
    return made, repo


def layer_path(made) -> str:
    return f"/blobs/{made.image.layers[0].digest}"


def test_corrupt_blob_is_refused(fault_proxy, pushed, plain_opts, store) -> None:
    made, repo = pushed
    fault_proxy.add(Fault("GET", layer_path(made), "corrupt", times=99))
    ref = f"{fault_proxy.address}/{repo}:t"
    with pytest.raises(RegistryError) as info:
        pull_and_read(ref, store, plain_opts)
    assert isinstance(info.value, DigestMismatch)
    assert ref in str(info.value) and made.image.layers[0].digest in str(info.value)
    assert not store.has(made.image.layers[0].digest)
    assert store.has(made.image.layers[1].digest)  # (waits for it: the other layer is sound and kept)
    assert_store_sound(store)


def test_corrupt_manifest_by_digest_is_refused(fault_proxy, pushed, plain_opts, store) -> None:
    made, repo = pushed
    fault_proxy.add(Fault("GET", f"/manifests/{made.image.digest}", "corrupt"))
    with pytest.raises(RegistryError) as info:
        pull_image(f"{fault_proxy.address}/{repo}@{made.image.digest}", AMD64, store, plain_opts)
    assert "digest mismatch" in str(info.value)


def test_dropped_connection_is_retried(fault_proxy, pushed, plain_opts, store) -> None:
    made, repo = pushed
    fault_proxy.add(Fault("GET", layer_path(made), "drop", times=2))
    image = pull_and_read(f"{fault_proxy.address}/{repo}:t", store, plain_opts)
    assert image.digest == made.image.digest
    gets = [s for m, p, s in fault_proxy.seen if m == "GET" and layer_path(made) in p]
    assert len(gets) == 3
    assert store.read_bytes(made.image.layers[0].digest) == made.blobs[made.image.layers[0].digest]
    assert_store_sound(store)


def test_dropped_connection_every_time_fails_cleanly(fault_proxy, pushed, plain_opts, store) -> None:
    made, repo = pushed
    fault_proxy.add(Fault("GET", layer_path(made), "drop", times=99))
    ref = f"{fault_proxy.address}/{repo}:t"
    with pytest.raises(RegistryError) as info:
        pull_and_read(ref, store, plain_opts)
    assert ref in str(info.value) and "3 tries" in str(info.value)
    assert not store.has(made.image.layers[0].digest)
    assert_store_sound(store)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_then_success_on_pull(fault_proxy, pushed, plain_opts, store, status: int) -> None:
    made, repo = pushed
    fault_proxy.add(Fault("GET", "/manifests/t", "status", status=status, times=2))
    fault_proxy.add(Fault("GET", layer_path(made), "status", status=status, times=2))
    image = pull_image(f"{fault_proxy.address}/{repo}:t", AMD64, store, plain_opts)
    assert image.digest == made.image.digest
    statuses = [s for m, p, s in fault_proxy.seen if m == "GET" and "/manifests/t" in p]
    assert statuses == [status, status, 200]


def test_retry_after_is_honoured(fault_proxy, pushed, plain_opts, store) -> None:
    made, repo = pushed
    fault_proxy.add(Fault("GET", "/manifests/t", "status", status=429, headers={"Retry-After": "1"}, times=1))
    import time

    started = time.monotonic()
    pull_image(f"{fault_proxy.address}/{repo}:t", AMD64, store, plain_opts)
    assert time.monotonic() - started >= 1.0


def test_server_errors_beyond_retries_fail(fault_proxy, pushed, plain_opts, store) -> None:
    made, repo = pushed
    fault_proxy.add(Fault("GET", "/manifests/t", "status", status=500, times=3))
    ref = f"{fault_proxy.address}/{repo}:t"
    with pytest.raises(RegistryError) as info:
        pull_image(ref, AMD64, store, plain_opts)
    assert info.value.status == 500 and ref in str(info.value)
    # --image-download-retry adds tries: the same faults are then survived.
    fault_proxy.add(Fault("GET", "/manifests/t", "status", status=500, times=3))
    opts = RegistryOptions(insecure=True, docker_config=plain_opts.docker_config, retry_backoff=0.01,
                           image_download_retry=1)  # fmt: skip
    assert pull_image(ref, AMD64, store, opts).digest == made.image.digest


def test_push_survives_server_errors(fault_proxy, plain_opts) -> None:
    made = make_image({"push-fault.txt": b"push faults\n"}, layers=2)
    fault_proxy.add(Fault("POST", "/blobs/uploads/", "status", status=503, times=2))
    fault_proxy.add(Fault("PUT", "/blobs/uploads/", "status", status=500, times=1))
    fault_proxy.add(Fault("PUT", "/manifests/", "status", status=502, times=1))
    ref = f"{fault_proxy.address}/kiln/push-faults:t"
    assert push_image(made.image, [ref], plain_opts) == made.image.digest
    assert [s for m, p, s in fault_proxy.seen if m == "PUT" and "/manifests/" in p] == [502, 201]


def test_push_that_keeps_failing_is_not_success(fault_proxy, registry, plain_opts) -> None:
    made = make_image({"push-fail.txt": b"push fails\n"})
    fault_proxy.add(Fault("PUT", "/blobs/uploads/", "status", status=500, times=99))
    ref = f"{fault_proxy.address}/kiln/push-fails:t"
    with pytest.raises(RegistryError) as info:
        push_image(made.image, [ref], plain_opts)
    assert ref in str(info.value)
    assert not [p for m, p, _ in fault_proxy.seen if m == "PUT" and "/manifests/" in p]
    status, _, _ = registry.get("/v2/kiln/push-fails/manifests/t")
    assert status == 404


def test_layers_are_fetched_concurrently(fault_proxy, registry, plain_opts, store) -> None:
    made = make_image({"concurrent.txt": b"in parallel\n"}, layers=4)
    push_image(made.image, [registry.ref("kiln/concurrent", "t")], plain_opts)
    fault_proxy.add(Fault("GET", "/blobs/sha256:", "delay", seconds=0.4, times=99))
    pull_image(f"{fault_proxy.address}/kiln/concurrent:t", AMD64, store, plain_opts)
    for layer in made.image.layers:
        assert store.read_bytes(layer.digest) == made.blobs[layer.digest]
    assert fault_proxy.max_in_flight >= 2
