"""Attacks on the RUN sandbox, each made by a Dockerfile alone (kiln as root, default mode), each of which must
fail; and, as a control, the same commands under `RUN --security=insecure --allow security.insecure`, where
they must work (so a failure above is the sandbox's doing, not a broken probe).

One Dockerfile carries every probe; it is built once sandboxed and once privileged. Each probe prints its
output and status behind a marker, and the build goes on whatever a probe's status.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from host_devices import can_open, host_block_device, host_openable_device
from integ_helpers import Kiln, write_context

from support.base_images import OciImage

pytestmark = pytest.mark.root

CANARY = f"canary-{uuid.uuid4().hex}"  # in kiln's own environment: no step may see it
SLEEP = 600 + int(uuid.uuid4().int % 1000)  # a sleep no other process runs
SECRET = f"secret-{uuid.uuid4().hex}"  # a --secret from an environment variable, mounted by one step only

# name -> shell command; $MAJ/$MIN are a real disk of this machine.
PROBES = {
    "caps": "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status",
    # In /dev (a tmpfs without nodev): only the device cgroup stands between the node and the device.
    "disk_read": "mknod /dev/hd b $MAJ $MIN && head -c 512 /dev/hd | wc -c",
    "dev_open": "mknod /dev/x $OTYPE $OMAJ $OMIN && (exec 3</dev/x) && echo opened",
    "disk_mount": "mkdir -p /h && mknod /hd b $MAJ $MIN && mount -o ro /hd /h; s=$?; umount /h 2>/dev/null; "
                  "rm -f /hd; rmdir /h; exit $s",
    "mount_tmpfs": "mkdir -p /mnt && mount -t tmpfs none /mnt && umount /mnt",
    "userns": "unshare -U true",
    "mountns": "unshare -m true",
    "swappiness": "v=$(cat /proc/sys/vm/swappiness) && echo $v > /proc/sys/vm/swappiness",
    "core_pattern": "v=$(cat /proc/sys/kernel/core_pattern) && echo \"$v\" > /proc/sys/kernel/core_pattern",
    "sys_remount": "mount -o remount,rw /sys",
    "masked": "echo kcore=$(head -c 16 /proc/kcore 2>/dev/null | wc -c) keys=$(cat /proc/keys | wc -c) "
              "timers=$(cat /proc/timer_list | wc -c) firmware=$(ls /sys/firmware | wc -l)",
    "ro_mounts": "grep -E ' /(proc/(bus|fs|irq|sys|sysrq-trigger)|sys) ' /proc/self/mountinfo",
    "devices": "for f in /dev/* /dev/pts/*; do [ -c \"$f\" ] && stat -L -c '%n %t:%T' \"$f\"; done; true",
    "environ": "for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ 2>/dev/null; done; true",
    "processes": "ls /proc | grep -cE '^[0-9]+$'",
}
MOUNT_PROBES = {  # probes with a RUN --mount of the context
    "bind_remount": "mount -o remount,rw,bind /m && echo remounted",
    "bind_write": "echo x > /m/written",
}
CHAR_DEVICES_ALLOWED = {"1:3", "1:5", "1:7", "1:8", "1:9", "5:0", "5:1", "5:2"} | {f"88:{n:x}" for n in range(256)}
DOCKER_DEFAULT_CAPS = "00000000a80425fb"


def _dockerfile(insecure: bool) -> str:
    flag = "--security=insecure " if insecure else ""
    lines = ["FROM busybox", "ARG MAJ", "ARG MIN", "ARG OTYPE", "ARG OMAJ", "ARG OMIN"]
    for name, cmd in PROBES.items():
        lines.append(f"RUN {flag}sh -c '{_quoted(cmd)}' > /tmp/o 2>&1; echo \"@@{name} rc=$?\"; "
                     f"sed 's/^/@@{name} | /' /tmp/o; rm -f /tmp/o")
    for name, cmd in MOUNT_PROBES.items():
        lines.append(f"RUN {flag}--mount=type=bind,target=/m sh -c '{_quoted(cmd)}' > /tmp/o 2>&1; "
                     f"echo \"@@{name} rc=$?\"; sed 's/^/@@{name} | /' /tmp/o; rm -f /tmp/o")
    lines.append(f"RUN {flag}--mount=type=secret,id=tok,required=true stat -f -c '@@secret_fs %T' /run/secrets/tok")
    lines += ["USER 1000", "RUN grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status | sed 's/^/@@user_caps | /'"]
    return "\n".join(lines) + "\n"


def _quoted(cmd: str) -> str:
    return cmd.replace("'", "'\\''")


@dataclass
class Probe:
    status: int
    output: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.output)


def _probes(stdout: str) -> dict[str, Probe]:
    found: dict[str, Probe] = {}
    for line in stdout.splitlines():
        m = re.match(r"@@(\w+) rc=(\d+)$", line)
        if m:
            found[m.group(1)] = Probe(int(m.group(2)), [])
            continue
        m = re.match(r"@@(\w+) \| ?(.*)$", line)
        if m:
            found.setdefault(m.group(1), Probe(0, [])).output.append(m.group(2))
            continue
        m = re.match(r"@@(\w+) (.*)$", line)
        if m:
            found[m.group(1)] = Probe(0, [m.group(2)])
    return found


@dataclass
class Runs:
    sandboxed: dict[str, Probe]
    privileged: dict[str, Probe]
    outputs: str
    context: Path
    device: tuple[str, int, int] | None
    openable: tuple[str, int, int] | None


def _host_state() -> dict[str, str]:
    state = {p: Path(p).read_text() for p in ("/proc/sys/vm/swappiness", "/proc/sys/kernel/core_pattern")}
    state["/etc/shadow"] = hashlib.sha256(Path("/etc/shadow").read_bytes()).hexdigest()
    state["/dev"] = " ".join(sorted(os.listdir("/dev")))
    return state


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, busybox_image: OciImage) -> Iterator[Runs]:
    device = host_block_device()
    major, minor = (device[1], device[2]) if device else (7, 0)
    openable = host_openable_device()
    before = _host_state()
    outputs = []
    results = []
    base = tmp_path_factory.mktemp("attacks")
    for insecure in (False, True):
        where = base / ("insecure" if insecure else "sandboxed")
        context = write_context(where / "ctx", {"Dockerfile": _dockerfile(insecure), "file": "context file\n"})
        kiln = Kiln(where / "kiln", where / "out")
        kiln.out_dir.mkdir(parents=True)
        kiln.contexts["busybox"] = busybox_image
        flags = ["--build-arg", f"MAJ={major}", "--build-arg", f"MIN={minor}", "--secret", "id=tok,env=KILN_TOK"]
        if openable:
            flags += ["--build-arg", f"OTYPE={openable[0]}", "--build-arg", f"OMAJ={openable[1]}",
                      "--build-arg", f"OMIN={openable[2]}"]
        if insecure:
            flags += ["--allow", "security.insecure"]
        out = kiln.build(context, *flags, env={"KILN_CANARY": CANARY, "KILN_TOK": SECRET}).ok()
        kiln.assert_clean()
        outputs.append(out.stdout + out.stderr)
        results.append(_probes(out.stdout + out.stderr))
    yield Runs(results[0], results[1], "\n".join(outputs), base / "sandboxed" / "ctx", device, openable)
    assert _host_state() == before, "the host changed during the attacks"


def _cap_fields(probe: Probe) -> dict[str, str]:
    return dict(line.split(":\t") for line in probe.output)


# --- capabilities ------------------------------------------------------------------------------------------


def test_root_step_has_exactly_dockers_default_capabilities(runs: Runs) -> None:
    caps = _cap_fields(runs.sandboxed["caps"])
    assert caps == {"CapInh": "0" * 16, "CapPrm": DOCKER_DEFAULT_CAPS, "CapEff": DOCKER_DEFAULT_CAPS,
                    "CapBnd": DOCKER_DEFAULT_CAPS, "CapAmb": "0" * 16}
    # control: the entitlement gives every capability the kernel has
    assert int(_cap_fields(runs.privileged["caps"])["CapEff"], 16) > int(DOCKER_DEFAULT_CAPS, 16)


def test_non_root_step_holds_no_capability_and_none_ambient(runs: Runs) -> None:
    caps = _cap_fields(runs.sandboxed["user_caps"])
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapAmb"] == caps["CapInh"] == "0" * 16
    assert caps["CapBnd"] == DOCKER_DEFAULT_CAPS


# --- the host's disk -----------------------------------------------------------------------------------------


def test_a_device_node_of_the_hosts_disk_cannot_be_opened(runs: Runs) -> None:
    if runs.device is None:
        pytest.skip("this machine has no disk device to aim at")
    probe = runs.sandboxed["disk_read"]
    assert "Operation not permitted" in probe.text and probe.output[-1].strip() == "0", probe.text
    if can_open(f"/dev/{runs.device[0]}"):  # control, where kiln's own host lets root read its disk
        assert runs.privileged["disk_read"].output[-1].strip() == "512"


def test_device_nodes_a_step_makes_cannot_be_opened(runs: Runs) -> None:
    """A device the host opens (a loop device, say) is refused inside: the device cgroup, not the host, says no."""
    if runs.openable is None:
        pytest.skip("no device on this machine that root can open outside the allowed list")
    probe = runs.sandboxed["dev_open"]
    assert probe.status != 0 and "Operation not permitted" in probe.text, probe.text
    assert runs.privileged["dev_open"].text == "opened", runs.privileged["dev_open"].text  # control


def test_the_hosts_disk_cannot_be_mounted(runs: Runs) -> None:
    assert runs.sandboxed["disk_mount"].status != 0
    assert runs.sandboxed["mount_tmpfs"].status != 0
    assert runs.privileged["mount_tmpfs"].status == 0  # control


# --- seccomp -------------------------------------------------------------------------------------------------


def test_namespaces_cannot_be_created(runs: Runs) -> None:
    # A user namespace needs no capability at all: only the seccomp filter stops it.
    assert runs.sandboxed["userns"].status != 0, runs.sandboxed["userns"].text
    assert runs.sandboxed["mountns"].status != 0
    assert runs.privileged["userns"].status == 0, runs.privileged["userns"].text  # control
    assert runs.privileged["mountns"].status == 0


# --- /proc and /sys ----------------------------------------------------------------------------------------


def test_host_sysctls_are_read_only(runs: Runs) -> None:
    for name in ("swappiness", "core_pattern"):
        probe = runs.sandboxed[name]
        assert probe.status != 0 and "Read-only file system" in probe.text, probe.text
        assert runs.privileged[name].status == 0, runs.privileged[name].text  # control: same value written back


def test_sys_cannot_be_remounted_writable(runs: Runs) -> None:
    assert runs.sandboxed["sys_remount"].status != 0


def test_masked_paths_show_nothing(runs: Runs) -> None:
    assert runs.sandboxed["masked"].text == "kcore=0 keys=0 timers=0 firmware=0"
    assert runs.privileged["masked"].text != "kcore=0 keys=0 timers=0 firmware=0"  # control


def test_read_only_paths_are_read_only_mounts(runs: Runs) -> None:
    mounted = {}
    for line in runs.sandboxed["ro_mounts"].output:
        fields = line.split()
        mounted[fields[4]] = fields[5].split(",")
    expected = {p for p in ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", "/sys")
                if os.path.exists(p)}  # a kernel without one of them has nothing there to protect
    assert expected <= set(mounted), mounted
    assert all("ro" in mounted[p] for p in expected), mounted


# --- devices, processes, environment ------------------------------------------------------------------------


def test_only_the_standard_devices_exist(runs: Runs) -> None:
    devices = {line.split()[0]: line.split()[1] for line in runs.sandboxed["devices"].output}
    assert {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"} <= set(devices)
    assert set(devices.values()) <= CHAR_DEVICES_ALLOWED, devices


def test_the_step_sees_only_its_own_processes(runs: Runs) -> None:
    assert int(runs.sandboxed["processes"].text) < 10


def test_no_process_of_a_step_sees_kilns_environment(runs: Runs) -> None:
    seen = runs.sandboxed["environ"].text
    assert "PATH=" in seen  # the probe read the environments
    assert CANARY not in seen and "KILN_CANARY" not in seen
    assert SECRET not in seen  # --secret env=KILN_TOK: not even in steps that do not mount it
    assert SECRET not in runs.outputs


# --- mounts ------------------------------------------------------------------------------------------------


def test_read_only_bind_mounts_stay_read_only(runs: Runs) -> None:
    assert runs.sandboxed["bind_remount"].status != 0
    assert runs.sandboxed["bind_write"].status != 0
    assert not (runs.context / "written").exists()
    assert runs.privileged["bind_remount"].status == 0  # control: CAP_SYS_ADMIN could remount it


def test_secret_files_are_in_memory(runs: Runs) -> None:
    assert runs.sandboxed["secret_fs"].text == "tmpfs"


# --- entitlements ------------------------------------------------------------------------------------------


def test_insecure_steps_need_the_entitlement(kiln_bb: Kiln, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN --security=insecure true\n"})
    out = kiln_bb.build(ctx).failed()
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Dockerfile:2" in errors[0] and "--allow security.insecure" in errors[0], out.stderr
    assert out.stderr.strip().splitlines()[-1] == errors[0]
    assert "Traceback" not in out.stderr


def test_unknown_entitlement_is_refused(kiln_bb: Kiln, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN true\n"})
    out = kiln_bb.build(ctx, "--allow", "everything").failed()
    assert "--allow" in out.stderr and "everything" in out.stderr


def test_network_none_for_the_whole_build(kiln_bb: Kiln, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": (
        "FROM busybox\nRUN echo \"@@links $(ip -o link | wc -l)\"\n"
        "RUN --network=host echo \"@@host $(ip -o link | wc -l)\"\n")})
    out = kiln_bb.build(ctx, "--network", "none", "--allow", "network.host").ok()
    assert "@@links 1" in out.stdout + out.stderr
    host_links = len(subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.splitlines())
    assert f"@@host {host_links}" in out.stdout + out.stderr
    refused = kiln_bb.build(write_context(tmp_path / "ctx2", {"Dockerfile": (
        "FROM busybox\nRUN --network=host true\n")}), "--network", "none").failed()
    assert "--allow network.host" in refused.stderr


# --- cache mounts ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cache_id", ["..", "../..", "/", "../../layers", "x" * 300, "a/../../b"])
def test_cache_mount_ids_are_names_not_paths(kiln_bb: Kiln, tmp_path: Path, cache_id: str) -> None:
    marker = uuid.uuid4().hex
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": (
        f"FROM busybox\nRUN --mount=type=cache,id={cache_id},target=/k echo {marker} > /k/planted\n")})
    kiln_bb.build(ctx).ok()
    cache_root = kiln_bb.kiln_dir / "cache-mounts"
    planted = [p for p in tmp_path.rglob("planted") if p.read_text().strip() == marker]
    assert len(planted) == 1, planted
    assert planted[0].parent.parent == cache_root, planted  # its own directory right under the cache root
    assert planted[0].parent.name != cache_id


def test_two_cache_ids_never_share_a_directory(kiln_bb: Kiln, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": (
        "FROM busybox\nRUN --mount=type=cache,id=a/b,target=/k echo 1 > /k/f\n"
        "RUN --mount=type=cache,id=a_b,target=/k cat /k/f 2>/dev/null && echo shared || echo separate\n")})
    out = kiln_bb.build(ctx).ok()
    assert "separate" in out.stdout + out.stderr


# --- secrets and a killed kiln -------------------------------------------------------------------------------


def _files_with(root: Path, needle: bytes) -> list[tuple[Path, bool]]:
    """Files under root containing needle, each with whether it is on root's own file system (a disk here)."""
    device = root.stat().st_dev
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            try:
                st = path.lstat()
                if not path.is_file() or path.is_symlink():
                    continue
                if needle in path.read_bytes():
                    found.append((path, st.st_dev == device))
            except OSError:
                continue
    return found


