"""Build contexts made to hurt the builder: special files, archives whose symlinks lead to the host, and a
kiln dir inside the context. Each build must end (no hang), touch nothing outside its stage root, and either
succeed with an image made only of what the context holds or fail with a one-line error naming the file."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from integ_helpers import Kiln, Outcome, files_in, write_context

pytestmark = pytest.mark.root

# A build that hangs on a FIFO must fail the test, not the test run.
_BUILD_TIMEOUT = 120


def _error_line(out: Outcome) -> str:
    """The one error line of a failed build (no traceback)."""
    out.failed()
    assert "Traceback" not in out.stderr, out.describe()
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out.describe()
    return errors[0]


def _tar(entries: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for entry in entries:
            info, data = entry if isinstance(entry, tuple) else (entry, b"")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info, data


# --- special files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keyword", ["ADD", "COPY"])
def test_a_fifo_named_by_add_or_copy_is_a_located_error(kiln: Kiln, tmp_path: Path, keyword: str) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": f"FROM scratch\n{keyword} fifo /f\n"})
    os.mkfifo(ctx / "fifo")
    line = _error_line(kiln.build(ctx, timeout=_BUILD_TIMEOUT))
    assert line.startswith("error: Dockerfile:2: ") and " fifo: is a named pipe (FIFO); " in line, line


def test_a_fifo_in_a_copied_directory_is_an_error_unless_dockerignored(kiln: Kiln, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM scratch\nCOPY . /app/\n", "src/a.txt": "a\n"})
    os.mkfifo(ctx / "src" / "pipe")
    line = _error_line(kiln.build(ctx, timeout=_BUILD_TIMEOUT))
    assert line.startswith("error: Dockerfile:2: COPY: src/pipe: is a named pipe (FIFO)"), line

    (ctx / ".dockerignore").write_text("**/pipe\n")
    layers = kiln.build(ctx, timeout=_BUILD_TIMEOUT).ok().new_layers(0)
    assert set(files_in(layers[0])) - {"."} == {"app", "app/.dockerignore", "app/Dockerfile", "app/src",
                                                "app/src/a.txt"}  # fmt: skip


def test_a_fifo_dockerignore_is_an_error(kiln: Kiln, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM scratch\nCOPY a /a\n", "a": "a\n"})
    os.mkfifo(ctx / ".dockerignore")
    line = _error_line(kiln.build(ctx, timeout=_BUILD_TIMEOUT))
    assert line == f"error: {ctx / '.dockerignore'}: is a named pipe (FIFO), not a regular file", line


# --- archives whose symlinks lead out of the stage root -----------------------------------------------------


def test_add_archive_through_a_symlink_to_slash_stays_in_the_root(kiln: Kiln, tmp_path: Path) -> None:
    """`lnk -> /` then `lnk/usr/...`: unpacked below the destination, and declared there, never read on the
    host: the layer holds the archive's entries and nothing of the host's /usr."""
    archive = _tar([_symlink("lnk", "/"), _dir("lnk/usr"), _dir("lnk/usr/bin"),
                    _file("lnk/usr/bin/kiln-probe", b"probe\n")])  # fmt: skip
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM scratch\nADD arc.tar /app/\n", "arc.tar": archive})
    layers = kiln.build(ctx, timeout=_BUILD_TIMEOUT).ok().new_layers(0)
    assert len(layers) == 1
    layer = layers[0]
    assert set(files_in(layer)) - {"."} == {"app", "app/lnk", "app/usr", "app/usr/bin", "app/usr/bin/kiln-probe"}
    assert (layer["app/lnk"].type, layer["app/lnk"].linkname) == ("symlink", "/")
    assert layer["app/usr/bin/kiln-probe"].size == len(b"probe\n")
    assert not Path("/usr/bin/kiln-probe").exists()


def test_add_archive_into_busybox_root_through_a_symlink(kiln_bb: Kiln, tmp_path: Path) -> None:
    archive = _tar([_symlink("lnk", "/"), _file("lnk/usr/kiln-probe", b"probe\n")])
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nADD arc.tar /\n", "arc.tar": archive})
    layer = kiln_bb.build(ctx, timeout=_BUILD_TIMEOUT).ok().new_layers(1)[0]
    assert set(files_in(layer)) - {"."} == {"lnk", "usr", "usr/kiln-probe"}
    assert not Path("/usr/kiln-probe").exists()


def test_add_chown_never_chowns_a_host_file_through_a_symlink(kiln: Kiln, tmp_path: Path) -> None:
    """The archive links to a real host directory: --chown must change the copy in the image, not the host's."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "victim").write_text("the host's\n")
    archive = _tar([_symlink("lnk", str(host)), _file("lnk/victim", b"the image's\n")])
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM scratch\nADD --chown=4242:4242 arc.tar /app/\n",
                                           "arc.tar": archive})  # fmt: skip
    out = kiln.build(ctx, timeout=_BUILD_TIMEOUT)
    victim = os.stat(host / "victim")
    assert (victim.st_uid, victim.st_gid) == (0, 0)
    assert (host / "victim").read_text() == "the host's\n"
    assert sorted(os.listdir(host)) == ["victim"]
    layer = out.ok().new_layers(0)[0]
    landed = layer[f"app{host}/victim"]  # the absolute link restarts at the destination, the archive's root
    assert (landed.uid, landed.gid, landed.size) == (4242, 4242, len(b"the image's\n"))
    assert not any(name.startswith("app/lnk/") for name in layer)


