"""docker-archive tarballs: written by kiln and loaded by skopeo and podman; written by skopeo and read by kiln."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from test_layout import _scan  # noqa: E402
from transport_images import TWO_LAYER_ROOTFS, DictBlobs, Entry, make_image, two_layer_image  # noqa: E402

from kiln.errors import DigestMismatch, ImageFormatError, UsageError  # noqa: E402
from kiln.oci import mediatypes as mt  # noqa: E402
from kiln.oci.digest import sha256_digest  # noqa: E402
from kiln.transports.archive import read_archive, write_archive  # noqa: E402
from kiln.transports.blobstore import BlobStore  # noqa: E402
from kiln.transports.image import Image  # noqa: E402
from kiln.transports.layout import write_image  # noqa: E402
from support.procs import require_tool, run, run_text  # noqa: E402


def members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {m.name: m for m in tar.getmembers()}


def member_bytes(path: Path, name: str) -> bytes:
    with tarfile.open(path) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()


def decompressed(data: bytes) -> bytes:
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


# --- the written archive, by hand ---------------------------------------------------------------------------


def test_written_archive_layout(tmp_path: Path) -> None:
    hand = two_layer_image()
    path = tmp_path / "img.tar"
    write_archive(path, hand.image, ["example.test/kiln/hand:v1", "plain"])

    found = members(path)
    names = list(found)
    assert names == sorted(names)
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and not m.uname for m in found.values())
    (entry,) = json.loads(member_bytes(path, "manifest.json"))
    config_hex = hand.image.manifest.config.digest.partition(":")[2]
    assert entry["Config"] == f"{config_hex}.json"
    assert entry["RepoTags"] == ["example.test/kiln/hand:v1", "plain:latest"]
    assert member_bytes(path, entry["Config"]) == hand.image.config_bytes
    # gzip layers are carried as the blobs they are, named by their digest.
    assert entry["Layers"] == [f"{d.digest.partition(':')[2]}.tar.gz" for d in hand.image.layers]
    for name, desc, tar in zip(entry["Layers"], hand.image.layers, hand.tars, strict=True):
        assert member_bytes(path, name) == hand.blobs[desc.digest]
        assert gzip.decompress(member_bytes(path, name)) == tar
    # The legacy structure: one directory per layer whose json links to its parent; repositories names the top.
    repositories = json.loads(member_bytes(path, "repositories"))
    top = repositories["example.test/kiln/hand"]["v1"]
    assert repositories == {"example.test/kiln/hand": {"v1": top}, "plain": {"latest": top}}
    top_json = json.loads(member_bytes(path, f"{top}/json"))
    assert top_json["id"] == top and top_json["os"] == "linux" and top_json["architecture"] == "amd64"
    base = top_json["parent"]
    assert "parent" not in json.loads(member_bytes(path, f"{base}/json"))
    assert member_bytes(path, f"{base}/VERSION") == b"1.0"
    assert found[f"{base}/layer.tar"].issym() and found[f"{base}/layer.tar"].linkname == f"../{entry['Layers'][0]}"
    # The base layer's id is its diff_id (the first chain id), computed here independently.
    assert base == hashlib.sha256(hand.tars[0]).hexdigest()


def test_written_archive_is_deterministic(tmp_path: Path) -> None:
    write_archive(tmp_path / "a.tar", two_layer_image().image, ["x:1"])
    write_archive(tmp_path / "b.tar", two_layer_image().image, ["x:1"])
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_zstd_layers_are_written_uncompressed(tmp_path: Path) -> None:
    hand = two_layer_image(compression="zstd")
    write_archive(tmp_path / "z.tar", hand.image, ["z:1"])
    (entry,) = json.loads(member_bytes(tmp_path / "z.tar", "manifest.json"))
    assert entry["Layers"] == [f"{sha256_digest(t).partition(':')[2]}.tar" for t in hand.tars]
    for name, tar in zip(entry["Layers"], hand.tars, strict=True):
        assert member_bytes(tmp_path / "z.tar", name) == tar


def test_image_without_layers_or_tags(tmp_path: Path) -> None:
    hand = make_image([])
    write_archive(tmp_path / "e.tar", hand.image)
    assert sorted(members(tmp_path / "e.tar")) == sorted(
        ["manifest.json", f"{hand.image.manifest.config.digest.partition(':')[2]}.json"]
    )
    image = read_archive(tmp_path / "e.tar")
    assert image.layers == () and image.config_bytes == hand.image.config_bytes


def test_bad_repo_tags(tmp_path: Path) -> None:
    for bad in ("x@sha256:" + "0" * 64, "", "has space:1"):
        with pytest.raises(UsageError):
            write_archive(tmp_path / "x.tar", two_layer_image().image, [bad])
    assert not (tmp_path / "x.tar").exists()


# --- no partial output --------------------------------------------------------------------------------------


def test_failed_write_leaves_no_partial_archive(tmp_path: Path) -> None:
    path = tmp_path / "img.tar"
    path.write_bytes(b"the previous archive")
    hand = two_layer_image()
    tampered = dict(hand.blobs)
    target = hand.image.layers[1].digest
    tampered[target] = tampered[target][:-1] + bytes([tampered[target][-1] ^ 1])
    bad = Image(hand.image.manifest, hand.image.manifest_bytes, hand.image.config, hand.image.config_bytes,
                DictBlobs(tampered))  # fmt: skip
    with pytest.raises(DigestMismatch):
        write_archive(path, bad, ["x:1"])
    assert path.read_bytes() == b"the previous archive"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.tar"]


# --- read back ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["gzip", "none", "zstd"])
def test_round_trip(tmp_path: Path, compression: str) -> None:
    hand = two_layer_image(compression=compression)
    write_archive(tmp_path / "img.tar", hand.image, ["x:1"])
    store = BlobStore(tmp_path / "store")
    image = read_archive(tmp_path / "img.tar", store=store)
    assert image.config_bytes == hand.image.config_bytes
    assert image.manifest.media_type == mt.DOCKER_MANIFEST
    assert image.manifest.config.digest == hand.image.manifest.config.digest
    assert all(d.media_type == mt.DOCKER_LAYER_GZIP for d in image.layers)
    assert json.loads(image.manifest_bytes)["mediaType"] == mt.DOCKER_MANIFEST
    for desc, tar in zip(image.layers, hand.tars, strict=True):
        blob = store.read_bytes(desc.digest)
        assert sha256_digest(blob) == desc.digest and len(blob) == desc.size
        assert gzip.decompress(blob) == tar
        if compression == "gzip":
            assert blob == hand.blobs[desc.digest]  # kept byte for byte
    assert store.read_bytes(image.digest) == image.manifest_bytes


def test_read_uses_a_temporary_store_by_default(tmp_path: Path) -> None:
    hand = two_layer_image()
    write_archive(tmp_path / "img.tar", hand.image)
    image = read_archive(tmp_path / "img.tar")
    for desc in image.layers:
        with image.blobs.open_blob(desc) as f:
            assert f.read() == hand.blobs[desc.digest]
    root = image.blobs.root  # type: ignore[attr-defined]
    assert root.is_dir()
    del image
    import gc

    gc.collect()
    assert not root.exists()


def test_read_a_gzipped_archive(tmp_path: Path) -> None:
    hand = two_layer_image()
    write_archive(tmp_path / "img.tar", hand.image)
    (tmp_path / "img.tar.gz").write_bytes(gzip.compress((tmp_path / "img.tar").read_bytes()))
    assert read_archive(tmp_path / "img.tar.gz").config_bytes == hand.image.config_bytes


def _combine(path: Path, parts: list[tuple[Path, list[str]]]) -> None:
    """One archive holding the images of several, each with its own RepoTags."""
    entries = []
    with tarfile.open(path, "w") as out:
        seen: set[str] = set()
        for src, tags in parts:
            with tarfile.open(src) as tar:
                for m in tar.getmembers():
                    if m.name in ("manifest.json", "repositories") or m.name in seen:
                        continue
                    seen.add(m.name)
                    out.addfile(m, tar.extractfile(m) if m.isfile() else None)
            (entry,) = json.loads(member_bytes(src, "manifest.json"))
            entries.append({**entry, "RepoTags": tags})
        data = json.dumps(entries).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))


def test_several_images_in_one_archive(tmp_path: Path) -> None:
    a = make_image([[Entry("f", b"a")]], label="a")
    b = make_image([[Entry("f", b"b")]], label="b")
    write_archive(tmp_path / "a.tar", a.image)
    write_archive(tmp_path / "b.tar", b.image)
    _combine(
        tmp_path / "ab.tar", [(tmp_path / "a.tar", ["one:1"]), (tmp_path / "b.tar", ["docker.io/library/two:latest"])]
    )
    assert read_archive(tmp_path / "ab.tar", "one:1").config.config.labels == {"test": "a"}
    assert read_archive(tmp_path / "ab.tar", "two").config.config.labels == {"test": "b"}
    assert read_archive(tmp_path / "ab.tar", "@1").config.config.labels == {"test": "b"}
    with pytest.raises(ImageFormatError, match=r"several images, name one of: one:1; docker.io/library/two:latest"):
        read_archive(tmp_path / "ab.tar")
    with pytest.raises(ImageFormatError, match="no image tagged 'three'"):
        read_archive(tmp_path / "ab.tar", "three")


# --- corrupt archives ---------------------------------------------------------------------------------------


def _rewrite(src: Path, dst: Path, change: Callable[[str, bytes], bytes | None]) -> None:
    """Copy an archive, passing each file through change (None drops it)."""
    with tarfile.open(src) as tar, tarfile.open(dst, "w") as out:
        for m in tar.getmembers():
            f = tar.extractfile(m) if m.isfile() else None
            data = f.read() if f is not None else b""
            new = change(m.name, data) if m.isfile() else data
            if new is None:
                continue
            m.size = len(new)
            out.addfile(m, io.BytesIO(new) if m.isfile() else None)


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    hand = two_layer_image()
    path = tmp_path / "good.tar"
    write_archive(path, hand.image, ["x:1"])
    (entry,) = json.loads(member_bytes(path, "manifest.json"))
    return path, {"config": entry["Config"], "layer": entry["Layers"][1]}


def test_corrupt_archives(tmp_path: Path, written: tuple[Path, dict[str, str]]) -> None:
    good, names = written
    bad = tmp_path / "bad.tar"

    bad.write_bytes(good.read_bytes()[:1500])
    with pytest.raises(ImageFormatError, match=str(bad)):
        read_archive(bad)

    bad.write_bytes(b"this is not a tar archive at all" * 100)
    with pytest.raises(ImageFormatError, match=f"{bad}: corrupt or unreadable"):
        read_archive(bad)

    with pytest.raises(ImageFormatError, match="no such archive"):
        read_archive(tmp_path / "missing.tar")

    cases: list[tuple[Callable[[str, bytes], bytes | None], str]] = [
        (lambda n, d: None if n == "manifest.json" else d, "no manifest.json"),
        (lambda n, d: b"[{" if n == "manifest.json" else d, "manifest.json: not valid JSON"),
        (lambda n, d: None if n == names["layer"] else d, f"{names['layer']} is missing"),
        (lambda n, d: None if n == names["config"] else d, f"{names['config']} is missing"),
        (lambda n, d: d.replace(b"amd64", b"arm64") if n == names["config"] else d, "digest mismatch"),
        # A valid gzip stream of other content: its diff_id is not the config's.
        (lambda n, d: gzip.compress(b"\0" * 1024) if n == names["layer"] else d, "uncompressed.*digest mismatch"),
        (lambda n, d: d[: len(d) // 2] if n == names["layer"] else d, "corrupt or truncated gzip"),
    ]
    for change, message in cases:
        _rewrite(good, bad, change)
        with pytest.raises(ImageFormatError, match=message) as info:
            read_archive(bad)
        assert str(bad) in str(info.value)


def test_diff_id_count_mismatch(tmp_path: Path, written: tuple[Path, dict[str, str]]) -> None:
    good, _ = written
    bad = tmp_path / "bad.tar"

    def drop_layer(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        entries = json.loads(data)
        entries[0]["Layers"] = entries[0]["Layers"][:1]
        return json.dumps(entries).encode()

    _rewrite(good, bad, drop_layer)
    with pytest.raises(ImageFormatError, match="1 layers but 2 diff_ids"):
        read_archive(bad)


# --- other tools ----------------------------------------------------------------------------------------------


def test_skopeo_inspects_a_written_archive(tmp_path: Path) -> None:
    require_tool("skopeo")
    hand = two_layer_image()
    write_archive(tmp_path / "img.tar", hand.image, ["example.test/kiln/hand:v1"])
    inspected = json.loads(run_text(["skopeo", "inspect", f"docker-archive:{tmp_path / 'img.tar'}"]))
    # c/image decompresses docker-archive layers and names them by their diff_ids.
    assert inspected["Layers"] == [sha256_digest(t) for t in hand.tars]
    assert inspected["Env"] == ["PATH=/usr/bin:/bin"] and inspected["Architecture"] == "amd64"
    config = run(["skopeo", "inspect", "--config", "--raw", f"docker-archive:{tmp_path / 'img.tar'}"]).stdout
    assert config == hand.image.config_bytes
    # And skopeo can copy it out, checking every layer against its diff_id on the way.
    run(["skopeo", "copy", "--quiet", f"docker-archive:{tmp_path / 'img.tar'}", f"oci:{tmp_path / 'l'}:t"])


def test_reads_an_archive_skopeo_wrote(tmp_path: Path) -> None:
    require_tool("skopeo")
    hand = two_layer_image()
    write_image(tmp_path / "l", hand.image, "v1")
    out = tmp_path / "skopeo.tar"
    run(["skopeo", "copy", "--quiet", f"oci:{tmp_path / 'l'}:v1", f"docker-archive:{out}:example.test/from/skopeo:v2"])
    image = read_archive(out, "example.test/from/skopeo:v2", store=BlobStore(tmp_path / "store"))
    assert image.config.diff_ids == hand.image.config.diff_ids
    for desc, tar in zip(image.layers, hand.tars, strict=True):
        with image.blobs.open_blob(desc) as f:
            assert gzip.decompress(f.read()) == tar


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """podman on storage private to this test (vfs), emptied and removed afterwards."""
    require_tool("podman")
    root = tmp_path / "podman-root"
    # podman refuses a runroot path longer than 50 characters, which pytest's tmp_path easily is.
    runroot = Path(tempfile.mkdtemp(prefix="kiln-podman-"))
    base = ["podman", "--root", str(root), "--runroot", str(runroot), "--storage-driver", "vfs"]

    def podman_(*args: str) -> str:
        return run_text([*base, *args])

    try:
        yield podman_
    finally:
        run([*base, "rmi", "--all", "--force"], check=False)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(runroot, ignore_errors=True)


@pytest.mark.root
@pytest.mark.parametrize("compression", ["gzip", "none", "zstd"])
def test_podman_loads_a_written_archive(tmp_path: Path, podman: Callable[..., str], compression: str) -> None:
    hand = two_layer_image(compression=compression)
    write_archive(tmp_path / "img.tar", hand.image, ["example.test/kiln/hand:v1"])
    podman("load", "--quiet", "-i", str(tmp_path / "img.tar"))
    (inspected,) = json.loads(podman("image", "inspect", "example.test/kiln/hand:v1"))
    assert inspected["Id"] == hand.image.manifest.config.digest.partition(":")[2]
    assert inspected["RootFS"]["Layers"] == [sha256_digest(t) for t in hand.tars]
    assert inspected["Config"]["Cmd"] == ["/bin/sh"]
    mounted = Path(podman("image", "mount", "example.test/kiln/hand:v1").strip())
    try:
        assert _scan(mounted) == TWO_LAYER_ROOTFS
    finally:
        podman("image", "unmount", "example.test/kiln/hand:v1")
