"""Push and pull against a real docker-registry, checked with skopeo as the other implementation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import requests

from conftest import make_image
from kiln.errors import RegistryError
from kiln.oci import mediatypes as mt
from kiln.oci.platform import Platform
from kiln.transports.blobstore import BlobStore
from kiln.transports.registry.pull import fetch_image_index, pull_image, resolve
from kiln.transports.registry.push import push_image
from support.images import blob_path, read_blob_json
from support.procs import run, run_text

AMD64 = Platform("linux", "amd64")


def blob_gets(registry, mark: int) -> list[str]:
    return [uri for method, uri, _ in registry.requests_since(mark) if method == "GET" and "/blobs/" in uri]


def test_push_then_skopeo_reads_it(registry, made_image, plain_opts, tmp_path: Path) -> None:
    ref = registry.ref("kiln/roundtrip", "v1")
    digest = push_image(made_image.image, [ref], plain_opts)
    expected = "sha256:" + hashlib.sha256(made_image.image.manifest_bytes).hexdigest()
    assert digest == expected
    inspect = json.loads(run_text(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"]))
    assert inspect["Digest"] == expected
    assert inspect["Architecture"] == "amd64"
    assert inspect["Env"] == ["A=1"]
    layout = tmp_path / "layout"
    run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--preserve-digests",
            "--src-tls-verify=false",
            f"docker://{ref}",
            f"oci:{layout}:t",
        ]
    )
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == expected
    manifest = read_blob_json(layout, expected)
    for layer in manifest["layers"]:
        data = blob_path(layout, layer["digest"]).read_bytes()
        assert data == made_image.blobs[layer["digest"]]


def test_push_under_several_tags_and_pull_back(registry, made_image, plain_opts, store) -> None:
    refs = [registry.ref("kiln/tags", "a"), registry.ref("kiln/tags", "b")]
    digest = push_image(made_image.image, refs, plain_opts)
    for ref in refs:
        assert resolve(ref, plain_opts).digest == digest
    image = pull_image(refs[1], AMD64, store, plain_opts)
    assert image.manifest_bytes == made_image.image.manifest_bytes
    assert image.config_bytes == made_image.image.config_bytes
    for layer in image.layers:
        with image.blobs.open_blob(layer) as f:
            assert f.read() == made_image.blobs[layer.digest]


def test_pull_image_pushed_by_skopeo(registry, busybox_image, plain_opts, store) -> None:
    ref = registry.ref("kiln/from-skopeo", "1")
    run(["skopeo", "copy", "--quiet", *registry.skopeo_flags("dest"), busybox_image.ref, f"docker://{ref}"])
    inspect = json.loads(run_text(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"]))
    image = pull_image(ref, AMD64, store, plain_opts)
    assert image.digest == inspect["Digest"]
    assert [layer.digest for layer in image.layers] == inspect["Layers"]
    for layer in image.layers:
        assert hashlib.sha256(store.path(layer.digest).read_bytes()).hexdigest() == layer.digest.split(":")[1]
    # Pinned by digest, and by tag+digest, gives the same image.
    name = ref.rsplit(":", 1)[0]
    assert pull_image(f"{name}@{inspect['Digest']}", AMD64, store, plain_opts).digest == inspect["Digest"]
    assert pull_image(f"{ref}@{inspect['Digest']}", AMD64, store, plain_opts).digest == inspect["Digest"]


def test_second_pull_downloads_no_blobs(registry, made_image, plain_opts, tmp_path: Path) -> None:
    made = make_image({"second.txt": b"pulled twice\n"}, layers=3)
    ref = registry.ref("kiln/twice", "t")
    push_image(made.image, [ref], plain_opts)
    store = BlobStore(tmp_path / "s")
    mark = registry.log_mark()
    pull_image(ref, AMD64, store, plain_opts)
    first = blob_gets(registry, mark)
    assert len(first) == 4  # three layers and the config
    mark = registry.log_mark()
    image = pull_image(ref, AMD64, store, plain_opts)
    assert blob_gets(registry, mark) == []
    assert image.digest == made.image.digest


def test_second_push_uploads_nothing(registry, plain_opts) -> None:
    made = make_image({"again.txt": b"pushed twice\n"})
    ref = registry.ref("kiln/pushtwice", "t")
    push_image(made.image, [ref], plain_opts)
    mark = registry.log_mark()
    push_image(made.image, [ref], plain_opts)
    methods = [(m, uri) for m, uri, _ in registry.requests_since(mark)]
    assert not [x for x in methods if x[0] in ("POST", "PATCH") or (x[0] == "PUT" and "/blobs/" in x[1])]
    assert ("PUT", "/v2/kiln/pushtwice/manifests/t") in methods


def test_chunked_upload(registry, tmp_path: Path) -> None:
    import random

    payload = random.Random(7).randbytes(300_000)
    made = make_image({"big.bin": payload})
    from kiln.transports.registry.options import RegistryOptions

    opts = RegistryOptions(
        insecure=True, docker_config=tmp_path / "none.json", chunk_threshold=100_000, chunk_size=64 * 1024
    )
    ref = registry.ref("kiln/chunked", "t")
    mark = registry.log_mark()
    push_image(made.image, [ref], opts)
    patches = [uri for m, uri, _ in registry.requests_since(mark) if m == "PATCH"]
    layer = made.image.layers[0]
    assert len(patches) == -(-layer.size // (64 * 1024))
    layout = tmp_path / "layout"
    run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--preserve-digests",
            "--src-tls-verify=false",
            f"docker://{ref}",
            f"oci:{layout}:t",
        ]
    )
    data = blob_path(layout, layer.digest).read_bytes()
    assert hashlib.sha256(data).hexdigest() == layer.digest.split(":")[1]
    assert data == made.blobs[layer.digest]


def test_missing_manifest_is_a_registry_error(registry, plain_opts, store) -> None:
    ref = registry.ref("kiln/nothing-here", "nope")
    with pytest.raises(RegistryError) as info:
        pull_image(ref, AMD64, store, plain_opts)
    assert info.value.status == 404
    assert ref in str(info.value)
    assert "not found" in str(info.value)


def test_digest_pinned_reference_mismatch(registry, made_image, plain_opts, store) -> None:
    ref = registry.ref("kiln/pinned", "t")
    push_image(made_image.image, [ref], plain_opts)
    other = "sha256:" + "ab" * 32
    with pytest.raises(RegistryError) as info:
        pull_image(f"{ref.rsplit(':', 1)[0]}@{other}", AMD64, store, plain_opts)
    assert other in str(info.value)


def put_index(registry, repository: str, tag: str, entries: list[tuple[str, int, str]]) -> str:
    """PUT an OCI index by hand (plain requests), entries as (digest, size, arch)."""
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {"mediaType": mt.OCI_MANIFEST, "digest": d, "size": s, "platform": {"os": "linux", "architecture": a}}
            for d, s, a in entries
        ],
    }
    data = json.dumps(index).encode()
    resp = requests.put(
        f"{registry.url}/v2/{repository}/manifests/{tag}", data=data, headers={"Content-Type": mt.OCI_INDEX}
    )
    assert resp.status_code == 201, resp.text
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_multi_platform_index(registry, plain_opts, store) -> None:
    amd = make_image({"arch": b"amd64\n"}, arch="amd64")
    arm = make_image({"arch": b"arm64\n"}, arch="arm64")
    repo = "kiln/multi"
    for made in (amd, arm):
        push_image(made.image, [f"{registry.address}/{repo}@{made.image.digest}"], plain_opts)
    index_digest = put_index(
        registry, repo, "multi",
        [(m.image.digest, len(m.image.manifest_bytes), a) for m, a in ((amd, "amd64"), (arm, "arm64"))],
    )  # fmt: skip
    ref = registry.ref(repo, "multi")
    assert resolve(ref, plain_opts).digest == index_digest
    index = fetch_image_index(ref, plain_opts)
    assert index is not None and [d.digest for d in index.manifests] == [amd.image.digest, arm.image.digest]

    image = pull_image(ref, Platform.parse("linux/arm64"), store, plain_opts)
    assert image.digest == arm.image.digest
    assert image.config.architecture == "arm64"
    image = pull_image(ref, AMD64, store, plain_opts)
    assert image.digest == amd.image.digest

    with pytest.raises(RegistryError) as info:
        pull_image(ref, Platform.parse("linux/s390x"), store, plain_opts)
    message = str(info.value)
    assert ref in message and "linux/s390x" in message
    assert "linux/amd64" in message and "linux/arm64" in message


def test_docker_schema2_manifest_round_trip(registry, plain_opts, store) -> None:
    made = make_image({"docker.txt": b"docker family\n"}, docker=True)
    ref = registry.ref("kiln/docker-type", "t")
    push_image(made.image, [ref], plain_opts)
    raw = json.loads(run_text(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"]))
    assert raw["mediaType"] == mt.DOCKER_MANIFEST
    resp = requests.get(f"{registry.url}/v2/kiln/docker-type/manifests/t", headers={"Accept": mt.DOCKER_MANIFEST})
    assert resp.headers["Content-Type"] == mt.DOCKER_MANIFEST and resp.content == made.image.manifest_bytes
    image = pull_image(ref, AMD64, store, plain_opts)
    assert image.manifest.media_type == mt.DOCKER_MANIFEST and image.digest == made.image.digest
