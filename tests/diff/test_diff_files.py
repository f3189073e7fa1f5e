"""File-system comparisons on hand-made images: each test builds two images that differ in one known way."""

from __future__ import annotations

from pathlib import Path

import pytest
from handmade import BASE, E, d, f, write_layout

from kiln.diff import DiffOptions, diff_images
from kiln.diff.model import Difference

pytestmark = pytest.mark.root  # extraction sets owners, devices and security.* xattrs


def changes(tmp_path: Path, a: list[list[E]], b: list[list[E]], **opts: object) -> list[tuple[str, str, str]]:
    spec_a = write_layout(tmp_path / "a", a)
    spec_b = write_layout(tmp_path / "b", b)
    report = diff_images(spec_a, spec_b, DiffOptions(workdir=tmp_path / "work", **opts))  # type: ignore[arg-type]
    return [(x.where, x.change, x.attribute) for x in report.differences]


def test_same_image_is_same(tmp_path: Path) -> None:
    assert changes(tmp_path, [BASE], [BASE]) == []


def test_content_change(tmp_path: Path) -> None:
    got = changes(tmp_path, [BASE], [[*BASE[:3], f("bin/tool", b"#!/bin/bash\n", 0o755)]])
    assert got == [("/bin/tool", "changed", "size"), ("/bin/tool", "changed", "sha256")]


def test_same_size_content_change(tmp_path: Path) -> None:
    got = changes(tmp_path, [[f("x", b"abc")]], [[f("x", b"abd")]])
    assert got == [("/x", "changed", "sha256")]


def test_mode_bits_setuid_setgid_sticky(tmp_path: Path) -> None:
    a = [[f("s", b"x", 0o755), d("t", 0o777), f("g", b"y", 0o755)]]
    b = [[f("s", b"x", 0o4755), d("t", 0o1777), f("g", b"y", 0o2755)]]
    spec_a, spec_b = write_layout(tmp_path / "a", a), write_layout(tmp_path / "b", b)
    report = diff_images(spec_a, spec_b, DiffOptions(workdir=tmp_path))
    assert report.differences == (
        Difference("files", "/g", "changed", "mode", "0755", "2755"),
        Difference("files", "/s", "changed", "mode", "0755", "4755"),
        Difference("files", "/t", "changed", "mode", "0777", "1777"),
    )


def test_owner_change(tmp_path: Path) -> None:
    got = changes(tmp_path, [[f("x", b"1", uid=0, gid=0)]], [[f("x", b"1", uid=1000, gid=50)]])
    assert got == [("/x", "changed", "uid"), ("/x", "changed", "gid")]


def test_symlink_target(tmp_path: Path) -> None:
    got = changes(tmp_path, [[E("l", "symlink", link="/a")]], [[E("l", "symlink", link="a")]])
    assert got == [("/l", "changed", "link")]


def test_type_change_reported_once(tmp_path: Path) -> None:
    got = changes(tmp_path, [[f("x", b"1")]], [[d("x")]])
    assert got == [("/x", "changed", "type")]


def test_only_in_one_side(tmp_path: Path) -> None:
    got = changes(tmp_path, [[f("a"), d("dir"), f("dir/in")]], [[f("b")]])
    assert got == [("/a", "only-a", ""), ("/b", "only-b", ""), ("/dir", "only-a", ""), ("/dir/in", "only-a", "")]


def test_whiteout_deletes_lower_file(tmp_path: Path) -> None:
    # A: file added then whited out in a second layer; B: never there. The flattened trees are equal.
    a = [[d("etc"), f("etc/gone", b"x"), f("etc/kept", b"k")], [d("etc"), f("etc/.wh.gone")]]
    b = [[d("etc"), f("etc/kept", b"k")]]
    assert changes(tmp_path, a, b) == []


def test_opaque_directory(tmp_path: Path) -> None:
    a = [[d("o"), f("o/old1"), f("o/old2")], [d("o"), f("o/.wh..wh..opq"), f("o/new", b"n")]]
    b = [[d("o"), f("o/new", b"n")]]
    assert changes(tmp_path, a, b) == []


def test_deleted_vs_present(tmp_path: Path) -> None:
    a = [[f("x", b"1")], [f(".wh.x")]]
    b = [[f("x", b"1")]]
    assert changes(tmp_path, a, b) == [("/x", "only-b", "")]


