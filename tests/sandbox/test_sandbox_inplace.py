"""run_in_place: a step run directly in kiln's own root (kaniko mode).

Each case runs in a fresh Python process (run_in_place makes its caller a child subreaper, which pytest's
own process should not become). The commands are harmless (id, echo, sleep) and write only below tmp_path.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

_DRIVER = textwrap.dedent(
    """
    import io, json, sys
    from pathlib import Path
    from kiln.errors import SandboxError
    from kiln.sandbox.inplace import run_in_place
    from kiln.sandbox.spec import RunSpec, BindMount
    args = json.loads(sys.argv[1])
    mounts = tuple(BindMount(Path(m), "/x") for m in args.pop("mounts", []))
    out = io.BytesIO()
    try:
        status = run_in_place(RunSpec(rootfs=Path(args.pop("rootfs", "/")), argv=tuple(args.pop("argv")),
                                      mounts=mounts, **args), out)
        print(json.dumps({"status": status, "output": out.getvalue().decode()}))
    except SandboxError as e:
        print(json.dumps({"error": str(e)}))
    """
)


def run(**spec: object) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(spec)], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_runs_with_exactly_the_given_environment_and_status(tmp_path: Path) -> None:
    got = run(argv=["/bin/sh", "-c", "env | sort; exit 7"], env={"A": "1"}, workdir=str(tmp_path))
    assert got["status"] == 7
    lines = set(str(got["output"]).splitlines())
    assert "A=1" in lines and "HOME=/root" in lines
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in lines
    assert not any(line.startswith("PYTEST") for line in lines)


def test_user_and_workdir(tmp_path: Path) -> None:
    wd = tmp_path / "a/b"
    got = run(argv=["/bin/sh", "-c", "id -u; id -g; id -G; pwd; echo $HOME"], user="nobody", workdir=str(wd))
    assert got["status"] == 0, got
    uid, gid, groups, cwd, home = str(got["output"]).split("\n")[:5]
    nobody = next(line.split(":") for line in Path("/etc/passwd").read_text().splitlines()
                  if line.startswith("nobody:"))  # fmt: skip
    assert (uid, gid) == (nobody[2], nobody[3])
    assert groups.split() == [nobody[3]]
    assert cwd == str(wd) and home == nobody[5]
    # The missing working directory was made for the user (BuildKit does the same).
    st = os.stat(wd)
    assert (st.st_uid, st.st_gid) == (int(nobody[2]), int(nobody[3]))


def test_command_not_found_is_127_not_a_sandbox_error(tmp_path: Path) -> None:
    got = run(argv=["no-such-command-kiln"], workdir=str(tmp_path))
    assert got["status"] == 127
    assert "no-such-command-kiln" in str(got["output"])


def test_signal_is_128_plus_n(tmp_path: Path) -> None:
    got = run(argv=["/bin/sh", "-c", "kill -TERM $$"], workdir=str(tmp_path))
    assert got["status"] == 128 + 15


def test_processes_left_behind_are_killed(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # One stays in the step's process group, one leaves it (setsid) and keeps the output pipe open.
    script = f"sleep 300 & echo $! >> {pids}; setsid sh -c 'echo $$ >> {pids}; exec sleep 301' & sleep 0.3; echo done"
    started = time.monotonic()
    try:
        got = run(argv=["/bin/sh", "-c", script], workdir=str(tmp_path))
        assert got["status"] == 0 and "done" in str(got["output"])
        assert time.monotonic() - started < 30, "the step's output stayed open: a process survived it"
        left = [int(p) for p in pids.read_text().split()]
        assert len(left) == 2
        for pid in left:
            assert not os.path.exists(f"/proc/{pid}"), f"process {pid} of the step is still alive"
    finally:
        # On failure, do not leave the sleeps behind (they are ours: their PIDs were written by the step).
        for pid in (int(p) for p in pids.read_text().split()) if pids.exists() else ():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        # Placed mounts need a directory of kiln's for what their targets held: never placed without one.
        ({"mounts": ["/tmp"]}, "RUN --mount in place needs a directory of kiln's"),
        ({"rootfs": "/tmp"}, "kiln's own root"),
        ({"user": "no-such-user-kiln"}, "no-such-user-kiln"),
        ({"argv": []}, "empty command"),
    ],
)
def test_what_in_place_cannot_do_is_refused(tmp_path: Path, spec: dict[str, object], message: str) -> None:
    got = run(**{"argv": ["/bin/true"], "workdir": str(tmp_path), **spec})
    assert message in str(got.get("error")), got


def test_network_none_has_only_a_loopback_and_the_same_ids(tmp_path: Path) -> None:
    """A user namespace (IDs mapped one to one) holding a network namespace: only lo, uid 0 stays 0, and a
    file the step writes is owned by the real root. Reads /proc and writes below tmp_path only."""
    script = f"tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; id -u; touch {tmp_path}/made"
    got = run(argv=["/bin/sh", "-c", script], network="none", workdir=str(tmp_path))
    assert got.get("status") == 0, got
    assert str(got["output"]).split() == ["lo", "0"]
    st = os.stat(tmp_path / "made")
    assert (st.st_uid, st.st_gid) == (0, 0)
