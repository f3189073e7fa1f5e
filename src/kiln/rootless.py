"""Building as an ordinary user: kiln enters a user namespace of its own, where it is root over the user's
subordinate IDs, and builds there as root does.

The map: inside, 0 is the user; 1 and up are the ranges /etc/subuid and /etc/subgid give the user, written by
newuidmap and newgidmap (Debian's uidmap: setuid helpers that check those files), as podman and buildah do.
Without ranges (or without the helpers) the map holds one ID, the user as 0: the build works, but no file can be
owned by anyone else, and kiln says so.

Only a process outside the namespace may write its maps through the helpers, so the namespace is entered by a
child: it unshares a user and a mount namespace, the parent writes its maps, and the child executes kiln again,
root in there. The parent passes on the signals that would stop kiln and exits with the child's status.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kiln import linux
from kiln.errors import KilnError

# Set in the child, so that it knows where it runs: "full", or "single:WHY" for a one-ID map.
ENV_MARK = "KILN_USERNS"
SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
_FAILED = 125  # the child's status when it could not get as far as running kiln


class UserNamespaceError(KilnError):
    """An ordinary user's build cannot get a user namespace here."""


@dataclass(frozen=True)
class IdRange:
    start: int
    count: int


def subordinate_ranges(path: Path, user: str, own_id: int) -> list[IdRange]:
    """The ranges a subuid/subgid file gives `user` (named, or by number), in the file's order."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in (user, str(own_id)):
            continue
        try:
            start, count = int(fields[1]), int(fields[2])
        except ValueError:
            continue
        if count > 0:
            found.append(IdRange(start, count))
    return found


def map_arguments(own_id: int, ranges: Sequence[IdRange]) -> list[str]:
    """newuidmap's triples (inside, outside, count): the user as 0, then each range from 1 on."""
    args = ["0", str(own_id), "1"]
    inside = 1
    for r in ranges:
        args += [str(inside), str(r.start), str(r.count)]
        inside += r.count
    return args


def needs_own_namespace() -> bool:
    return os.geteuid() != 0 and ENV_MARK not in os.environ


def single_id_reason() -> str | None:
    """Why the namespace kiln runs in maps one ID only, or None (a full map, or not kiln's namespace)."""
    mark = os.environ.get(ENV_MARK, "")
    return mark.partition(":")[2] or "one ID mapped" if mark.startswith("single") else None


def run_in_own_namespace(argv: Sequence[str]) -> int:
    """Run `argv` (kiln itself) as root of a new user namespace; returns its exit status."""
    go_read, go_write = os.pipe()
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child execs or exits; its behaviour is tested through the parent
        os.close(go_write)
        os.close(ready_read)
        _child(list(argv), go_read, ready_write)
    os.close(go_read)
    os.close(ready_write)
    with os.fdopen(ready_read, "rb") as ready, os.fdopen(go_write, "wb", buffering=0) as go:
        answer = ready.read(64)
        if not answer.startswith(b"K"):
            _wait(pid)
            errno_text = answer[1:].decode(errors="replace")
            raise UserNamespaceError(
                "kiln runs as an ordinary user and cannot create a user namespace here"
                + (f" ({os.strerror(int(errno_text))})" if errno_text.isdigit() else "")
                + ": allow them (sysctl user.max_user_namespaces > 0, and kernel.unprivileged_userns_clone=1 where "
                "the kernel has it) or run kiln as root")
        mode = _write_maps(pid)
        go.write(mode.encode())
    return _wait(pid)


def _child(argv: list[str], go_read: int, ready_write: int) -> None:  # pragma: no cover - see above
    try:
        try:
            linux.unshare(linux.CLONE_NEWUSER | linux.CLONE_NEWNS)
        except OSError as e:
            os.write(ready_write, b"E%d" % (e.errno or 0))
            os._exit(_FAILED)
        os.write(ready_write, b"K")
        os.close(ready_write)
        with os.fdopen(go_read, "rb") as go:
            mode = go.read(4096).decode()
        if not mode:
            os._exit(_FAILED)  # the parent could not write the maps; it says why
        if mode == "full":
            os.setgroups([])  # the user's own supplementary groups are not mapped in here
        # The build's mounts stay in this namespace, and the host's do not follow into it.
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        os.environ[ENV_MARK] = mode
        os.execv(argv[0], argv)
    except BaseException as e:  # noqa: BLE001 - nothing may return into the parent's code in the child
        print(f"error: entering kiln's user namespace: {e}", file=sys.stderr)
    os._exit(_FAILED)


def _write_maps(pid: int) -> str:
    """Write the child's maps; returns the mode for the child ("full", or "single:WHY")."""
    uid, gid = os.getuid(), os.getgid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    uids, gids = subordinate_ranges(SUBUID, user, uid), subordinate_ranges(SUBGID, user, uid)
    helpers = shutil.which("newuidmap"), shutil.which("newgidmap")
    uid_done = False
    if not uids or not gids:
        reason = f"no subordinate IDs for {user} in {SUBUID} and {SUBGID}"
    elif not all(helpers):
        reason = "newuidmap and newgidmap are not installed (Debian: uidmap)"
    else:
        try:
            _helper(str(helpers[0]), pid, map_arguments(uid, uids))
            uid_done = True
            _helper(str(helpers[1]), pid, map_arguments(gid, gids))
            return "full"
        except UserNamespaceError as e:
            reason = str(e)
    # One ID: what any process may write for a namespace it owns, groups denied first as the kernel requires.
    try:
        if not uid_done:
            Path(f"/proc/{pid}/uid_map").write_text(f"0 {uid} 1\n")
        Path(f"/proc/{pid}/setgroups").write_text("deny\n")
        Path(f"/proc/{pid}/gid_map").write_text(f"0 {gid} 1\n")
    except OSError as e:
        os.kill(pid, signal.SIGKILL)
        _wait(pid)
        raise UserNamespaceError(f"cannot map an ID into kiln's user namespace ({reason}; then: {e})") from None
    return f"single:{reason}"


def _helper(tool: str, pid: int, args: list[str]) -> None:
    r = subprocess.run([tool, str(pid), *args], capture_output=True, text=True)
    if r.returncode != 0:
        said = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        raise UserNamespaceError(f"{Path(tool).name} failed: {said}")


def _wait(pid: int) -> int:
    """The child's exit status (128 + N when a signal N ended it), passing on what would stop kiln meanwhile:
    Ctrl-C reaches the child from the terminal by itself; SIGTERM and SIGHUP are sent to kiln alone."""
    forward: Callable[[int, object], None] = lambda signum, _frame: os.kill(pid, signum)  # noqa: E731
    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP)}
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
