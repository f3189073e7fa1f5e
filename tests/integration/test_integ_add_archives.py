"""ADD of a local archive, as Docker and BuildKit unpack one (issue 12, item 7).

The rules, from moby's pkg/archive Unpack and BuildKit's file backend (unpack: chrootarchive.Untar onto the
destination), which buildah follows too:
- the archive is unpacked with the destination as its root: a symlink the archive makes (``lib -> usr/lib``)
  is followed by later members (``lib/foo`` lands in ``usr/lib/foo``), never out of the destination;
- ``.wh.*`` members are plain files: whiteouts mean something only in image layers (Unpack applies no
  whiteout conversion unless asked for the overlay format; UnpackLayer is the layer applier);
- a leading ``/`` is dropped from member names (filepath.Clean, then joined below the destination), while
  ``..`` that climbs out of the destination is refused ("invalid archive path" / breakout);
- errors are the build's: one line, ``Dockerfile:LINE``, naming the archive, never calling it a layer.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from integ_helpers import Kiln, Outcome, write_context

from support.base_images import OciImage
from support.buildah import Buildah
from support.images import assert_trees_equal, flatten_layout

pytestmark = pytest.mark.root

_TIMEOUT = 300


def _error_line(out: Outcome) -> str:
    out.failed()
    assert "Traceback" not in out.stderr, out.describe()
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out.describe()
    return errors[0]


def _tar(entries: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        for entry in entries:
            info, data = entry if isinstance(entry, tuple) else (entry, b"")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def _dir(name: str, mode: int = 0o755) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    return info


def _hardlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info


def _file(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info, data


def _build(
    kiln: Kiln, tmp_path: Path, dockerfile: str, archive: bytes, name: str = "arc.tar", args: tuple[str, ...] = ()
) -> Outcome:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": dockerfile, name: archive})
    return kiln.build(ctx, *args, timeout=_TIMEOUT)


# --- symlinks the archive makes ---------------------------------------------------------------------------


def _usrmerge_archive() -> bytes:
    """An archive laid out as usr-merged packages are: the compatibility link first, then files through it."""
    return _tar([
        _dir("usr"), _dir("usr/lib"), _symlink("lib", "usr/lib"),
        _file("lib/foo.so", b"foo\n"), _dir("lib/sub"), _file("lib/sub/bar", b"bar\n"),
        _symlink("abs", "/usr"), _file("abs/through-absolute", b"abs\n"),
        # ".." at the archive's root stays there, as in a chroot (Docker) or continuity's RootPath (BuildKit).
        _symlink("up", "../usr/lib"), _file("up/through-dotdot", b"dotdot\n"),
        _hardlink("lib/hardlink", "lib/foo.so"),
    ])  # fmt: skip


@pytest.mark.parametrize("flags", ["", "--chown=7:8"])
@pytest.mark.parametrize("mode", ["overlay", "full"])
@pytest.mark.parametrize("dest", ["/", "/opt/app/"])
def test_add_archive_writes_through_its_own_directory_symlink(
    kiln_bb: Kiln, tmp_path: Path, dest: str, mode: str, flags: str
) -> None:
    dockerfile = f"FROM busybox\nADD {flags} arc.tar {dest}\n"
    out = _build(kiln_bb, tmp_path, dockerfile, _usrmerge_archive(), args=(f"--snapshot-mode={mode}",)).ok()
    layer = out.new_layers(1)[0]
    top = dest.strip("/")
    at = (lambda p: f"{top}/{p}") if top else (lambda p: p)
    assert (layer[at("lib")].type, layer[at("lib")].linkname) == ("symlink", "usr/lib")
    assert (layer[at("abs")].type, layer[at("abs")].linkname) == ("symlink", "/usr")
    # Followed inside the destination, which is the archive's root (an absolute link restarts there).
    for path, size in (("usr/lib/foo.so", 4), ("usr/lib/sub/bar", 4), ("usr/through-absolute", 4),
                       ("usr/lib/through-dotdot", 7)):  # fmt: skip
        assert layer[at(path)].type == "file" and layer[at(path)].size == size, sorted(layer)
    assert at("usr/lib/sub") in layer and layer[at("usr/lib/sub")].type == "dir"
    link = layer[at("usr/lib/hardlink")]
    assert (link.type, link.linkname) == ("hardlink", at("usr/lib/foo.so")), link
    assert not any(name.startswith((at("lib/"), at("abs/"), at("up/"))) for name in layer), sorted(layer)


# --- names that mean something in layers, not in archives ---------------------------------------------------


def test_add_archive_whiteout_names_are_plain_files(kiln_bb: Kiln, tmp_path: Path) -> None:
    """busybox has /bin/sh and /etc/passwd: an archive holding bin/.wh.sh and etc/.wh..wh..opq must add two
    files with those names and remove nothing."""
    archive = _tar([_dir("bin"), _file("bin/.wh.sh", b"not a whiteout\n"), _dir("etc"),
                    _file("etc/.wh..wh..opq", b""), _file("etc/.wh..wh.plnk", b"x")])  # fmt: skip
    out = _build(kiln_bb, tmp_path, "FROM busybox\nADD arc.tar /\nRUN test -e /bin/sh && test -s /etc/passwd\n",
                 archive).ok()  # fmt: skip
    layer = out.new_layers(1)[0]
    assert layer["bin/.wh.sh"].type == "file" and layer["bin/.wh.sh"].size == len(b"not a whiteout\n")
    assert layer["etc/.wh..wh..opq"].type == "file"
    assert layer["etc/.wh..wh.plnk"].type == "file"


def test_add_archive_absolute_member_names_lose_their_leading_slash(kiln: Kiln, tmp_path: Path) -> None:
    archive = _tar([_dir("/abs"), _file("/abs/file", b"abs\n"), _file("/top", b"top\n")])
    out = _build(kiln, tmp_path, "FROM scratch\nADD arc.tar /dest/\n", archive).ok()
    layer = out.new_layers(0)[0]
    assert {"dest/abs", "dest/abs/file", "dest/top"} <= set(layer), sorted(layer)
    assert layer["dest/abs/file"].size == 4


# --- errors --------------------------------------------------------------------------------------------------


def test_add_archive_climbing_out_is_a_located_error(kiln: Kiln, tmp_path: Path) -> None:
    archive = _tar([_file("ok", b"ok\n"), _file("../../escaped", b"out\n")])
    out = _build(kiln, tmp_path, "FROM scratch\nCOPY arc.tar /copy.tar\nADD arc.tar /dest/\n", archive)
    line = _error_line(out)
    assert "Dockerfile:3:" in line, line
    assert "arc.tar" in line and "../../escaped" in line, line
    assert "layer" not in line, line
    assert not (tmp_path / "escaped").exists()


def test_add_truncated_archive_is_a_located_error(kiln: Kiln, tmp_path: Path) -> None:
    whole = _tar([_file("big", b"x" * 100_000)])
    out = _build(kiln, tmp_path, "FROM scratch\nADD arc.tar /dest/\n", whole[:20_000])
    line = _error_line(out)
    assert "Dockerfile:2:" in line and "arc.tar" in line, line
    assert "layer" not in line, line


def test_add_archive_hardlink_to_a_missing_member_is_a_located_error(kiln: Kiln, tmp_path: Path) -> None:
    link = tarfile.TarInfo("link")
    link.type, link.linkname = tarfile.LNKTYPE, "nowhere"
    out = _build(kiln, tmp_path, "FROM scratch\n\nADD arc.tar /dest/\n", _tar([link]))
    line = _error_line(out)
    assert "Dockerfile:3:" in line and "arc.tar" in line and "nowhere" in line, line
    assert "layer" not in line, line


# --- --chmod and --chown -------------------------------------------------------------------------------------


def test_add_archive_chmod_touches_neither_the_destination_nor_the_entries(kiln: Kiln, tmp_path: Path) -> None:
    """BuildKit's unpack makes the destination with copy.MkdirAll(dest, 0755, chown) and passes no mode to the
    archive's entries: --chmod is for copied files, not for what an archive holds (unlike COPY --chmod,
    whose created parents take the mode since BuildKit 0.21)."""
    archive = _tar([_dir("d", 0o750), _file("d/f", b"f\n", 0o640)])
    out = _build(kiln, tmp_path, "FROM scratch\nADD --chmod=0600 --chown=5:6 arc.tar /new/sub/\n", archive).ok()
    layer = out.new_layers(0)[0]
    for made in ("new", "new/sub"):
        assert (layer[made].mode & 0o7777, layer[made].uid, layer[made].gid) == (0o755, 5, 6), layer[made]
    assert (layer["new/sub/d"].mode & 0o7777, layer["new/sub/d/f"].mode & 0o7777) == (0o750, 0o640)
    assert (layer["new/sub/d/f"].uid, layer["new/sub/d/f"].gid) == (5, 6)


# --- the same Dockerfile built by buildah -----------------------------------------------------------------


def _everything_archive() -> bytes:
    """What the tests above check one by one, in one archive, but the ``.wh.*`` names: buildah unpacks those
    into its layer's diff directory, where containers/storage takes them for whiteouts, and then cannot write
    the image at all ("reading blob ...: open .../diff/etc/.wh.passwd: no such file or directory")."""
    return _tar([
        _dir("usr"), _dir("usr/lib"), _symlink("lib", "usr/lib"),
        _file("lib/foo.so", b"foo\n", 0o755), _dir("lib/sub", 0o750), _file("lib/sub/bar", b"bar\n"),
        _symlink("abs", "/usr"), _file("abs/through-absolute", b"abs\n"),
        _hardlink("lib/hardlink", "lib/foo.so"),
        _symlink("up", "../usr/lib"), _file("up/through-dotdot", b"dotdot\n"),
        _file("/absolute-name", b"slash\n"),
    ])  # fmt: skip


@pytest.mark.buildah
@pytest.mark.parametrize("dest", ["/", "/opt/app/"])
def test_add_archive_matches_buildah(
    kiln_bb: Kiln, buildah: Buildah, buildah_build: Callable[..., OciImage], tmp_path: Path,
    busybox_image: OciImage, dest: str,
) -> None:  # fmt: skip
    dockerfile = "FROM {base}\nADD arc.tar " + dest + "\nRUN cat /etc/passwd > /passwd-still-there\n"
    ours = write_context(tmp_path / "kiln-ctx", {"Dockerfile": dockerfile.format(base="busybox"),
                                                 "arc.tar": _everything_archive()})  # fmt: skip
    theirs = write_context(tmp_path / "buildah-ctx", {"Dockerfile": dockerfile.format(base=buildah.oci_ref(
        busybox_image)), "arc.tar": _everything_archive()})  # fmt: skip
    out = kiln_bb.build(ours, timeout=_TIMEOUT).ok()
    ref = buildah_build(theirs, theirs / "Dockerfile", tmp_path / "buildah-layout")
    expected = flatten_layout(ref.layout, ref.tag, tmp_path)
    actual = flatten_layout(out.layout, out.tag, tmp_path)
    volatile = {"/etc/resolv.conf", "/etc/hosts", "/etc/hostname", "/dev", "/proc", "/sys", "/run"}
    assert_trees_equal(expected, actual, ignore_paths=volatile)
    top = dest.rstrip("/")
    for path in ("usr/lib/foo.so", "usr/lib/through-dotdot", "usr/through-absolute", "absolute-name"):
        assert actual[f"{top}/{path}"].type == "file", path
    assert actual["/passwd-still-there"].size > 0