def test_copy_parents_through_an_image_symlink_writes_nothing_on_the_host(kiln: Kiln, tmp_path: Path) -> None:
    """An earlier layer makes /out/a a symlink to a host directory; COPY --parents a/b/f.txt /out/ follows it
    inside the stage root, as the container would, and leaves the host directory empty."""
    host = tmp_path / "host"
    host.mkdir()
    links = _tar([_dir("out"), _symlink("out/a", str(host))])
    ctx = write_context(tmp_path / "ctx", {
        "Dockerfile": "# syntax=docker/dockerfile:1.7-labs\nFROM scratch\nADD links.tar /\n"
                      "COPY --parents a/b/f.txt /out/\n",
        "links.tar": links, "a/b/f.txt": "f\n",
    })  # fmt: skip
    layers = kiln.build(ctx, timeout=_BUILD_TIMEOUT).ok().new_layers(0)
    assert os.listdir(host) == []
    assert f"{str(host).lstrip('/')}/b/f.txt" in layers[1]


# --- the kiln dir inside the context -------------------------------------------------------------------------


def test_copy_dot_with_the_kiln_dir_inside_the_context(tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM scratch\nCOPY . /app\nCOPY . /again\n",
                                           "src/main.py": "print()\n"})  # fmt: skip
    kiln = Kiln(ctx / ".kiln", tmp_path / "out")  # kiln build --kiln-dir CONTEXT/.kiln
    kiln.out_dir.mkdir()
    layers = kiln.build(ctx, timeout=_BUILD_TIMEOUT).ok().new_layers(0)
    for layer, top in zip(layers, ("app", "again"), strict=True):
        assert set(files_in(layer)) - {"."} == {top, f"{top}/Dockerfile", f"{top}/src", f"{top}/src/main.py"}
    kiln.assert_clean()


def _pax_archive_with_a_long_digit_value(path: Path) -> None:
    """A valid tar whose first member has a 300 KB PAX value of digits: Python 3.11's tarfile parses such
    headers in quadratic time (CVE-2024-6232), so reading it with tarfile hangs a build."""
    info = tarfile.TarInfo("hello.txt")
    data = b"hello\n"
    info.size = len(data)
    info.pax_headers = {"comment": "1" * 300_000}
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data))


def test_add_of_an_archive_with_a_huge_pax_value_does_not_hang(kiln_bb: Kiln, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nADD pax.tar /x/\n"})
    _pax_archive_with_a_long_digit_value(ctx / "pax.tar")
    out = kiln_bb.build(ctx, timeout=_BUILD_TIMEOUT).ok()
    files = {name for layer in out.new_layers(1) for name in layer}
    assert "x/hello.txt" in files, sorted(files)
