"""USER resolution against the rootfs's own /etc/passwd and /etc/group (never the host's).

Follows BuildKit (executor/oci/user.go) and runc's GetExecUser:
- "" is root (0:0); "uid:gid" with both numeric (or "root") is taken as is.
- Otherwise the user is looked up in passwd: a numeric uid matches by uid, anything else by name. A name
  that is absent is an error; a numeric uid that is absent is allowed (gid 0 unless a group is given).
- An explicit group (name or gid) sets the primary gid and then there are no other groups; without one, the
  supplementary groups are those /etc/group lists the user's name as a member of.
- The primary gid always heads the supplementary list: runc under buildah (the reference builder here) gives
  `groups=1000(app),4242(x)` for a user app in group x, and `groups=0(root)` for root.
- HOME is the passwd home of the final uid (looked up by uid, as runc does), "/" if there is none.

File operations (the directories WORKDIR creates, COPY/ADD --chown) resolve their owner differently, as
BuildKit's file operations do (llb.WithUser, then the file op's readUser): see resolve_file_owner.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kiln.errors import SandboxError
from kiln.rootfs.paths import resolve_in_root

_MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class ResolvedUser:
    """Who a step runs as: setgroups(groups), setgid(gid), setuid(uid)."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    name: str  # the passwd name, "" for a uid without an entry


@dataclass(frozen=True)
class _PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class _GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def _lines(rootfs: Path, path: str) -> Iterator[list[str]]:
    try:
        text = resolve_in_root(rootfs, path).read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            yield line.split(":")


def _int(text: str) -> int | None:
    if not text.isdigit():
        return None
    value = int(text)
    return value if value <= _MAX_ID else None


def _passwd(rootfs: Path) -> list[_PasswdEntry]:
    entries = []
    for f in _lines(rootfs, "/etc/passwd"):
        f += [""] * (7 - len(f))
        uid, gid = _int(f[2]), _int(f[3])
        if uid is not None:
            entries.append(_PasswdEntry(f[0], uid, gid or 0, f[5]))
    return entries


def _groups(rootfs: Path) -> list[_GroupEntry]:
    entries = []
    for f in _lines(rootfs, "/etc/group"):
        f += [""] * (4 - len(f))
        gid = _int(f[2])
        if gid is not None:
            members = tuple(m.strip() for m in f[3].split(",") if m.strip())
            entries.append(_GroupEntry(f[0], gid, members))
    return entries


def _numeric_or_root(text: str) -> int | None:
    return 0 if text == "root" else _int(text)


def _home_of(passwd: list[_PasswdEntry], uid: int) -> str:
    return next((p.home for p in passwd if p.uid == uid and p.home), "/")


def resolve_user(rootfs: Path, user: str) -> ResolvedUser:
    """Resolve USER as written ("", "name", "uid", "name:group", "uid:gid") inside `rootfs`."""
    user_part, sep, group_part = user.partition(":")
    user_part = user_part or "0"  # ":group" is root with that group, as in runc
    passwd = _passwd(rootfs)
    if user == "":
        return ResolvedUser(0, 0, (0,), _home_of(passwd, 0), _name_of(passwd, 0))
    if sep and user_part and group_part:
        fast_uid, fast_gid = _numeric_or_root(user_part), _numeric_or_root(group_part)
        if fast_uid is not None and fast_gid is not None:
            home, name = _home_of(passwd, fast_uid), _name_of(passwd, fast_uid)
            return ResolvedUser(fast_uid, fast_gid, (fast_gid,), home, name)

    if user_part.isdigit() and _int(user_part) is None:
        raise SandboxError(f"user {user_part}: uid out of range")
    wanted_uid = _int(user_part)
    if wanted_uid is not None:
        match = next((p for p in passwd if p.uid == wanted_uid), None)
    else:
        match = next((p for p in passwd if p.name == user_part), None)
        if match is None:
            raise SandboxError(f"unable to find user {user_part}: no matching entries in passwd file")

    uid = match.uid if match else (wanted_uid or 0)
    gid = match.gid if match else 0
    name = match.name if match else ""
    groups = _groups(rootfs)
    supplementary: tuple[int, ...] = ()
    if group_part:
        if group_part.isdigit() and _int(group_part) is None:
            raise SandboxError(f"group {group_part}: gid out of range")
        wanted_gid = _int(group_part)
        if wanted_gid is not None:
            gid = wanted_gid
        else:
            found = next((g for g in groups if g.name == group_part), None)
            if found is None:
                raise SandboxError(f"unable to find group {group_part}: no matching entries in group file")
            gid = found.gid
    elif name:
        supplementary = tuple(g.gid for g in groups if name in g.members)
    groups_with_primary = (gid, *(g for g in dict.fromkeys(supplementary) if g != gid))
    return ResolvedUser(uid, gid, groups_with_primary, _home_of(passwd, uid), name)


def _name_of(passwd: list[_PasswdEntry], uid: int) -> str:
    return next((p.name for p in passwd if p.uid == uid), "")


def resolve_file_owner(rootfs: Path, user: str) -> tuple[int, int]:
    """The (uid, gid) a file operation gives what it creates for ``user`` ("", "name", "uid", "name:group",
    "uid:gid", ":group"): WORKDIR's directories under USER, COPY/ADD --chown. Not what RUN runs as (that is
    resolve_user, with runc's rules).

    BuildKit's rules (llb.WithUser parses the user, the file operation's readUser resolves it):
    - "root" is uid 0 and a number is that uid, without reading passwd (there may be none, FROM scratch); the
      gid is then the same number: USER 9999 gives 9999:9999 where RUN runs with gid 0, and a uid that passwd
      lists with another primary group still gets its own number (buildah agrees).
    - A name is looked up in passwd and gets its uid and primary gid. An unknown name is an error here, where
      BuildKit silently falls back to 0:0.
    - A group after ":" replaces the gid: "root" or a number as is, a name from /etc/group (unknown: an
      error, where BuildKit silently keeps the gid it had).
    """
    user_part, _, group_part = user.partition(":")
    uid, gid = _file_id(rootfs, user_part or "0", "user")
    if group_part:
        gid = _file_id(rootfs, group_part, "group")[0]
    return uid, gid


def _file_id(rootfs: Path, text: str, kind: str) -> tuple[int, int]:
    """A user (or group) of a file operation: (id, primary gid) for a user, (gid, gid) for a group."""
    if text == "root":
        return 0, 0
    if text.isdigit():
        number = _int(text)
        if number is None:
            raise SandboxError(f"{kind} {text}: {'uid' if kind == 'user' else 'gid'} out of range")
        return number, number
    if kind == "user":
        match = next((p for p in _passwd(rootfs) if p.name == text), None)
        if match is None:
            raise SandboxError(f"unable to find user {text}: no matching entries in passwd file")
        return match.uid, match.gid
    found = next((g for g in _groups(rootfs) if g.name == text), None)
    if found is None:
        raise SandboxError(f"unable to find group {text}: no matching entries in group file")
    return found.gid, found.gid
