"""CompressingWriter and open_decompressed against hashlib, sha256sum and the gzip/zstd/bzip2/xz tools."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kiln.errors import ImageFormatError
from kiln.layers import CompressingWriter, LayerDigests, open_decompressed
from kiln.layers.compress import isal_level

# Compressible and incompressible parts, more than one compressor buffer's worth.
PAYLOAD = (b"kiln layer " * 200_000) + os.urandom(600_000) + bytes(300_000)

DECOMPRESSORS = {"gzip": ["gzip", "-dc"], "zstd": ["zstd", "-dcq"]}


def sha256sum(path: Path) -> str:
    out = subprocess.run(["sha256sum", str(path)], check=True, capture_output=True, text=True).stdout
    return "sha256:" + out.split()[0]


def compress_to(
    path: Path, compression: str, data: bytes, level: int | None = None, pieces: int = 7
) -> LayerDigests:
    with open(path, "wb") as f:
        w = CompressingWriter(f, compression, level)  # type: ignore[arg-type]
        step = len(data) // pieces + 1
        for i in range(0, len(data), step):
            assert w.write(data[i : i + step]) == len(data[i : i + step])
        return w.close()


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_digests_match_the_bytes_and_the_tools(tmp_path: Path, compression: str) -> None:
    blob = tmp_path / "blob"
    d = compress_to(blob, compression, PAYLOAD)
    raw = blob.read_bytes()
    assert d.digest == "sha256:" + hashlib.sha256(raw).hexdigest() == sha256sum(blob)
    assert d.size == len(raw)
    assert d.diff_id == "sha256:" + hashlib.sha256(PAYLOAD).hexdigest()
    assert d.uncompressed_size == len(PAYLOAD)
    if compression == "none":
        assert raw == PAYLOAD and d.digest == d.diff_id
        return
    assert len(raw) < len(PAYLOAD)
    tool = DECOMPRESSORS[compression]
    if shutil.which(tool[0]) is None:
        pytest.skip(f"{tool[0]} command-line tool not installed")
    out = subprocess.run([*tool, str(blob)], check=True, capture_output=True).stdout
    assert out == PAYLOAD


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_output_is_deterministic(tmp_path: Path, compression: str) -> None:
    a = compress_to(tmp_path / "a", compression, PAYLOAD, pieces=3)
    b = compress_to(tmp_path / "b", compression, PAYLOAD, pieces=11)
    assert a == b
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_gzip_header_has_no_name_and_no_mtime(tmp_path: Path) -> None:
    blob = tmp_path / "named.tar.gz"  # a name the header must not pick up
    compress_to(blob, "gzip", b"data")
    head = blob.read_bytes()[:10]
    assert head[:3] == b"\x1f\x8b\x08"
    assert head[3] == 0  # no FNAME / FCOMMENT / FEXTRA
    assert head[4:8] == bytes(4)  # mtime 0


@pytest.mark.parametrize("level", [1, 6, 9])
def test_gzip_levels_all_decompress(tmp_path: Path, level: int) -> None:
    blob = tmp_path / "blob"
    compress_to(blob, "gzip", PAYLOAD, level)
    assert subprocess.run(["gzip", "-dc", str(blob)], check=True, capture_output=True).stdout == PAYLOAD


def test_gzip_level_mapping() -> None:
    assert [isal_level(n) for n in range(10)] == [1, 1, 1, 1, 2, 2, 2, 2, 3, 3]
    assert isal_level(None) == 2
    with pytest.raises(ValueError):
        isal_level(10)


def test_context_manager_and_empty_stream(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with CompressingWriter(buf, "gzip") as w:
        pass
    d = w.digests
    assert d.diff_id == "sha256:" + hashlib.sha256(b"").hexdigest()
    assert d.digest == "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()
    with pytest.raises(ValueError):
        w.write(b"late")


TOOLS = {"gzip": ["gzip", "-c"], "zstd": ["zstd", "-c", "-q"], "bzip2": ["bzip2", "-c"], "xz": ["xz", "-c"]}


@pytest.mark.parametrize("kind", ["gzip", "zstd", "bzip2", "xz", "plain"])
def test_open_decompressed_sniffs_what_the_tools_made(tmp_path: Path, kind: str) -> None:
    src = tmp_path / "payload"
    src.write_bytes(PAYLOAD)
    if kind == "plain":
        blob = PAYLOAD
    else:
        if shutil.which(TOOLS[kind][0]) is None:
            pytest.skip(f"{kind} not installed")
        blob = subprocess.run([*TOOLS[kind], str(src)], check=True, capture_output=True).stdout
    with open_decompressed(io.BytesIO(blob)) as f:
        assert f.read() == PAYLOAD


def test_open_decompressed_reads_concatenated_gzip_members() -> None:
    import gzip

    blob = gzip.compress(b"one ") + gzip.compress(b"two")
    assert open_decompressed(io.BytesIO(blob)).read() == b"one two"


# A zstd stream cut short reads as a short stream (python-zstandard reports no error): extract_layer
# catches that as a truncated tar, and digests catch it everywhere.
@pytest.mark.parametrize("compression", ["gzip"])
def test_truncated_or_corrupt_blob_is_image_format_error(compression: str) -> None:
    buf = io.BytesIO()
    with CompressingWriter(buf, compression) as w:  # type: ignore[arg-type]
        w.write(PAYLOAD)
    blob = buf.getvalue()
    with pytest.raises(ImageFormatError, match=compression):
        open_decompressed(io.BytesIO(blob[: len(blob) // 2])).read()
    corrupt = bytearray(blob)
    corrupt[len(blob) // 2 : len(blob) // 2 + 64] = bytes(64)
    with pytest.raises(ImageFormatError):
        open_decompressed(io.BytesIO(bytes(corrupt))).read()


def test_corrupt_zstd_is_image_format_error() -> None:
    buf = io.BytesIO()
    with CompressingWriter(buf, "zstd") as w:
        w.write(PAYLOAD)
    corrupt = bytearray(buf.getvalue())
    corrupt[8:200] = b"\xff" * 192
    with pytest.raises(ImageFormatError, match="zstd"):
        open_decompressed(io.BytesIO(bytes(corrupt))).read()
