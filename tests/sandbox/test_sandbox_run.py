"""Running steps in a real busybox rootfs, in real namespaces (needs root)."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kiln.errors import SandboxError
from kiln.sandbox import DEFAULT_PATH, BindMount, RunSpec, TmpfsMount, run_in_sandbox
from kiln.sandbox.runc import Deletions, containers, find_runtime

pytestmark = pytest.mark.root


def run(rootfs: Path, script: str, **kwargs: object) -> tuple[int, str]:
    out = io.BytesIO()
    status = run_in_sandbox(RunSpec(rootfs, ("/bin/sh", "-c", script), **kwargs), out)  # type: ignore[arg-type]
    return status, out.getvalue().decode()


def host_processes_with_cmdline(cmdline: bytes) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if f.read() == cmdline:
                        found.append(int(entry))
            except OSError:
                continue
    return found


def unique_sleep() -> tuple[str, bytes]:
    seconds = str(random.randrange(10_000_000, 99_999_999))  # no other process sleeps exactly this long
    return f"sleep {seconds}", b"sleep\0" + seconds.encode() + b"\0"


# --- status and output -----------------------------------------------------------------------------------


def test_echo_and_exit_status(rootfs: Path) -> None:
    assert run(rootfs, "echo hello") == (0, "hello\n")
    assert run(rootfs, "echo out; echo err >&2; exit 3") == (3, "out\nerr\n")


def test_killed_by_signal_is_128_plus_signal(rootfs: Path) -> None:
    # The command is PID 1 of its namespace (as under BuildKit and buildah), which signals from inside the
    # namespace cannot kill: a child shell is killed instead, and the step's shell passes its status on.
    assert run(rootfs, "sh -c 'kill -9 $$'; exit $?")[0] == 137
    assert run(rootfs, "sh -c 'kill -TERM $$'; exit $?")[0] == 143


def test_kill_from_outside_is_128_plus_signal(rootfs: Path, tmp_path: Path) -> None:
    sleep, cmdline = unique_sleep()
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(run(rootfs, f"exec {sleep}")[0]))
    t.start()
    try:
        assert _wait_for(lambda: host_processes_with_cmdline(cmdline))
        for pid in host_processes_with_cmdline(cmdline):
            os.kill(pid, signal.SIGKILL)
        t.join(30)
        assert result == [137]
    finally:
        for pid in host_processes_with_cmdline(cmdline):
            os.kill(pid, signal.SIGKILL)
        t.join(30)


def test_output_streams_into_a_pipe_while_the_step_runs(rootfs: Path, tmp_path: Path) -> None:
    flags = tmp_path / "flags"
    flags.mkdir()
    r, w = os.pipe()
    writer = os.fdopen(w, "wb")
    result: list[int] = []
    spec = RunSpec(rootfs, ("/bin/sh", "-c", "echo first; while [ ! -e /flags/go ]; do sleep 0.05; done; echo second"),
                   mounts=(BindMount(flags, "/flags"),))
    t = threading.Thread(target=lambda: result.append(run_in_sandbox(spec, writer)))
    t.start()
    reader = os.fdopen(r, "rb")
    try:
        assert reader.readline() == b"first\n"  # arrives while the step is still waiting for us
        assert t.is_alive()
        (flags / "go").touch()
        assert reader.readline() == b"second\n"
        t.join(30)
        assert result == [0]
    finally:
        (flags / "go").touch()
        t.join(30)
        writer.close()
        reader.close()


def test_output_none_inherits_kilns_stdout(rootfs: Path, tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from kiln.sandbox import RunSpec, run_in_sandbox;"
        f"sys.exit(run_in_sandbox(RunSpec(Path({str(rootfs)!r}), ('echo', 'inherited'))))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, b"inherited\n")


# --- environment and PATH --------------------------------------------------------------------------------


def test_environment_is_exactly_the_spec_plus_default_path_and_home(rootfs: Path) -> None:
    out = io.BytesIO()
    status = run_in_sandbox(RunSpec(rootfs, ("env",), env={"FOO": "bar baz", "EMPTY": ""}), out)
    lines = sorted(out.getvalue().decode().splitlines())
    assert status == 0
    assert lines == sorted(["FOO=bar baz", "EMPTY=", f"PATH={DEFAULT_PATH}", "HOME=/root"])


def test_home_from_env_wins_and_unknown_uid_gets_slash(rootfs: Path) -> None:
    assert run(rootfs, 'echo "$HOME"', env={"HOME": "/custom"}) == (0, "/custom\n")
    assert run(rootfs, 'echo "$HOME"', user="4242") == (0, "/\n")
    assert run(rootfs, 'echo "$HOME"', user="app") == (0, "/home/app\n")


def test_exec_form_finds_a_binary_through_path_inside_the_rootfs(rootfs: Path) -> None:
    assert not Path("/usr/local/bin/kiln-probe").exists()
    out = io.BytesIO()
    assert run_in_sandbox(RunSpec(rootfs, ("kiln-probe",)), out) == 0
    assert out.getvalue() == b"from-usr-local-bin\n"


def test_missing_executable_is_status_127_with_a_message(rootfs: Path) -> None:
    out = io.BytesIO()
    assert run_in_sandbox(RunSpec(rootfs, ("kiln-probe",), env={"PATH": "/bin"}), out) == 127
    assert b'"kiln-probe": executable file not found in $PATH' in out.getvalue()
    out = io.BytesIO()
    assert run_in_sandbox(RunSpec(rootfs, ("/no/such",)), out) == 127
    assert b"no such file or directory" in out.getvalue()


# --- user and working directory --------------------------------------------------------------------------


def ids(rootfs: Path, user: str) -> tuple[str, str, str]:
    status, out = run(rootfs, "grep -E '^(Uid|Gid|Groups):' /proc/self/status", user=user)
    assert status == 0, out
    uid, gid, groups = (line.split(":", 1)[1].split() for line in out.splitlines())
    return " ".join(uid), " ".join(gid), " ".join(groups)


def test_user_by_name_uid_and_group(rootfs: Path) -> None:
    # app is uid 1000, primary gid 1000, listed as a member of extra (2000) in the rootfs's /etc/group.
    # The primary gid heads the supplementary groups, as runc gives them under buildah.
    assert ids(rootfs, "") == ("0 0 0 0", "0 0 0 0", "0")
    assert ids(rootfs, "app") == ("1000 1000 1000 1000", "1000 1000 1000 1000", "1000 2000")
    assert ids(rootfs, "1000") == ("1000 1000 1000 1000", "1000 1000 1000 1000", "1000 2000")
    assert ids(rootfs, "app:extra") == ("1000 1000 1000 1000", "2000 2000 2000 2000", "2000")
    assert ids(rootfs, "4242") == ("4242 4242 4242 4242", "0 0 0 0", "0")
    assert ids(rootfs, "4242:4343") == ("4242 4242 4242 4242", "4343 4343 4343 4343", "4343")
    assert run(rootfs, "id -un; id -gn", user="app") == (0, "app\napp\n")


def test_unknown_user_is_a_sandbox_error(rootfs: Path) -> None:
    with pytest.raises(SandboxError, match="unable to find user ghost"):
        run(rootfs, "true", user="ghost")


def test_workdir_is_the_cwd_and_is_created_for_the_user(rootfs: Path) -> None:
    assert run(rootfs, "pwd", workdir="/usr/local") == (0, "/usr/local\n")
    assert run(rootfs, "pwd; touch mine", workdir="/srv/app/data", user="app") == (0, "/srv/app/data\n")
    for p in ("srv", "srv/app", "srv/app/data"):
        st = os.stat(rootfs / p)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1000, 1000, 0o755)
    assert os.stat(rootfs / "srv/app/data/mine").st_uid == 1000


# --- processes and namespaces ----------------------------------------------------------------------------


def test_command_is_pid_1_of_its_own_namespace(rootfs: Path) -> None:
    status, out = run(rootfs, "echo $$; ls /proc | grep -E '^[0-9]+$' | sort -n | head -1")
    assert (status, out.split()) == (0, ["1", "1"])


def test_background_daemon_is_killed_when_the_step_ends(rootfs: Path) -> None:
    sleep, cmdline = unique_sleep()
    status, out = run(rootfs, f"{sleep} & echo $!; sleep 0.2; kill -0 $! && echo alive")
    assert status == 0 and out.split()[1] == "alive", out
    assert host_processes_with_cmdline(cmdline) == []


def _cgroup_dirs(proc_self_cgroup: str) -> list[Path]:
    """The directories of the cgroups /proc/self/cgroup lists (v1 controllers, or the unified v2 one)."""
    found = []
    for line in proc_self_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        name = controllers.split(",")[0].removeprefix("name=")
        mount = Path("/sys/fs/cgroup") / (name or "unified")
        found.append((mount if mount.is_dir() or name else Path("/sys/fs/cgroup")) / path.lstrip("/"))
    return found


def test_containers_deleted_in_the_background_are_gone_after_wait(rootfs: Path, tmp_path: Path) -> None:
    sleep, cmdline = unique_sleep()
    deletions = Deletions()
    out = io.BytesIO()
    spec = RunSpec(rootfs, ("/bin/sh", "-c", f"cat /proc/self/cgroup; ({sleep} &)"), runtime_dir=tmp_path / "rt")
    assert run_in_sandbox(spec, out, deletions) == 0
    assert host_processes_with_cmdline(cmdline) == []  # already when the step returns
    cgroups = [d for d in _cgroup_dirs(out.getvalue().decode()) if "kiln-" in d.name]
    assert cgroups, out.getvalue()
    deletions.wait()
    assert list(containers(find_runtime(), tmp_path / "rt" / "runc")) == []
    assert [d for d in cgroups if d.exists()] == []


def test_hostname(rootfs: Path) -> None:
    assert run(rootfs, "hostname") == (0, "buildkitsandbox\n")
    assert run(rootfs, "hostname; grep -c kiln-host /etc/hosts", hostname="kiln-host") == (0, "kiln-host\n1\n")
    assert os.uname().nodename != "kiln-host"


def test_proc_dev_and_shm_are_usable(rootfs: Path) -> None:
    script = (
        "cat /proc/self/stat >/dev/null && echo proc;"
        "echo x >/dev/null && head -c 5 /dev/zero | wc -c; head -c 4 /dev/urandom | wc -c;"
        "echo shared >/dev/shm/f && cat /dev/shm/f;"
        "readlink /dev/ptmx; exec 3<>/dev/ptmx && ls /dev/pts;"
        "grep ' /dev/pts ' /proc/mounts | cut -d' ' -f3"
    )
    status, out = run(rootfs, script)
    assert (status, out.split()) == (0, ["proc", "5", "4", "shared", "pts/ptmx", "0", "ptmx", "devpts"])


def test_sys_is_read_only(rootfs: Path) -> None:
    status, out = run(rootfs, "grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; mkdir /sys/x")
    assert status != 0 and out.splitlines()[0] == "ro"


def test_network_none_has_only_an_up_loopback(rootfs: Path) -> None:
    status, out = run(rootfs, "ls /sys/class/net; cat /sys/class/net/lo/flags; ip -o link | wc -l", network="none")
    flags = int(out.split()[1], 16)
    assert status == 0 and out.split()[0] == "lo" and out.split()[2] == "1"
    assert flags & 0x1  # IFF_UP


def test_network_host_sees_host_interfaces_and_resolv_conf(rootfs: Path) -> None:
    status, out = run(rootfs, "ls /sys/class/net; echo ---; cat /etc/resolv.conf")
    interfaces, resolv = out.split("---\n")
    assert status == 0
    assert interfaces.split() == sorted(os.listdir("/sys/class/net"))
    assert resolv == Path("/etc/resolv.conf").read_text()
    assert run(rootfs, "echo x >> /etc/resolv.conf")[0] != 0  # read-only for the step


# --- mounts ----------------------------------------------------------------------------------------------


def test_bind_mounts_read_only_and_read_write(rootfs: Path, tmp_path: Path) -> None:
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "in").write_text("from host\n")
    single = tmp_path / "single.txt"
    single.write_text("one file\n")
    mounts = (BindMount(ro, "/mnt/ro"), BindMount(rw, "/mnt/rw", readonly=False), BindMount(single, "/one.txt"))
    status, out = run(rootfs, "cat /mnt/ro/in /one.txt; touch /mnt/ro/no || echo denied; echo w > /mnt/rw/out",
                      mounts=mounts)
    assert (status, out.splitlines()[0:2], out.splitlines()[-1]) == (0, ["from host", "one file"], "denied")
    assert (rw / "out").read_text() == "w\n" and not (ro / "no").exists()
    assert not (rootfs / "mnt").exists() and not (rootfs / "one.txt").exists()


def test_tmpfs_mount_is_writable_and_leaves_nothing(rootfs: Path) -> None:
    status, out = run(rootfs, "echo data > /cache/f && cat /cache/f; grep ' /cache ' /proc/mounts | cut -d' ' -f3",
                      mounts=(TmpfsMount("/cache", size=1 << 20),))
    assert (status, out) == (0, "data\ntmpfs\n")
    assert not (rootfs / "cache").exists()


def test_refuses_the_hosts_root(tmp_path: Path) -> None:
    os.symlink("/", tmp_path / "slash")
    for root in (Path("/"), tmp_path / "slash"):
        with pytest.raises(SandboxError, match="host's root"):
            run_in_sandbox(RunSpec(root, ("true",)))


# --- interruption ----------------------------------------------------------------------------------------


def _start_kiln_running_sleep(rootfs: Path, sleep: str) -> subprocess.Popen[bytes]:
    script = (
        "import sys; from pathlib import Path; from kiln.sandbox import RunSpec, run_in_sandbox;"
        f"run_in_sandbox(RunSpec(Path({str(rootfs)!r}), ('/bin/sh', '-c', {sleep!r})))"
    )
    return subprocess.Popen([sys.executable, "-c", script])


def _wait_for(predicate: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_kiln_kills_the_step(rootfs: Path, signum: int) -> None:
    sleep, cmdline = unique_sleep()
    kiln = _start_kiln_running_sleep(rootfs, sleep)
    try:
        assert _wait_for(lambda: host_processes_with_cmdline(cmdline))
        kiln.send_signal(signum)
        kiln.wait(30)
        assert _wait_for(lambda: not host_processes_with_cmdline(cmdline))
    finally:
        if kiln.poll() is None:
            kiln.kill()
            kiln.wait()
        for pid in host_processes_with_cmdline(cmdline):  # only our uniquely named sleep
            os.kill(pid, signal.SIGKILL)
    if signum == signal.SIGINT:  # kiln unwound normally: the stubs are gone too
        assert not (rootfs / "proc").exists()
