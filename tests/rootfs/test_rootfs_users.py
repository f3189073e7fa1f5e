"""USER resolution against the rootfs's passwd and group files (BuildKit / runc semantics)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kiln.errors import SandboxError
from kiln.rootfs.users import ResolvedUser, resolve_user

PASSWD = """root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app user:/home/app:/bin/sh
svc:x:1001:1001::/srv:/bin/false
"""
GROUP = """root:x:0:
app:x:1000:
svc:x:1001:app
extra:x:2000:app,svc
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(PASSWD)
    (tmp_path / "etc" / "group").write_text(GROUP)
    return tmp_path


def test_empty_user_is_root_with_only_its_primary_group(root: Path) -> None:
    assert resolve_user(root, "") == ResolvedUser(0, 0, (0,), "/root", "root")


def test_name_gets_passwd_ids_and_member_groups_in_file_order(root: Path) -> None:
    assert resolve_user(root, "app") == ResolvedUser(1000, 1000, (1000, 1001, 2000), "/home/app", "app")


def test_numeric_uid_in_passwd_is_that_user(root: Path) -> None:
    assert resolve_user(root, "1001") == ResolvedUser(1001, 1001, (1001, 2000), "/srv", "svc")


def test_numeric_uid_absent_from_passwd_has_gid_0_and_home_slash(root: Path) -> None:
    assert resolve_user(root, "4242") == ResolvedUser(4242, 0, (0,), "/", "")


def test_explicit_group_by_name_replaces_gid_and_is_the_only_group(root: Path) -> None:
    assert resolve_user(root, "app:extra") == ResolvedUser(1000, 2000, (2000,), "/home/app", "app")


def test_explicit_numeric_group_absent_from_group_file_is_allowed(root: Path) -> None:
    assert resolve_user(root, "app:3333") == ResolvedUser(1000, 3333, (3333,), "/home/app", "app")


def test_uid_gid_pair_takes_the_fast_path(root: Path) -> None:
    # HOME still comes from passwd, by uid, as runc does.
    assert resolve_user(root, "1000:2000") == ResolvedUser(1000, 2000, (2000,), "/home/app", "app")
    assert resolve_user(root, "7:8") == ResolvedUser(7, 8, (8,), "/", "")


def test_unknown_user_name_is_an_error(root: Path) -> None:
    with pytest.raises(SandboxError, match="unable to find user ghost"):
        resolve_user(root, "ghost")


def test_unknown_group_name_is_an_error(root: Path) -> None:
    with pytest.raises(SandboxError, match="unable to find group ghosts"):
        resolve_user(root, "app:ghosts")


def test_missing_passwd_allows_numeric_but_not_names(tmp_path: Path) -> None:
    assert resolve_user(tmp_path, "12") == ResolvedUser(12, 0, (0,), "/", "")
    with pytest.raises(SandboxError):
        resolve_user(tmp_path, "root")


def test_absolute_symlinked_passwd_is_read_from_the_rootfs_not_the_host(root: Path) -> None:
    # /etc/passwd -> /shadow/passwd must resolve to <root>/shadow/passwd, not the host's /shadow/passwd,
    # and -> /etc/../../../etc/passwd must not climb out to the host's /etc/passwd.
    (root / "shadow").mkdir()
    (root / "shadow" / "passwd").write_text("builder:x:77:88::/b:/bin/sh\n")
    os.unlink(root / "etc" / "passwd")
    os.symlink("/shadow/passwd", root / "etc" / "passwd")
    assert resolve_user(root, "builder") == ResolvedUser(77, 88, (88,), "/b", "builder")
    os.unlink(root / "etc" / "passwd")
    os.symlink("../../../../../../etc/passwd", root / "etc" / "passwd")  # loops back onto itself in root
    with pytest.raises(SandboxError):
        resolve_user(root, "root")
