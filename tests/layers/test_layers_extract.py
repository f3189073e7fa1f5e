"""extract_layer: round trips, whiteouts in both modes (overlay mode checked on a real overlay mount),
replacing existing files, corrupt and truncated layers."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from layertree import MTIME, describe, make_full_tree, make_tar, tar_entry

from kiln.errors import ImageFormatError
from kiln.layers import CompressingWriter, extract_layer, write_layer_tar

pytestmark = pytest.mark.root


def layer_blob(root: Path, paths: list[str], deletions: list[str] | None = None, compression: str = "gzip") -> bytes:
    buf = io.BytesIO()
    with CompressingWriter(buf, compression) as w:  # type: ignore[arg-type]
        write_layer_tar(root, paths, deletions or [], w)
    return buf.getvalue()


def extract(blob: bytes, root: Path, mode: str = "apply") -> object:
    root.mkdir(parents=True, exist_ok=True)
    return extract_layer(io.BytesIO(blob), root, mode=mode)  # type: ignore[arg-type]


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_round_trip_keeps_every_kind_and_all_metadata(tmp_path: Path, compression: str) -> None:
    src = tmp_path / "src"
    paths = make_full_tree(src)
    buf = io.BytesIO()
    with CompressingWriter(buf, compression) as w:  # type: ignore[arg-type]
        tar_stats = write_layer_tar(src, paths, [], w)
    stats = extract(buf.getvalue(), tmp_path / "dst")
    assert describe(tmp_path / "dst") == describe(src)
    assert stats.diff_id == w.digests.diff_id  # type: ignore[attr-defined]
    assert stats.entries == tar_stats.entries == len(paths)  # type: ignore[attr-defined]
    assert stats.content_bytes == tar_stats.content_bytes  # type: ignore[attr-defined]
    out = subprocess.run(["getcap", str(tmp_path / "dst/bin/ping")], capture_output=True, text=True)
    if out.returncode == 0 and out.stdout:
        assert "cap_net_raw=ep" in out.stdout


def test_gnu_tar_archive_extracts_like_gnu_tar(tmp_path: Path) -> None:
    """A layer made by GNU tar (not by us) gives the same tree with extract_layer as with GNU tar itself."""
    src = tmp_path / "src"
    make_full_tree(src)
    tar = tmp_path / "gnu.tar"
    subprocess.run(
        ["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "--format=posix", "-cf", str(tar),
         "-C", str(src), "."], check=True,
    )
    extract(tar.read_bytes(), tmp_path / "dst")
    assert describe(tmp_path / "dst") == describe(src)


def base_layer(tmp_path: Path) -> bytes:
    base = tmp_path / "base-src"
    for d in ["gone-dir/sub", "opq/keepme", "again", "keep"]:
        (base / d).mkdir(parents=True)
    for f in ["gone", "gone-dir/sub/f", "opq/old", "opq/keepme/old2", "again/old", "keep/f", "file-then-dir"]:
        (base / f).write_text(f)
    return layer_blob(base, [str(p.relative_to(base)) for p in base.rglob("*")])


def second_layer() -> bytes:
    """Whiteouts, an opaque directory with entries on both sides of its marker, a re-created directory."""
    return make_tar(
        tar_entry(".wh.gone"),
        tar_entry(".wh.gone-dir"),
        tar_entry("again", tarfile.DIRTYPE, mode=0o755),
        tar_entry("again/new", data=b"new"),
        tar_entry(".wh.again"),  # after this layer re-created it: removes only what lower layers had
        tar_entry("opq", tarfile.DIRTYPE, mode=0o755),
        tar_entry("opq/-before", data=b"sorted before the marker"),
        tar_entry("opq/.wh..wh..opq"),
        tar_entry("opq/keepme", tarfile.DIRTYPE, mode=0o755),
        tar_entry("opq/keepme/new2", data=b"n2"),
        tar_entry(".wh.file-then-dir"),
        tar_entry("file-then-dir", tarfile.DIRTYPE, mode=0o755),
        tar_entry("file-then-dir/x", data=b"x"),
    )


EXPECTED_AFTER_BOTH = {
    "again": "dir", "again/new": "file", "opq": "dir", "opq/-before": "file", "opq/keepme": "dir",
    "opq/keepme/new2": "file", "keep": "dir", "keep/f": "file", "file-then-dir": "dir", "file-then-dir/x": "file",
}


def test_apply_mode_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    extract(base_layer(tmp_path), root)
    stats = extract(second_layer(), root)
    assert {p: m.kind for p, m in describe(root).items()} == EXPECTED_AFTER_BOTH
    assert stats.whiteouts == 5  # type: ignore[attr-defined]
    assert (root / "opq/keepme/new2").read_bytes() == b"n2"


@pytest.fixture
def overlay_mount(tmp_path: Path) -> Iterator[Path]:
    merged = tmp_path / "merged"
    merged.mkdir()
    try:
        yield merged
    finally:
        if os.path.ismount(merged):
            subprocess.run(["umount", str(merged)], check=True)


def test_overlay_mode_stacks_under_a_real_overlay_mount(tmp_path: Path, overlay_mount: Path) -> None:
    lower1, lower2 = tmp_path / "l1", tmp_path / "l2"
    base = base_layer(tmp_path)
    extract(base, lower1, "overlay")
    extract(second_layer(), lower2, "overlay")
    # The layer directory holds overlayfs' own whiteouts and opaque markers, not .wh. files.
    gone = os.lstat(lower2 / "gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(lower2 / "opq", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(lower2 / "again", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(lower2 / "file-then-dir", "trusted.overlay.opaque") == b"y"
    assert not any(p.name.startswith(".wh.") for p in lower2.rglob("*"))
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower2}:{lower1}", str(overlay_mount)], check=True
    )
    merged = {p: m.kind for p, m in describe(overlay_mount).items()}
    assert merged == EXPECTED_AFTER_BOTH
    # And the merged view is what apply mode makes of the same layers in one directory.
    flat = tmp_path / "flat"
    extract(base, flat)
    extract(second_layer(), flat)
    assert describe(overlay_mount, dir_mtimes=False) == describe(flat, dir_mtimes=False)


def test_our_whiteouts_delete_in_apply_mode(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    extract(base_layer(tmp_path), root)
    upper = tmp_path / "upper"
    (upper / "keep").mkdir(parents=True)
    (upper / "keep/new").write_text("n")
    extract(layer_blob(upper, ["keep/new"], ["gone", "gone-dir", "gone-dir/sub/f", "keep/f"]), root)
    assert sorted(describe(root)) == sorted(
        ["again", "again/old", "opq", "opq/old", "opq/keepme", "opq/keepme/old2", "keep", "keep/new",
         "file-then-dir"]
    )


def test_existing_files_are_replaced_not_written_through(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    outside = tmp_path / "outside"
    outside.write_text("untouched")
    src = tmp_path / "src"
    (src / "dir-becomes-file/sub").mkdir(parents=True)
    (src / "file-becomes-dir").write_text("f")
    (src / "file-becomes-link").write_text("f")
    (src / "link-becomes-file").symlink_to(outside)
    (src / "shared").write_text("hardlinked in the lower layer")
    os.link(src / "shared", src / "shared2")
    extract(layer_blob(src, [str(p.relative_to(src)) for p in src.rglob("*")]), root)
    assert (root / "shared").stat().st_nlink == 2
    extract(
        make_tar(
            tar_entry("dir-becomes-file", data=b"now a file"),
            tar_entry("file-becomes-dir", tarfile.DIRTYPE, mode=0o755),
            tar_entry("file-becomes-link", tarfile.SYMTYPE, linkname="/etc/hostname"),
            tar_entry("link-becomes-file", data=b"replaced"),
            tar_entry("shared", data=b"new content"),
        ),
        root,
    )
    assert (root / "dir-becomes-file").read_bytes() == b"now a file"
    assert (root / "file-becomes-dir").is_dir()
    assert os.readlink(root / "file-becomes-link") == "/etc/hostname"
    assert not (root / "link-becomes-file").is_symlink()
    assert (root / "link-becomes-file").read_bytes() == b"replaced"
    assert outside.read_text() == "untouched"
    # The other name of a hardlinked file keeps the old content.
    assert (root / "shared2").read_text() == "hardlinked in the lower layer"


def test_directory_mtimes_survive_their_contents(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    extract(
        make_tar(
            tar_entry("d", tarfile.DIRTYPE, mode=0o755),
            tar_entry("d/e", tarfile.DIRTYPE, mode=0o700),
            tar_entry("d/e/f", data=b"f"),
            tar_entry("d/g", data=b"g"),
        ),
        root,
    )
    for p in ["d", "d/e", "d/e/f", "d/g"]:
        assert int((root / p).lstat().st_mtime) == MTIME, p
    assert stat.S_IMODE((root / "d/e").stat().st_mode) == 0o700


def test_missing_parents_are_created(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    extract(make_tar(tar_entry("a/b/c", data=b"c")), root)
    assert (root / "a/b/c").read_bytes() == b"c"
    assert stat.S_IMODE((root / "a").stat().st_mode) == 0o755


def test_overlay_xattrs_in_a_layer_are_ignored(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    extract(
        make_tar(
            tar_entry("f", data=b"f", pax={"SCHILY.xattr.trusted.overlay.redirect": "/etc/shadow",
                                           "SCHILY.xattr.user.overlay.metacopy": "",
                                           "SCHILY.xattr.user.ok": "yes"}),
        ),
        root,
    )
    assert os.listxattr(root / "f") == ["user.ok"]


def whole_tar(tmp_path: Path) -> bytes:
    src = tmp_path / "src"
    src.mkdir()
    (src / "first").write_bytes(os.urandom(5000))
    (src / "second").write_bytes(os.urandom(5000))
    buf = io.BytesIO()
    write_layer_tar(src, ["first", "second"], [], buf)
    return buf.getvalue()


def test_truncated_tar_names_the_entry(tmp_path: Path) -> None:
    data = whole_tar(tmp_path)
    # Cut inside the content of "second" (headers: 512 each, contents padded to 5120).
    cut = data[: 512 + 5120 + 512 + 1000]
    with pytest.raises(ImageFormatError, match="second"):
        extract(cut, tmp_path / "dst")
    # Cut inside a header.
    with pytest.raises(ImageFormatError, match="truncated|bad header|end of data"):
        extract(data[: 512 + 5120 + 100], tmp_path / "dst2")


def test_truncated_compressed_layers_are_refused(tmp_path: Path) -> None:
    for compression in ["gzip", "zstd"]:
        src = tmp_path / f"src-{compression}"
        src.mkdir()
        (src / "big").write_bytes(os.urandom(200_000))
        blob = layer_blob(src, ["big"], compression=compression)
        with pytest.raises(ImageFormatError, match="big"):
            extract(blob[: len(blob) // 2], tmp_path / f"dst-{compression}")


def test_garbage_in_the_middle_is_refused(tmp_path: Path) -> None:
    data = bytearray(whole_tar(tmp_path))
    second_header = 512 + 5120
    data[second_header : second_header + 512] = os.urandom(512)
    with pytest.raises(ImageFormatError, match="bad header"):
        extract(bytes(data), tmp_path / "dst")


def test_empty_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageFormatError):
        extract(b"", tmp_path / "dst")


def test_non_utf8_names_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    raw = b"latin1-\xe9t\xe9"  # not valid UTF-8
    with open(os.path.join(os.fsencode(src), raw), "wb") as f:
        f.write(b"bytes name")
    name = os.fsdecode(raw)
    dst = tmp_path / "dst"
    extract(layer_blob(src, [name]), dst)
    assert os.listdir(os.fsencode(dst)) == [raw]
    assert describe(dst) == describe(src)


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n += 1
    return str(n).encode() + body


def test_binary_xattr_without_hdrcharset_as_go_writes_it(tmp_path: Path) -> None:
    """Go's archive/tar writes binary xattr values raw, without hdrcharset=BINARY."""
    cap = bytes.fromhex("01000002" "00000080" "00000000" "00000000" "00000000")  # cap_setpcap-like bits, >0x7f
    records = _pax_record(b"SCHILY.xattr.security.capability", cap) + _pax_record(b"path", b"bin/tool")
    xhdr = tarfile.TarInfo("PaxHeaders/tool")
    xhdr.type = tarfile.XHDTYPE
    xhdr.size = len(records)
    body = tarfile.TarInfo("bin/tool")
    body.size = 4
    body.mode = 0o755
    data = (
        xhdr.tobuf(tarfile.USTAR_FORMAT) + records + bytes(-len(records) % 512)
        + body.tobuf(tarfile.USTAR_FORMAT) + b"tool" + bytes(508) + bytes(1024)
    )
    assert b"hdrcharset" not in data
    extract(data, tmp_path / "dst")
    assert os.getxattr(tmp_path / "dst/bin/tool", "security.capability") == cap


@pytest.mark.parametrize(
    "tar_flags",
    [
        ["--format=gnu"],
        ["--format=posix", "--sparse-version=0.0"],
        ["--format=posix", "--sparse-version=0.1"],
        ["--format=posix", "--sparse-version=1.0"],
    ],
)
def test_gnu_tar_sparse_files_keep_their_holes(tmp_path: Path, tar_flags: list[str]) -> None:
    """Every GNU tar sparse format extracts to the same bytes, and the holes stay holes (never written)."""
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.seek(1 << 20)
        f.write(b"hello")
        f.seek(3 << 20)
        f.write(b"world")
        f.truncate(8 << 20)
    tar = tmp_path / "sparse.tar"
    subprocess.run(["tar", "--sparse", *tar_flags, "-cf", str(tar), "-C", str(src), "sparse"], check=True)
    extract(tar.read_bytes(), tmp_path / "dst")
    out = tmp_path / "dst/sparse"
    assert out.read_bytes() == (src / "sparse").read_bytes()
    assert out.stat().st_blocks * 512 < 1 << 20
