"""The tests' shared arm64 lease (support.binfmt): a holder that died is dropped, so the next one to leave undoes
what the lease added; an empty lease leaves no file behind."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import support.binfmt as lease_module
from support.binfmt import Lease, holder_id


def test_dead_holders_are_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lease_module, "STATE", tmp_path / "binfmt.json")
    proc = subprocess.Popen(["sleep", "0"])
    dead = holder_id(proc.pid)
    proc.wait()
    me = holder_id()
    assert dead != me and not dead.endswith(":None")
    (tmp_path / "binfmt.json").write_text(json.dumps(
        {"holders": [dead, me], "arches": ["arm64"], "entries": ["kiln-qemu-aarch64"], "mounted": True}))
    lease = Lease.load()
    assert lease.holders == [me] and lease.entries == ["kiln-qemu-aarch64"] and lease.mounted
    lease.holders, lease.arches, lease.entries, lease.mounted = [], [], [], False
    lease.save()
    assert not (tmp_path / "binfmt.json").exists()


def test_a_reused_pid_is_not_the_holder() -> None:
    pid, _, start = holder_id().partition(":")
    assert lease_module._alive(f"{pid}:{start}")
    assert not lease_module._alive(f"{pid}:{int(start) + 1}")
