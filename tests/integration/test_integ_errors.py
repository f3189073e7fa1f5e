"""Bad input: every failure exits non-zero with a clear message naming the cause, leaves no
output at --oci-layout-path / --tar-path, and leaves kiln's tmp/ empty with nothing mounted below it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from integ_helpers import Kiln, Outcome, write_context

from support.base_images import OciImage
from support.images import blob_path, manifest_descriptor, read_blob_json

pytestmark = pytest.mark.root


def _check_failure(kiln: Kiln, out: Outcome, *needles: str) -> None:
    out.failed()
    assert "Traceback" not in out.stderr, out.describe()
    for needle in needles:
        assert re.search(needle, out.stderr), f"{needle!r} not in the message:\n{out.describe()}"
    assert not out.layout.exists(), f"an OCI layout was left at {out.layout}"
    assert out.tar is None or not out.tar.exists(), f"a tarball was left at {out.tar}"
    kiln.assert_clean()


# (Dockerfile, context files, patterns the message must contain)
CASES = {
    "missing-context-file": ("FROM scratch\nCOPY a.txt /a\nCOPY missing.txt /m\n", {"a.txt": "a"},
                             [r"Dockerfile:3", r"missing\.txt"]),
    "outside-context": ("FROM scratch\nCOPY ../outside.txt /x\n", {}, [r"Dockerfile:2", r"outside\.txt"]),
    "unknown-instruction": ("FROM scratch\nFROB something\n", {}, [r"Dockerfile:2:", r"(?i)frob"]),
    "bad-flag": ("FROM scratch\nCOPY a.txt /a\nCOPY --nope=1 a.txt /b\n", {"a.txt": "a"},
                 [r"Dockerfile:3:", r"nope"]),
    "bad-stage-index": ("FROM scratch\nCOPY --from=7 /x /x\n", {}, [r"Dockerfile:2:", r"7"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_from_scratch(kiln: Kiln, tmp_path: Path, case: str) -> None:
    dockerfile, files, needles = CASES[case]
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": dockerfile, **files})
    # A real file just outside the context: it must never be read.
    (tmp_path / "outside.txt").write_text("outside the context\n")
    out = kiln.build(ctx, tar=True)
    _check_failure(kiln, out, *needles)


def test_corrupt_tar_context(kiln: Kiln, tmp_path: Path) -> None:
    bad = tmp_path / "ctx.tar"
    bad.write_bytes(b"this is not a tar archive" * 100)
    _check_failure(kiln, kiln.build(bad, tar=True), r"ctx\.tar")


def test_truncated_tar_gz_context(kiln: Kiln, tmp_path: Path) -> None:
    import gzip
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"FROM scratch\nCOPY big /big\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        big = bytes(range(256)) * 4096
        info = tarfile.TarInfo("big")
        info.size = len(big)
        tf.addfile(info, io.BytesIO(big))
    bad = tmp_path / "ctx.tar.gz"
    bad.write_bytes(gzip.compress(buf.getvalue())[:3000])
    _check_failure(kiln, kiln.build(bad, tar=True), r"ctx\.tar\.gz")


def _copy_layout(image: OciImage, dest: Path) -> OciImage:
    shutil.copytree(image.layout, dest)
    return OciImage(dest, image.tag)


def test_corrupt_base_layer_blob(kiln: Kiln, tmp_path: Path, busybox_image: OciImage) -> None:
    bad = _copy_layout(busybox_image, tmp_path / "bad-layout")
    layer = read_blob_json(bad.layout, manifest_descriptor(bad.layout, bad.tag)["digest"])["layers"][0]
    path = blob_path(bad.layout, layer["digest"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, wrong bytes: only the digest can tell
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    kiln.contexts["busybox"] = bad
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN true\n"})
    _check_failure(kiln, kiln.build(ctx, tar=True), r"(?i)digest|corrupt|mismatch")


def test_corrupt_base_index(kiln: Kiln, tmp_path: Path, busybox_image: OciImage) -> None:
    bad = _copy_layout(busybox_image, tmp_path / "bad-layout")
    (bad.layout / "index.json").write_text("{ not json")
    kiln.contexts["busybox"] = bad
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN true\n"})
    _check_failure(kiln, kiln.build(ctx, tar=True), r"index\.json")


def test_run_that_fails(kiln_bb: Kiln, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo ok > /ok\nRUN exit 3\nRUN true\n"})
    out = kiln_bb.build(ctx, tar=True)
    _check_failure(kiln_bb, out, r"Dockerfile:3", r"(status|code)\D{0,12}\b3\b")


def test_run_failure_with_a_running_daemon_leaves_nothing(kiln_bb: Kiln, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN (sleep 300 &) ; exit 5\n"})
    out = kiln_bb.build(ctx, tar=True)
    _check_failure(kiln_bb, out, r"Dockerfile:2", r"(status|code)\D{0,12}\b5\b")
    assert out.seconds < 120, "the build waited for the background process"


def test_user_that_does_not_exist(kiln_bb: Kiln, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nUSER nosuchuser\nRUN true\n"})
    _check_failure(kiln_bb, kiln_bb.build(ctx, tar=True), r"nosuchuser", r"Dockerfile:3")


def test_copy_from_unknown_stage(kiln: Kiln, tmp_path: Path) -> None:
    # An unknown name is an image reference: point every registry lookup at a closed local port so the test
    # never leaves the machine.
    dockerfile = "FROM scratch AS one\nFROM scratch\nCOPY --from=nostage /x /x\n"
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": dockerfile})
    out = kiln.build(ctx, "--registry-mirror=127.0.0.1:9", "--skip-default-registry-fallback", "--insecure-pull",
                     tar=True)  # fmt: skip
    _check_failure(kiln, out, r"nostage")


def test_add_url_that_answers_404(kiln: Kiln, tmp_path: Path, http_root: tuple[Path, str]) -> None:
    www, base = http_root
    (www / "exists.txt").write_text("here\n")
    ctx = write_context(tmp_path / "ctx", {
        "Dockerfile": f"FROM scratch\nADD {base}/exists.txt /e.txt\nADD {base}/missing.txt /m.txt\n",
    })  # fmt: skip
    _check_failure(kiln, kiln.build(ctx, tar=True), r"404", r"missing\.txt", r"Dockerfile:3")


def test_add_url_fetches_the_file(kiln: Kiln, tmp_path: Path, http_root: tuple[Path, str]) -> None:
    """The passing counterpart of the 404 case: ADD of a URL writes the body, mode 0600 (BuildKit)."""
    www, base = http_root
    (www / "exists.txt").write_text("here\n")
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": f"FROM scratch\nADD {base}/exists.txt /dl/\n"})
    out = kiln.build(ctx).ok()
    layer = out.new_layers(0)[0]
    assert layer["dl/exists.txt"].size == 5 and layer["dl/exists.txt"].mode == 0o600


@pytest.mark.parametrize("kind", ["directory", "fifo", "dangling-symlink"])
def test_a_context_dockerfile_that_is_not_a_file_is_an_error(kiln: Kiln, tmp_path: Path, kind: str) -> None:
    """Not a fallback to ./Dockerfile of the working directory: that one would build something else entirely."""
    import os

    context = write_context(tmp_path / "ctx", {"a.txt": "a"})
    if kind == "directory":
        (context / "Dockerfile").mkdir()
    elif kind == "fifo":
        os.mkfifo(context / "Dockerfile")
    else:
        os.symlink("nowhere", context / "Dockerfile")
    elsewhere = write_context(tmp_path / "cwd", {"Dockerfile": "FROM scratch\nCOPY a.txt /wrong\n"})
    out = kiln.build(context, wrapper=("env", "-C", str(elsewhere)), timeout=60)
    _check_failure(kiln, out, r"--dockerfile", r"not a regular file", re.escape(str(context / "Dockerfile")))
