"""Owners of what file operations create (WORKDIR under USER, COPY --chown): BuildKit's rules, not RUN's.

BuildKit parses the user with llb.WithUser ("root" and numbers are ids, read without passwd) and resolves it
in the file operation (solver/llbsolver/file readUser: a numeric uid gets the same number as gid)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.errors import SandboxError
from kiln.rootfs.users import resolve_file_owner, resolve_user

PASSWD = """root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app user:/home/app:/bin/sh
odd:x:1500:2000::/home/odd:/bin/sh
"""
GROUP = """root:x:0:
app:x:1000:
extra:x:3000:app
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(PASSWD)
    (tmp_path / "etc" / "group").write_text(GROUP)
    return tmp_path


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A root filesystem with no /etc at all, as FROM scratch gives."""
    path = tmp_path / "scratch"
    path.mkdir()
    return path


def test_root_without_passwd_is_uid_0(scratch: Path) -> None:
    # BuildKit and kaniko make `FROM scratch`, `USER root`, `WORKDIR /w` a 0:0 directory.
    assert resolve_file_owner(scratch, "root") == (0, 0)
    assert resolve_file_owner(scratch, "root:root") == (0, 0)
    assert resolve_file_owner(scratch, "root:77") == (0, 77)


def test_root_with_passwd_is_uid_0(root: Path) -> None:
    assert resolve_file_owner(root, "root") == (0, 0)
    assert resolve_file_owner(root, "root:extra") == (0, 3000)


def test_names_still_need_passwd(root: Path, scratch: Path) -> None:
    assert resolve_file_owner(root, "app") == (1000, 1000)
    assert resolve_file_owner(root, "app:extra") == (1000, 3000)
    with pytest.raises(SandboxError, match="unable to find user app"):
        resolve_file_owner(scratch, "app")
    with pytest.raises(SandboxError, match="unable to find group nope"):
        resolve_file_owner(root, "app:nope")


def test_run_keeps_runc_rules(scratch: Path) -> None:
    # RUN's resolution is runc's: "root" is a name that must be in passwd.
    with pytest.raises(SandboxError, match="unable to find user root"):
        resolve_user(scratch, "root")


def test_numeric_user_without_passwd_entry_gets_its_number_as_gid(root: Path, scratch: Path) -> None:
    # BuildKit: USER 9999, WORKDIR /a/b gives 9999:9999 directories (readUser, ByID: gid = uid).
    assert resolve_file_owner(root, "9999") == (9999, 9999)
    assert resolve_file_owner(scratch, "9999") == (9999, 9999)
    assert resolve_file_owner(scratch, "9999:5") == (9999, 5)


def test_numeric_user_listed_with_another_group_still_gets_its_number(root: Path) -> None:
    # By id, passwd is not read: odd is 1500 with primary group 2000, USER 1500 still gives 1500:1500 (buildah
    # 1.28 does the same); by name it gets passwd's group.
    assert resolve_file_owner(root, "1500") == (1500, 1500)
    assert resolve_file_owner(root, "odd") == (1500, 2000)
    assert resolve_file_owner(root, "1500:extra") == (1500, 3000)


def test_run_keeps_gid_0_for_an_unknown_numeric_uid(root: Path) -> None:
    # runc: an unknown numeric uid runs with gid 0; only file operations use the uid's number.
    assert resolve_user(root, "9999").gid == 0
    assert resolve_user(root, "1500").gid == 2000


def test_ids_out_of_range_are_refused(root: Path) -> None:
    with pytest.raises(SandboxError, match="out of range"):
        resolve_file_owner(root, str(2**31))
    with pytest.raises(SandboxError, match="out of range"):
        resolve_file_owner(root, f"1:{2**31}")
