"""extract_layer(mode="archive"): an archive ADD unpacks is no layer (issue 12, item 7).

Expected values are Docker's and BuildKit's: moby's archive.Unpack (the legacy builder, chrooted into the
destination) and BuildKit's unpack (containerd's archive.Apply with whiteout conversion off, names resolved by
continuity's RootPath, which bounds ".." at the root): ``.wh.*`` are plain files, a leading "/" is dropped, a
symlink's ".." at the root stays at the root; a name whose own ".." climbs out is refused (moby's
breakoutError). Nothing outside the root is ever touched.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from layertree import make_tar, tar_entry
from test_layers_extract_unsafe import PASSWD, everything_outside

from kiln.errors import ImageFormatError, UnsafePathError
from kiln.layers import extract_layer

pytestmark = pytest.mark.root


def unpack(root: Path, *entries: tuple[tarfile.TarInfo, bytes], mode: str = "archive") -> None:
    extract_layer(io.BytesIO(make_tar(*entries)), root, mode=mode, label="arc.tar")  # type: ignore[arg-type]


def test_whiteout_names_are_plain_files(sandbox: tuple[Path, Path]) -> None:
    root, _ = sandbox
    (root / "keep").write_text("lower")
    (root / "d").mkdir()
    (root / "d/old").write_text("lower")
    unpack(
        root,
        tar_entry(".wh.keep", data=b"a"),
        tar_entry("d", tarfile.DIRTYPE, mode=0o755),
        tar_entry("d/.wh..wh..opq", data=b""),
        tar_entry(".wh..wh.plnk", tarfile.DIRTYPE, mode=0o700),
    )
    assert (root / "keep").read_text() == "lower"
    assert (root / "d/old").read_text() == "lower"
    assert (root / ".wh.keep").read_bytes() == b"a"
    assert (root / "d/.wh..wh..opq").is_file()
    assert (root / ".wh..wh.plnk").is_dir()
    assert not os.listxattr(root / "d")


def test_the_same_names_are_whiteouts_in_a_layer(sandbox: tuple[Path, Path]) -> None:
    """The control: applied as a layer, the same entries delete."""
    root, _ = sandbox
    (root / "keep").write_text("lower")
    unpack(root, tar_entry(".wh.keep", data=b""), mode="apply")
    assert not (root / "keep").exists() and not (root / ".wh.keep").exists()


def test_a_leading_slash_is_dropped_from_names_and_hardlink_targets(sandbox: tuple[Path, Path]) -> None:
    root, _ = sandbox
    passwd = PASSWD.lstat()
    unpack(
        root,
        tar_entry("/abs", tarfile.DIRTYPE, mode=0o755),
        tar_entry("/abs/f", data=b"f"),
        tar_entry("/etc/passwd", data=b"mine"),
        tar_entry("link", tarfile.LNKTYPE, linkname="/etc/passwd"),
    )
    assert (root / "abs/f").read_bytes() == b"f"
    assert os.stat(root / "link").st_ino == os.stat(root / "etc/passwd").st_ino
    assert PASSWD.lstat().st_nlink == passwd.st_nlink


def test_a_symlinks_dotdot_stays_at_the_root(tmp_path: Path, sandbox: tuple[Path, Path]) -> None:
    root, outside = sandbox
    before = everything_outside(tmp_path, root)
    unpack(
        root,
        tar_entry("lib", tarfile.SYMTYPE, linkname="../usr/lib"),
        tar_entry("lib/foo", data=b"foo"),
        tar_entry("deep", tarfile.SYMTYPE, linkname="../../../../../../outside"),
        tar_entry("deep/victim", data=b"inside"),
    )
    assert (root / "usr/lib/foo").read_bytes() == b"foo"
    assert (root / "outside/victim").read_bytes() == b"inside"
    assert (outside / "victim").read_text() == "precious"
    assert everything_outside(tmp_path, root) == before


@pytest.mark.parametrize("name", ["../escape", "ok/../../escape", "/../../outside/victim"])
def test_names_that_climb_out_are_refused(tmp_path: Path, sandbox: tuple[Path, Path], name: str) -> None:
    root, outside = sandbox
    before = everything_outside(tmp_path, root)
    with pytest.raises(UnsafePathError) as raised:
        unpack(root, tar_entry(name, data=b"x"))
    assert str(raised.value).startswith("arc.tar: ") and "layer" not in str(raised.value)
    assert everything_outside(tmp_path, root) == before
    assert (outside / "victim").read_text() == "precious"


def test_hardlinks_that_climb_out_are_refused(sandbox: tuple[Path, Path]) -> None:
    root, _ = sandbox
    passwd = PASSWD.lstat()
    with pytest.raises(UnsafePathError):
        unpack(root, tar_entry("p", tarfile.LNKTYPE, linkname="../../../../../../../../etc/passwd"))
    assert PASSWD.lstat().st_nlink == passwd.st_nlink


def test_errors_name_the_archive_not_a_layer(sandbox: tuple[Path, Path]) -> None:
    root, _ = sandbox
    with pytest.raises(ImageFormatError) as raised:
        unpack(root, tar_entry("link", tarfile.LNKTYPE, linkname="nowhere"))
    message = str(raised.value)
    assert message.startswith("arc.tar: link: ") and "nowhere" in message and "layer" not in message


@pytest.mark.parametrize("mode", ["archive", "apply", "overlay"])
def test_a_hardlink_entrys_metadata_goes_to_the_shared_inode(sandbox: tuple[Path, Path], mode: str) -> None:
    """Docker, containerd and buildah chown, chmod and chtimes the link they made: the inode ends up with the
    link entry's metadata (buildah: a 0755 file hardlinked by a 0644 entry is 0644)."""
    root, _ = sandbox
    target = tar_entry("f", data=b"data", mode=0o755)
    link = tar_entry("l", tarfile.LNKTYPE, linkname="f", mode=0o640)
    link[0].uid, link[0].gid, link[0].mtime = 7, 8, 1_000_000
    unpack(root, target, link, mode=mode)
    st = os.lstat(root / "f")
    assert (st.st_ino, st.st_nlink) == (os.lstat(root / "l").st_ino, 2)
    assert (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid, int(st.st_mtime)) == (oct(0o640), 7, 8, 1_000_000)


def test_a_hardlink_with_the_same_owner_keeps_the_targets_capability(sandbox: tuple[Path, Path]) -> None:
    """kiln's own writer gives a link the inode's metadata but no xattrs: applying it must not chown (which
    drops security.capability) when nothing differs."""
    from layertree import CAP_NET_RAW

    root, _ = sandbox
    target = tar_entry(
        "ping", data=b"elf", mode=0o755, pax={"SCHILY.xattr.security.capability": CAP_NET_RAW.decode("latin-1")}
    )
    unpack(root, target, tar_entry("ping2", tarfile.LNKTYPE, linkname="ping", mode=0o755), mode="apply")
    assert os.getxattr(root / "ping2", "security.capability") == CAP_NET_RAW
