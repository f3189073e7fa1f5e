"""The benchmark suite's own parts: kiln's event aggregation, the process-tree memory sampler and the throwaway
root of the in-place cases."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.cases import CASES, case_by_name  # noqa: E402
from bench.goals import issue_goals  # noqa: E402
from bench.inplace import BASES, CONTEXT, HOST_USR, KILN_DIR, MARKER, InPlaceRoot  # noqa: E402
from bench.memory import TreeSampler  # noqa: E402
from bench.overheads import push_cost  # noqa: E402
from bench.paths import KILN, REPO  # noqa: E402
from bench.phases import median_phases, parse_events, phase_seconds, slowest_phase  # noqa: E402
from bench.results import CaseResult, Run  # noqa: E402

from support.mounts import mounts_under  # noqa: E402


def _line(**fields: object) -> str:
    return json.dumps(fields)


def test_phases_are_summed_by_whatever_name_kiln_uses() -> None:
    lines = [
        "not json: a RUN's stray output",
        _line(event="step", number=1),
        _line(event="phase", phase="execute", seconds=0.5, bytes=None),
        _line(event="phase", phase="layer", seconds=0.25, bytes=1000),
        _line(event="step_done", seconds=0.8, note=""),
        _line(event="step", number=2),
        _line(event="phase", phase="layer", seconds=0.125, bytes=24),
        _line(event="phase", phase="brand-new-phase", seconds=2.0),
        _line(event="step_done", seconds=2.2, note=""),
        _line(event="summary", seconds=3.0),
    ]
    events = parse_events(lines)
    assert events.phases["layer"].seconds == 0.375 and events.phases["layer"].bytes == 1024
    assert events.phases["layer"].count == 2
    assert events.per_step("layer") == [0.25, 0.125]
    assert events.per_step("execute") == [0.5]
    seconds = phase_seconds(events, wall=3.5)
    assert seconds["steps"] == pytest.approx(3.0)
    assert seconds["outside build"] == pytest.approx(0.5)
    assert slowest_phase(seconds) == ("brand-new-phase", 2.0)


def test_median_counts_a_missing_phase_as_zero() -> None:
    assert median_phases([{"a": 1.0}, {"a": 3.0, "b": 1.0}, {"a": 2.0}]) == {"a": 2.0, "b": 0.0}


def test_sampler_sees_memory_of_a_grandchild() -> None:
    # sh -> python holding 100 MiB of touched pages: the peak must include the grandchild.
    code = "import time; x = b'\\x01' * (100 << 20); time.sleep(1.0)"
    proc = subprocess.Popen(["sh", "-c", f'"{sys.executable}" -c "{code}"; true'])
    sampler = TreeSampler(interval=0.02)
    sampler.start(proc.pid)
    proc.wait(timeout=30)
    peak = sampler.stop()
    assert 100 << 20 < peak < 300 << 20
    assert sampler.samples > 10


# The in-place cases' throwaway root (bench/inplace.py).


def _in_place_root(tmp_path: Path, image_usr: bool = False) -> InPlaceRoot:
    context, kiln_dir, layout = tmp_path / "ctx", tmp_path / "state" / "kiln", tmp_path / "layouts" / "busybox"
    for d in (context, kiln_dir, layout):
        d.mkdir(parents=True)
    return InPlaceRoot.for_build(tmp_path / "roots" / "r", context, kiln_dir, {"busybox": layout}, image_usr)


def test_in_place_paths_are_named_as_inside_the_root(tmp_path: Path) -> None:
    root = _in_place_root(tmp_path)
    assert root.inside(tmp_path / "ctx") == CONTEXT
    assert root.inside(tmp_path / "ctx" / "Dockerfile") == f"{CONTEXT}/Dockerfile"
    assert root.inside(tmp_path / "state" / "kiln") == KILN_DIR
    assert root.inside(tmp_path / "layouts" / "busybox") == f"{BASES}/busybox"
    # kiln, its venv and the repository are at their own paths (the venv's scripts name them).
    assert root.inside(KILN) == str(KILN)
    with pytest.raises(ValueError, match="not visible"):
        root.inside(tmp_path / "state" / "buildah")


def test_in_place_script_mounts_then_enters_the_root_then_runs_kiln(tmp_path: Path) -> None:
    root = _in_place_root(tmp_path)
    r = str(root.root)
    argv = [str(KILN), "build", "--in-place", "--context", CONTEXT, "--build-arg", "A=two words"]
    lines = root.script(argv).splitlines()
    assert lines[0] == "set -e"
    pivot = lines.index("pivot_root . sys")
    mounts = lines[:pivot]
    # Every bind before pivot_root; the read-only ones remounted read-only; the kiln state alone writable.
    for target in ("/usr", "/lib64", str(REPO), CONTEXT, f"{BASES}/busybox"):
        if target == "/lib64" and not os.path.isdir("/lib64"):
            continue
        assert any(m.startswith("mount --bind ") and m.endswith(f" {r}{target}") for m in mounts), (target, mounts)
        assert f"mount -o remount,bind,ro {r}{target}" in mounts, target
    assert f"mount --bind {tmp_path / 'state' / 'kiln'} {r}{KILN_DIR}" in mounts
    assert f"mount -o remount,bind,ro {r}{KILN_DIR}" not in mounts
    assert mounts[-3:] == [f"mount --rbind /dev {r}/dev", f"mount --rbind {r} {r}", f"cd {r}"]
    # After pivot_root: a fresh /proc, the old root detached, and kiln last (its status is the script's).
    assert lines[pivot + 1 :] == ["cd /", "/usr/bin/mount -t proc proc /proc", "/usr/bin/umount -l /sys", "set +e",
                                  shlex.join(argv)]  # fmt: skip
    assert shlex.split(lines[-1]) == argv


def test_in_place_command_runs_with_a_containers_environment_only(tmp_path: Path) -> None:
    command = _in_place_root(tmp_path).command(["true"])
    env_end = command.index("unshare")
    assert command[:2] == ["env", "-i"] and "container=kiln-bench" in command[2:env_end]
    assert command[env_end:-2] == ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation",
                                   "private", "sh"]  # fmt: skip
    assert command[-2] == "-c"


def test_in_place_image_usr_binds_the_hosts_usr_aside(tmp_path: Path) -> None:
    root = _in_place_root(tmp_path, image_usr=True)
    r = str(root.root)
    script = root.script(["true"]).splitlines()
    assert f"mount --bind /usr {r}{HOST_USR}" in script
    assert not any(line.endswith(f" {r}/usr") for line in script), script
    assert f"{HOST_USR}/bin/mount -t proc proc /proc" in script
    assert root.inside(Path("/usr/bin/true")) == f"{HOST_USR}/bin/true"


def test_in_place_root_is_prepared_as_a_container_root(tmp_path: Path) -> None:
    root = _in_place_root(tmp_path)
    root.prepare()
    assert (root.root / MARKER).is_file()
    assert root.root.stat().st_mode & 0o777 == 0o755
    for name in ("bin", "etc", "tmp", "proc", "dev", "sys", "usr", KILN_DIR[1:], str(REPO)[1:]):
        assert (root.root / name).is_dir(), name
    root.remove()
    assert not root.root.exists()


def test_every_in_place_case_mirrors_a_namespaced_case() -> None:
    in_place = [c for c in CASES if c.in_place]
    assert {"ten-runs-busybox-inplace", "ten-runs-debian-inplace"} <= {c.name for c in in_place}
    for case in in_place:
        assert case.namespaced is not None
        namespaced = case_by_name(case.namespaced)
        assert not namespaced.in_place
        assert (namespaced.dockerfile, namespaced.bases, namespaced.make_context) == (
            case.dockerfile, case.bases, case.make_context)  # fmt: skip


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="mounts and namespaces need root")
def test_in_place_root_runs_a_command_and_leaves_no_mount(tmp_path: Path) -> None:
    root = _in_place_root(tmp_path)
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM busybox\n")
    root.prepare()
    # Inside: the marker at /, the context read-only, the namespace's own /proc, and $container.
    check = ('test -f /.kiln-in-place && test -f /bench/context/Dockerfile && ! touch /bench/context/x 2>/dev/null'
             ' && touch /bench/kiln/written && test "$container" = kiln-bench && test "$(cat /proc/1/comm)" = sh'
             ' && ! test -e /sys/work')  # fmt: skip
    proc = subprocess.run(root.command(["sh", "-c", check]), capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "state" / "kiln" / "written").is_file()
    assert mounts_under(tmp_path) == []
    root.remove()


def _sleepers(arg: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().split(b"\0")[:2] == [b"sleep", arg.encode()]:
                    found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="mounts and namespaces need root")
def test_killing_the_in_place_run_kills_all_inside(tmp_path: Path) -> None:
    """What timed_commands does on a timeout or an interruption: kill unshare; nothing may go on inside."""
    root = _in_place_root(tmp_path)
    root.prepare()
    arg = f"{3000 + os.getpid() % 1000}.5"
    proc = subprocess.Popen(root.command(["sh", "-c", f"sleep {arg} & sleep {arg}"]))
    deadline = time.monotonic() + 20
    while len(_sleepers(arg)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_sleepers(arg)) == 2
    proc.kill()
    proc.wait()
    while _sleepers(arg) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sleepers(arg) == []
    assert mounts_under(tmp_path) == []
    root.remove()


def test_issue_goals_pass_fail_or_say_what_is_missing() -> None:
    def case(name: str, seconds: float, phases: dict[str, float] | None = None) -> CaseResult:
        return CaseResult(name, "", runs=[Run("kiln", 0, seconds, 50_000_000, 0, True, phases=phases or {})])

    cases = [case("small", 0.4), case("one-run", 0.5), case("big-file", 10.0),
             case("big-file-local", 8.0, {"compress": 1.0, "tar": 3.0})]  # fmt: skip
    overheads = {"imports": {"kiln --version": {"wall_seconds_median": 0.05}},
                 "per_run": {"kiln_step_seconds_median": 0.036}, "push": push_cost(cases)}  # fmt: skip
    got = {t.name: (t.status, t.detail) for t in issue_goals(cases, overheads)}
    assert got["the small case <= 0.5 s"][0] == "pass"
    assert got["one RUN <= 0.35 s"] == ("fail", "one-run: 0.50 s")
    assert got["ten one-line RUNs on a warm base <= 1 s"][0] == "n/a"
    assert got["kiln --version <= 0.1 s wall"][0] == "pass"
    assert got["FROM scratch COPY build <= 0.2 s wall"][0] == "n/a"
    assert got["per RUN <= 40 ms"][0] == "pass"
    status, detail = got["pushing a layer adds <= 1.1 x its compression time"]
    assert status == "fail" and "adds 2.00 s = 2.0 x" in detail
    assert got["kiln peak memory < 150 MB"][0] == "pass"
