"""aarch64 binaries running on this host for the tests' length, and the host left as found afterwards.

binfmt_misc is the whole host's, and pytest-xdist workers are separate sessions that start and end at different
times: a worker that removed the entry it added while another still builds arm64 images would break that one.
So the workers share one lease, in a file under /run (gone at reboot, as the registrations are): the first
holder registers kiln's entry (kiln.binfmt.install) and mounts binfmt_misc if it has to, records what it did, and
the last holder to leave undoes exactly that. A holder that died is dropped from the lease by the next one.

The host-state check (tests/conftest.py) looks at binfmt_misc through `host_view`, which leaves out what a lease
held by another live worker added: what the lease records is undone by its last holder, and anything else a test
leaves behind still shows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kiln import binfmt
from kiln.linux import umount2
from kiln.oci.platform import Platform
from support.locks import file_lock

LEASE_DIR = Path("/run/kiln-tests")
LOCK = LEASE_DIR / "binfmt.lock"
STATE = LEASE_DIR / "binfmt.json"
ARM64 = Platform("linux", "arm64")


@dataclass
class Lease:
    holders: list[str] = field(default_factory=list)  # "pid:start time" of each live holder
    arches: list[str] = field(default_factory=list)  # what the lease registered, for kiln.binfmt.uninstall
    entries: list[str] = field(default_factory=list)  # the entry names that made
    mounted: bool = False  # the lease mounted binfmt_misc

    @classmethod
    def load(cls) -> Lease:
        try:
            data = json.loads(STATE.read_text())
        except FileNotFoundError:
            return cls()
        lease = cls(**data)
        lease.holders = [h for h in lease.holders if _alive(h)]
        return lease

    def save(self) -> None:
        if not self.holders and not self.entries and not self.mounted:
            STATE.unlink(missing_ok=True)
            return
        tmp = STATE.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__))
        tmp.replace(STATE)


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, starttime: a reused pid has another


def holder_id(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{_start_time(pid)}"


def _alive(holder: str) -> bool:
    pid, _, start = holder.partition(":")
    return _start_time(int(pid)) == start


@contextmanager
def exclusive() -> Iterator[None]:
    """No other worker changes binfmt_misc through the lease, or reads the host's view of it, meanwhile: hold
    it around any registration a test makes itself."""
    with file_lock(LOCK):
        yield


def acquire(holder: str) -> binfmt.Emulation:
    """aarch64 binaries run here until release(holder): kiln's entry registered unless one usable already is."""
    with exclusive():
        lease = Lease.load()
        if binfmt.emulation(ARM64).problem is not None:
            lease.mounted = binfmt.ensure_mounted() or lease.mounted
            lease.save()  # a failing install below still leaves the mount on record, for the last holder
            added = binfmt.install(["arm64"])
            lease.entries += added
            lease.arches += ["arm64"] if added else []
        em = binfmt.emulation(ARM64)
        if em.problem is None:
            lease.holders.append(holder)
        lease.save()
    if em.problem is not None:
        raise AssertionError(f"aarch64 binaries still cannot run here: {em.problem}")
    return em


def release(holder: str) -> None:
    """Leave the lease; the last holder removes what the lease added and unmounts binfmt_misc if it mounted it."""
    with exclusive():
        lease = Lease.load()
        lease.holders = [h for h in lease.holders if h != holder]
        if not lease.holders:
            binfmt.uninstall(lease.arches)
            lease.arches, lease.entries = [], []
            if lease.mounted and binfmt.mounted():
                umount2(binfmt.BINFMT_DIR)
            lease.mounted = False
        lease.save()


def host_view() -> str:
    """binfmt_misc as the host has it, without what a live lease added (its last holder undoes that)."""
    def read() -> str:
        lease = Lease.load()
        leased = bool(lease.holders)
        is_mounted = binfmt.mounted() and not (leased and lease.mounted)
        names = sorted(n for n in _entry_names() if not (leased and n in lease.entries))
        return f"mounted={is_mounted} entries={' '.join(names)}"

    if os.geteuid() != 0:
        return read()  # cannot take the lock; no lease can be changing it either
    with exclusive():
        return read()


def _entry_names() -> list[str]:
    try:
        return [n for n in os.listdir(binfmt.BINFMT_DIR) if n not in ("register", "status")]
    except OSError:
        return []
