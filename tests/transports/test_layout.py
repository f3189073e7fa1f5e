"""OCI image layouts: written by kiln and checked with skopeo and umoci; made by skopeo and umoci and read by kiln."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import sys
import tarfile
import threading
from pathlib import Path
from typing import Any, BinaryIO

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from transport_images import TWO_LAYER_ROOTFS, DictBlobs, Entry, HandImage, make_image, two_layer_image  # noqa: E402

from kiln.errors import DigestMismatch, ImageFormatError, UsageError  # noqa: E402
from kiln.oci import mediatypes as mt  # noqa: E402
from kiln.oci.descriptor import Descriptor  # noqa: E402
from kiln.oci.digest import sha256_digest  # noqa: E402
from kiln.oci.manifest import Index  # noqa: E402
from kiln.oci.platform import Platform  # noqa: E402
from kiln.transports.image import Image  # noqa: E402
from kiln.transports.layout import list_refs, read_image, write_image  # noqa: E402
from support.procs import require_tool, run, run_text  # noqa: E402

REF_NAME = "org.opencontainers.image.ref.name"
AMD64 = Platform("linux", "amd64")


def index_json(layout: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((layout / "index.json").read_bytes())
    return data


def blob_files(layout: Path) -> set[str]:
    return {p.name for p in (layout / "blobs" / "sha256").iterdir()}


# --- written by kiln, checked by skopeo and umoci ---------------------------------------------------------


def test_write_creates_a_layout_that_skopeo_inspects(tmp_path: Path) -> None:
    require_tool("skopeo")
    hand = two_layer_image()
    layout = tmp_path / "out"
    desc = write_image(layout, hand.image, "v1")

    assert json.loads((layout / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    entries = index_json(layout)["manifests"]
    assert len(entries) == 1
    assert entries[0]["digest"] == desc.digest == "sha256:" + hashlib.sha256(hand.image.manifest_bytes).hexdigest()
    assert entries[0]["annotations"] == {REF_NAME: "v1"}
    # Every blob is there under the hash of its bytes, and nothing else is.
    expected = {d.partition(":")[2] for d in hand.blobs} | {desc.digest.partition(":")[2]}
    assert blob_files(layout) == expected
    for name in expected:
        assert hashlib.sha256((layout / "blobs" / "sha256" / name).read_bytes()).hexdigest() == name
    assert sorted(p.name for p in (layout / "blobs").iterdir()) == ["sha256"]

    raw = json.loads(run_text(["skopeo", "inspect", "--raw", f"oci:{layout}:v1"]))
    assert raw == json.loads(hand.image.manifest_bytes)
    inspected = json.loads(run_text(["skopeo", "inspect", f"oci:{layout}:v1"]))
    assert inspected["Digest"] == desc.digest
    assert inspected["Architecture"] == "amd64" and inspected["Os"] == "linux"
    assert inspected["Env"] == ["PATH=/usr/bin:/bin"]
    assert inspected["Layers"] == [d.digest for d in hand.image.layers]
    config = json.loads(run_text(["skopeo", "inspect", "--config", "--raw", f"oci:{layout}:v1"]))
    assert config["rootfs"]["diff_ids"] == [sha256_digest(t) for t in hand.tars]


def test_skopeo_copies_a_written_layout_to_a_directory(tmp_path: Path) -> None:
    require_tool("skopeo")
    hand = two_layer_image()
    write_image(tmp_path / "out", hand.image, "v1")
    run(["skopeo", "copy", "--quiet", f"oci:{tmp_path / 'out'}:v1", f"dir:{tmp_path / 'dir'}"])
    # skopeo verifies each blob's digest as it copies; the copies are byte for byte what went in.
    for digest, data in hand.blobs.items():
        assert (tmp_path / "dir" / digest.partition(":")[2]).read_bytes() == data
    assert (tmp_path / "dir" / "manifest.json").read_bytes() == hand.image.manifest_bytes


def _scan(root: Path) -> dict[str, tuple[str, int, int, bytes | str | None]]:
    out: dict[str, tuple[str, int, int, bytes | str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", 0o777, st.st_uid, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_uid, None)
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_uid, path.read_bytes())
    return out


@pytest.mark.root
def test_umoci_unpacks_a_written_layout(tmp_path: Path) -> None:
    require_tool("umoci")
    if os.geteuid() != 0:
        pytest.skip("umoci unpack keeps owners only as root")
    hand = two_layer_image()
    write_image(tmp_path / "out", hand.image, "v1")
    run(["umoci", "unpack", "--image", f"{tmp_path / 'out'}:v1", str(tmp_path / "bundle")])
    assert _scan(tmp_path / "bundle" / "rootfs") == TWO_LAYER_ROOTFS


# --- made by umoci and skopeo, read by kiln ----------------------------------------------------------------


def test_reads_a_layout_umoci_made(tmp_path: Path) -> None:
    require_tool("umoci")
    layout = tmp_path / "umoci"
    run(["umoci", "init", "--layout", str(layout)])
    run(["umoci", "new", "--image", f"{layout}:t"])
    run(["umoci", "config", "--image", f"{layout}:t", "--config.env", "FOO=bar", "--config.cmd", "/bin/true"])
    src = tmp_path / "src"
    src.mkdir()
    (src / "file.txt").write_bytes(b"from umoci\n")
    run(["umoci", "insert", "--image", f"{layout}:t", str(src / "file.txt"), "/opt/file.txt"])

    image = read_image(layout, "t")
    (entry,) = index_json(layout)["manifests"]
    assert image.digest == entry["digest"]
    assert image.config.config.env_dict()["FOO"] == "bar"
    assert image.config.config.cmd == ("/bin/true",)
    assert len(image.layers) == 1 == len(image.config.diff_ids)
    with image.blobs.open_blob(image.layers[0]) as f:
        blob = f.read()
    assert sha256_digest(blob) == image.layers[0].digest
    # umoci 0.4.7 ends its inserted layers right after the file data (no padding, no end blocks), so the tar
    # is read as a stream, first member only.
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r|gz") as tar:
        member = tar.next()
        assert member is not None and member.name == "opt/file.txt"
        content = tar.extractfile(member)
        assert content is not None and content.read() == b"from umoci\n"


def test_reads_a_layout_skopeo_copied(tmp_path: Path) -> None:
    require_tool("skopeo")
    hand = two_layer_image()
    write_image(tmp_path / "ours", hand.image, "v1")
    run(["skopeo", "copy", "--quiet", f"oci:{tmp_path / 'ours'}:v1", f"oci:{tmp_path / 'theirs'}:copied"])
    image = read_image(tmp_path / "theirs", "copied")
    assert image.manifest_bytes == hand.image.manifest_bytes
    assert image.config_bytes == hand.image.config_bytes
    for layer in image.layers:
        with image.blobs.open_blob(layer) as f:
            assert f.read() == hand.blobs[layer.digest]


# --- several images, tags, digests, platforms --------------------------------------------------------------


def test_several_images_and_tag_replacement(tmp_path: Path) -> None:
    layout = tmp_path / "multi"
    a, b, c = (make_image([[Entry("f", label.encode())]], label=label) for label in ("a", "b", "c"))
    da = write_image(layout, a.image, "one")
    db = write_image(layout, b.image, "two")
    assert [(name, d.digest) for name, d in list_refs(layout)] == [("one", da.digest), ("two", db.digest)]
    assert read_image(layout, "one").config.config.labels == {"test": "a"}
    assert read_image(layout, "two").config.config.labels == {"test": "b"}

    dc = write_image(layout, c.image, "one")  # a tag names one image: "one" now means c
    assert [(name, d.digest) for name, d in list_refs(layout)] == [("two", db.digest), ("one", dc.digest)]
    assert read_image(layout, "one").digest == dc.digest
    assert read_image(layout, "two").digest == db.digest
    # The replaced image's blobs stay (the layout is not garbage collected); the index no longer names them.
    assert da.digest.partition(":")[2] in blob_files(layout)

    # By digest, also for an image that has no tag; an untagged image written twice is listed once.
    write_image(layout, a.image)
    write_image(layout, a.image)
    assert [name for name, _ in list_refs(layout)] == ["two", "one", None]
    assert read_image(layout, da.digest).config.config.labels == {"test": "a"}

    with pytest.raises(ImageFormatError, match=r"several images.*one.*two"):
        read_image(layout)
    with pytest.raises(ImageFormatError, match=r"no image tagged 'three' \(tags: one, two\)"):
        read_image(layout, "three")
    with pytest.raises(ImageFormatError, match="no image with digest"):
        read_image(layout, "sha256:" + "0" * 64)


def test_the_only_image_needs_no_ref(tmp_path: Path) -> None:
    hand = two_layer_image()
    write_image(tmp_path / "one", hand.image)
    image = read_image(tmp_path / "one")
    assert image.digest == hand.image.digest
    assert image.manifest == hand.image.manifest
    assert image.config == hand.image.config


def test_bad_tags_are_refused(tmp_path: Path) -> None:
    hand = two_layer_image()
    for tag in ("", "has space", "-lead", "a//b", "trail."):
        with pytest.raises(UsageError):
            write_image(tmp_path / "l", hand.image, tag)
    # What the OCI ref.name grammar allows, including a full reference.
    for tag in ("v1.0", "registry.example:5000/repo/name:tag", "a--b", "x@y+z"):
        write_image(tmp_path / "l", hand.image, tag)
        assert read_image(tmp_path / "l", tag).digest == hand.image.digest


def _write_index_of(layout: Path, images: list[tuple[HandImage, Platform]], tag: str, nest: bool) -> str:
    """Put images into a layout under one index entry (an index of manifests, optionally itself nested)."""
    from kiln.transports.layout import blob_store

    store = blob_store(layout)
    descs = []
    for hand, plat in images:
        write_image(layout, hand.image, f"tmp-{plat.architecture}")  # puts the blobs in
        descs.append(Descriptor(mt.OCI_MANIFEST, hand.image.digest, len(hand.image.manifest_bytes), {}, plat))
    index_bytes = Index(tuple(descs)).to_bytes()
    store.put_bytes(index_bytes)
    top = Descriptor(mt.OCI_INDEX, sha256_digest(index_bytes), len(index_bytes))
    if nest:
        outer = Index((top,)).to_bytes()
        store.put_bytes(outer)
        top = Descriptor(mt.OCI_INDEX, sha256_digest(outer), len(outer))
    top = Descriptor(top.media_type, top.digest, top.size, {REF_NAME: tag})
    (layout / "index.json").write_bytes(Index((top,)).to_bytes())
    return top.digest


@pytest.mark.parametrize("nest", [False, True], ids=["index", "nested-index"])
def test_platform_chosen_from_an_index(tmp_path: Path, nest: bool) -> None:
    amd = make_image([[Entry("arch", b"amd64")]], arch="amd64")
    arm = make_image([[Entry("arch", b"arm64")]], arch="arm64")
    layout = tmp_path / "multiarch"
    _write_index_of(layout, [(amd, AMD64), (arm, Platform("linux", "arm64", "v8"))], "multi", nest)

    assert read_image(layout, "multi", Platform("linux", "amd64")).digest == amd.image.digest
    assert read_image(layout, "multi", Platform.parse("linux/arm64")).digest == arm.image.digest
    assert read_image(layout, "multi", Platform.parse("linux/arm64/v8")).digest == arm.image.digest
    # A manifest inside the index can be named by its digest.
    assert read_image(layout, arm.image.digest).config.architecture == "arm64"
    with pytest.raises(
        ImageFormatError, match=r"no image for platform linux/s390x; available: linux/amd64, linux/arm64"
    ):
        read_image(layout, "multi", Platform("linux", "s390x"))


def test_same_tag_on_several_platform_entries(tmp_path: Path) -> None:
    amd = make_image([[Entry("arch", b"amd64")]], arch="amd64")
    arm = make_image([[Entry("arch", b"arm64")]], arch="arm64")
    layout = tmp_path / "l"
    write_image(layout, amd.image, "x-amd")
    write_image(layout, arm.image, "x-arm")
    index = index_json(layout)
    for entry in index["manifests"]:
        entry["annotations"][REF_NAME] = "x"
    (layout / "index.json").write_text(json.dumps(index))
    # write_image put each config's platform on its entry; entries sharing a tag are platform alternatives.
    assert read_image(layout, "x", Platform.parse("linux/arm64")).digest == arm.image.digest
    assert read_image(layout, "x", AMD64).digest == amd.image.digest


# --- atomicity and concurrency ------------------------------------------------------------------------------


class FailingBlobs:
    """Serves the first layer, then fails halfway through the second."""

    def __init__(self, blobs: dict[str, bytes], fail_on: str) -> None:
        self.blobs = blobs
        self.fail_on = fail_on

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        data = self.blobs[desc.digest]
        if desc.digest != self.fail_on:
            return io.BytesIO(data)
        half = data[: len(data) // 2]

        class Broken(io.BytesIO):
            def read(self, n: int | None = -1) -> bytes:
                chunk = super().read(n)
                if not chunk:
                    raise OSError("disk went away")
                return chunk

        return Broken(half)


def _state(layout: Path) -> tuple[bytes, set[str], list[str]]:
    leftovers = [p.name for p in layout.iterdir() if p.name.startswith(".")]
    return (layout / "index.json").read_bytes(), blob_files(layout), leftovers


def test_failure_mid_write_leaves_the_index_intact(tmp_path: Path) -> None:
    layout = tmp_path / "l"
    first = make_image([[Entry("f", b"first")]])
    write_image(layout, first.image, "latest")
    before = _state(layout)

    second = two_layer_image()
    broken = Image(
        second.image.manifest, second.image.manifest_bytes, second.image.config, second.image.config_bytes,
        FailingBlobs(second.blobs, second.image.layers[1].digest),
    )  # fmt: skip
    with pytest.raises(OSError, match="disk went away"):
        write_image(layout, broken, "latest")
    after = _state(layout)
    assert after[0] == before[0]
    # The first layer may have gone in (blobs are independent and complete); no partial blob and no temp file.
    assert after[1] - before[1] <= {second.image.layers[0].digest.partition(":")[2]}
    assert not list((layout / "blobs" / ".tmp").glob("*")) if (layout / "blobs" / ".tmp").exists() else True
    assert read_image(layout, "latest").digest == first.image.digest


def test_a_blob_with_the_wrong_digest_is_not_written(tmp_path: Path) -> None:
    layout = tmp_path / "l"
    write_image(layout, make_image([[Entry("f", b"first")]]).image, "latest")
    before = _state(layout)
    hand = two_layer_image()
    tampered = dict(hand.blobs)
    target = hand.image.layers[1].digest
    data = bytearray(tampered[target])
    data[-5] ^= 0xFF
    tampered[target] = bytes(data)
    bad = Image(hand.image.manifest, hand.image.manifest_bytes, hand.image.config, hand.image.config_bytes,
                DictBlobs(tampered))  # fmt: skip
    with pytest.raises(DigestMismatch):
        write_image(layout, bad, "latest")
    assert _state(layout)[0] == before[0]
    assert target.partition(":")[2] not in blob_files(layout)


def test_failure_while_replacing_the_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = tmp_path / "l"
    write_image(layout, make_image([[Entry("f", b"first")]]).image, "latest")
    before = (layout / "index.json").read_bytes()

    real_replace = os.replace
    renamed: list[str] = []

    def no_index_rename(src: str, dst: str) -> None:
        # Blobs go in as usual; only the final step, replacing index.json, fails.
        if Path(dst).name == "index.json":
            raise OSError("rename failed")
        renamed.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", no_index_rename)
    with pytest.raises(OSError, match="rename failed"):
        write_image(layout, two_layer_image().image, "latest")
    monkeypatch.undo()
    assert (layout / "index.json").read_bytes() == before
    assert [p.name for p in layout.iterdir() if p.name.startswith(".")] == []
    assert len(renamed) == 4  # two layers, the config and the manifest went in before the index


def test_concurrent_writers_lose_no_tag(tmp_path: Path) -> None:
    layout = tmp_path / "l"
    images = [make_image([[Entry("f", str(i).encode())]], label=str(i)) for i in range(8)]
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            write_image(layout, images[i].image, f"t{i}")
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(name or "" for name, _ in list_refs(layout)) == sorted(f"t{i}" for i in range(8))
    for i in range(8):
        assert read_image(layout, f"t{i}").config.config.labels == {"test": str(i)}


# --- corrupt layouts ----------------------------------------------------------------------------------------


@pytest.fixture
def good_layout(tmp_path: Path) -> tuple[Path, HandImage]:
    hand = two_layer_image()
    write_image(tmp_path / "l", hand.image, "v1")
    return tmp_path / "l", hand


def test_corrupt_index_json(good_layout: tuple[Path, HandImage]) -> None:
    layout, hand = good_layout
    (layout / "index.json").write_text("{not json")
    with pytest.raises(ImageFormatError, match=r"index\.json: not valid JSON"):
        read_image(layout, "v1")
    # A writer refuses to overwrite what it cannot read.
    with pytest.raises(ImageFormatError, match="not valid JSON"):
        write_image(layout, hand.image, "v2")
    assert (layout / "index.json").read_text() == "{not json"
    (layout / "index.json").write_text('{"schemaVersion": 2, "manifests": [{"digest": "sha256:zz"}]}')
    with pytest.raises(ImageFormatError):
        list_refs(layout)


def test_missing_layout_marker(good_layout: tuple[Path, HandImage], tmp_path: Path) -> None:
    layout, _ = good_layout
    (layout / "oci-layout").unlink()
    with pytest.raises(ImageFormatError, match="oci-layout is missing"):
        read_image(layout, "v1")
    with pytest.raises(ImageFormatError, match="not an OCI image layout"):
        read_image(tmp_path / "nowhere")
    elsewhere = tmp_path / "notalayout"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("keep")
    with pytest.raises(ImageFormatError, match="is not an OCI image layout"):
        write_image(elsewhere, two_layer_image().image)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["precious.txt"]


@pytest.mark.parametrize("which", ["manifest", "config", "layer"])
def test_missing_blob(good_layout: tuple[Path, HandImage], which: str) -> None:
    layout, hand = good_layout
    digest = {"manifest": hand.image.digest, "config": hand.image.manifest.config.digest,
              "layer": hand.image.layers[1].digest}[which]  # fmt: skip
    (layout / "blobs" / "sha256" / digest.partition(":")[2]).unlink()
    with pytest.raises(ImageFormatError, match=f"{which} blob {digest} is missing"):
        read_image(layout, "v1")


@pytest.mark.parametrize("which", ["manifest", "config"])
def test_blob_with_wrong_digest(good_layout: tuple[Path, HandImage], which: str) -> None:
    layout, hand = good_layout
    digest = hand.image.digest if which == "manifest" else hand.image.manifest.config.digest
    path = layout / "blobs" / "sha256" / digest.partition(":")[2]
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"', b"'", 1)[:-1] + b"}")  # same size, different bytes
    with pytest.raises(DigestMismatch, match=f"expected {digest}"):
        read_image(layout, "v1")


def test_layer_with_wrong_size(good_layout: tuple[Path, HandImage]) -> None:
    layout, hand = good_layout
    path = layout / "blobs" / "sha256" / hand.image.layers[0].digest.partition(":")[2]
    path.write_bytes(path.read_bytes() + b"extra")
    with pytest.raises(ImageFormatError, match="bytes, the manifest says"):
        read_image(layout, "v1")


def test_manifest_that_is_not_a_manifest(good_layout: tuple[Path, HandImage]) -> None:
    layout, _ = good_layout
    from kiln.transports.layout import blob_store

    junk = b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}'
    digest = blob_store(layout).put_bytes(junk)
    (layout / "index.json").write_bytes(
        Index((Descriptor(mt.OCI_MANIFEST, digest, len(junk), {REF_NAME: "junk"}),)).to_bytes()
    )
    with pytest.raises(ImageFormatError, match="'layers' missing"):
        read_image(layout, "junk")