def test_hardlink_groups(tmp_path: Path) -> None:
    linked = [[f("x", b"same"), E("y", "hardlink", link="x")]]
    copies = [[f("x", b"same"), f("y", b"same")]]
    spec_a, spec_b = write_layout(tmp_path / "a", linked), write_layout(tmp_path / "b", copies)
    report = diff_images(spec_a, spec_b, DiffOptions(workdir=tmp_path))
    assert report.differences == (
        Difference("files", "/x", "changed", "hardlinks", ["/x", "/y"], []),
        Difference("files", "/y", "changed", "hardlinks", ["/x", "/y"], []),
    )


def test_hardlink_group_of_ignored_path_is_dropped(tmp_path: Path) -> None:
    linked = [[f("x", b"same"), E("y", "hardlink", link="x")]]
    alone = [[f("x", b"same")]]
    assert changes(tmp_path, linked, alone, ignore_paths=("/y",)) == []


def test_device_numbers_and_fifo(tmp_path: Path) -> None:
    a = [[E("null", "char", mode=0o666, dev=(1, 3)), E("blk", "block", mode=0o660, dev=(7, 0)), E("p", "fifo")]]
    b = [[E("null", "char", mode=0o666, dev=(1, 5)), E("blk", "block", mode=0o660, dev=(7, 0)), E("p", "fifo")]]
    spec_a, spec_b = write_layout(tmp_path / "a", a), write_layout(tmp_path / "b", b)
    report = diff_images(spec_a, spec_b, DiffOptions(workdir=tmp_path))
    assert report.differences == (Difference("files", "/null", "changed", "rdev", "1,3", "1,5"),)


# A version 2 file capability: cap_net_bind_service (bit 10) permitted + effective.
CAP = bytes.fromhex("0100000200040000000000000000000000000000")


def test_security_capability_xattr(tmp_path: Path) -> None:
    a = [[f("ping", b"elf", 0o755, xattrs={"security.capability": CAP})]]
    b = [[f("ping", b"elf", 0o755)]]
    spec_a, spec_b = write_layout(tmp_path / "a", a), write_layout(tmp_path / "b", b)
    report = diff_images(spec_a, spec_b, DiffOptions(workdir=tmp_path))
    assert report.differences == (
        Difference("files", "/ping", "changed", "xattr security.capability", CAP.hex(), None),
    )


def test_user_xattr_value(tmp_path: Path) -> None:
    a = [[f("x", b"1", xattrs={"user.k": b"v1"})]]
    b = [[f("x", b"1", xattrs={"user.k": b"v2"})]]
    assert changes(tmp_path, a, b) == [("/x", "changed", "xattr user.k")]


def test_mtimes_only_with_flag(tmp_path: Path) -> None:
    a = [[f("x", b"1", mtime=1_600_000_000)]]
    b = [[f("x", b"1", mtime=1_700_000_000)]]
    assert changes(tmp_path, a, b) == []
    assert changes(tmp_path / "m", a, b, mtimes=True) == [("/x", "changed", "mtime")]


def test_ignore_paths_prefix_and_glob(tmp_path: Path) -> None:
    a = [[d("var"), d("var/cache"), f("var/cache/x", b"1"), f("log.txt", b"a"), f("keep", b"1")]]
    b = [[d("var"), f("log.txt", b"b"), f("keep", b"2")]]
    got = changes(tmp_path, a, b, ignore_paths=("/var/cache", "*.txt"))
    assert got == [("/keep", "changed", "sha256")]


def test_ignore_is_not_a_string_prefix(tmp_path: Path) -> None:
    # Ignoring /var/cache must not ignore /var/cache2.
    got = changes(tmp_path, [[f("cache2", b"1")]], [[]], ignore_paths=("/cache",))
    assert got == [("/cache2", "only-a", "")]


def test_long_path_and_unicode_name(tmp_path: Path) -> None:
    comps = ["c" * 200] * 15  # 3000+ bytes: near PATH_MAX once under the scratch root
    deep = [d("/".join(comps[: i + 1])) for i in range(len(comps))]
    name = "/".join(comps) + "/ünïcødé-名前"
    a = [[*deep, f(name, b"1")]]
    b = [[*deep, f(name, b"2")]]
    got = changes(tmp_path, a, b)
    assert got == [("/" + name, "changed", "sha256")]