def test_a_secret_never_touches_the_disk_and_a_killed_kiln_leaves_nothing(
    kiln_bb: Kiln, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": (
        "FROM busybox\nRUN --mount=type=secret,id=tok cat /run/secrets/tok > /dev/null; "
        f"echo started; sleep {SLEEP}\n")})
    kiln_dir = kiln_bb.kiln_dir
    from integ_helpers import KILN

    cmd = [str(KILN), "build", "--context", str(ctx), "--kiln-dir", str(kiln_dir), "--no-push",
           "--oci-layout-path", str(tmp_path / "out"), "--secret", "id=tok,env=KILN_TOK"]
    for name, image in kiln_bb.contexts.items():
        cmd += ["--build-context", f"{name}=oci-layout://{image.layout}:{image.tag}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "KILN_TOK": SECRET})
    try:
        assert proc.stdout is not None
        seen = b""
        deadline = time.monotonic() + 120
        # A line of its own: the step's header, printed before the step runs, has the word too.
        while b"\nstarted\n" not in seen and time.monotonic() < deadline:
            seen += proc.stdout.read1(4096)
        assert b"\nstarted\n" in seen, seen
        holders = _files_with(kiln_dir, SECRET.encode())
        assert holders, "the step is running with its secret, which should be in a tmpfs under kiln's dir"
        assert not [p for p, on_disk in holders if on_disk], holders
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        # The reaper removes the container, its mounts and the build directory.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (list((kiln_dir / "tmp").iterdir()) or _sleepers()):
            time.sleep(0.2)
        assert not list((kiln_dir / "tmp").iterdir())
        assert not _sleepers()
        assert not _files_with(kiln_dir, SECRET.encode())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _sleepers() -> list[int]:
    """Our step's sleep, if it still runs anywhere on the machine."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/cmdline").read_bytes() == f"sleep\x00{SLEEP}\x00".encode():
                    found.append(int(entry))
            except OSError:
                continue
    return found


def test_next_build_sweeps_what_a_dead_build_left(kiln_bb: Kiln, tmp_path: Path) -> None:
    """The reaper killed too (a whole process group gone): the next build on the kiln dir cleans up."""
    dead = kiln_bb.kiln_dir / "tmp" / "build-deadbeef-x"
    (dead / "sandbox" / "runc").mkdir(parents=True)
    (dead / "root").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "leftover", str(dead / "root")], check=True)
    (dead / ".lock").touch()  # nobody holds it: the build is dead
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN true\n"})
    kiln_bb.build(ctx).ok()
    assert not dead.exists()


def test_a_fifo_in_a_writable_bind_mount_does_not_hang_the_build(kiln_bb: Kiln, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": (
        "FROM busybox\nRUN --mount=type=bind,rw,target=/m ls -l /m | sed -n 's/^p.* pipe$/@@fifo/p'\n"),
        "file": "x\n"})
    os.mkfifo(ctx / "pipe")
    out = kiln_bb.build(ctx, timeout=120).ok()
    assert "@@fifo" in out.stdout + out.stderr
