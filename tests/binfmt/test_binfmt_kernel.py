"""kiln.binfmt and `kiln binfmt` against the real kernel (root): the arm64 entry the session registered, a
throwaway entry without F, an install/uninstall round trip, aarch64 binaries actually running, in a chroot too.

Registrations a test makes itself are held under support.binfmt.exclusive(), so another xdist worker's
host-state check never sees them half done. Their magics are made up (e_machine 0x7777) where they need not be
real, so no binary on the host ever meets them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kiln import binfmt
from kiln.oci.platform import Platform
from support.base_images import OciImage
from support.binfmt import exclusive
from support.images import read_layer_file
from support.procs import run

pytestmark = pytest.mark.root
ARM64 = Platform("linux", "arm64")
MADE_UP = binfmt.ElfArch("made-up", "none", 2, 1, 0x7777, binfmt.ARCHES["arm64"].mask)


def _kiln(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kiln", *args], capture_output=True, text=True, check=False)


def _escaped(data: bytes) -> str:
    return "".join(f"\\x{b:02x}" for b in data)


@contextmanager
def _throwaway(name: str, arch: binfmt.ElfArch, interpreter: str, flags: str) -> Iterator[Path]:
    """An entry of the test's own, removed afterwards whatever happens."""
    entry = binfmt.BINFMT_DIR / name
    line = f":{name}:M:0:{_escaped(arch.header(binfmt.ET_EXEC))}:{_escaped(arch.mask)}:{interpreter}:{flags}"
    with exclusive():
        (binfmt.BINFMT_DIR / "register").write_text(line)
        try:
            yield entry
        finally:
            if entry.exists():
                entry.write_text("-1")


def test_session_entry_is_found(arm64_emulation: binfmt.Emulation) -> None:
    em = binfmt.emulation(ARM64)
    assert em == arm64_emulation
    assert (em.native, em.problem) == (False, None)
    assert em.entry is not None and em.interpreter is not None
    text = (binfmt.BINFMT_DIR / em.entry).read_text()
    assert text.startswith("enabled\n") and f"interpreter {em.interpreter}\n" in text
    flags = next(line for line in text.splitlines() if line.startswith("flags:"))
    assert "F" in flags


def test_throwaway_entries_on_the_kernel(arm64_emulation: binfmt.Emulation) -> None:
    name = f"kiln-test-{os.getpid()}"
    headers = MADE_UP.headers()
    assert binfmt.match(headers).problem == "no binfmt_misc entry runs its binaries"
    with _throwaway(name, MADE_UP, "/bin/false", "") as entry:
        found = binfmt.match(headers)
        assert found.entry is not None and found.entry.name == name and found.entry.flags == ""
        assert found.problem == (f"binfmt_misc entry {name} (/bin/false) lacks the F flag, so its interpreter "
                                 "cannot be found inside a RUN step's container")
        entry.write_text("0")
        assert binfmt.match(headers).problem == f"binfmt_misc entry {name} is disabled"
    assert not entry.exists()
    with _throwaway(name, MADE_UP, "/bin/false", "F"):
        found = binfmt.match(headers)
        assert found.problem is None and found.entry is not None and found.entry.flags == "F"


def _unregistered_arch() -> binfmt.ElfArch:
    for name in ("s390x", "ppc64le", "riscv64"):
        arch = binfmt.ARCHES[name]
        if binfmt.emulation(Platform("linux", name)).problem is not None and arch.interpreter().is_file():
            return arch
    pytest.skip("every one of s390x, ppc64le, riscv64 already runs here")


def test_install_uninstall_round_trip(arm64_emulation: binfmt.Emulation) -> None:
    with exclusive():
        arch = _unregistered_arch()
        platform = Platform("linux", arch.name)
        assert binfmt.install([arch.name]) == [arch.entry_name]
        try:
            text = (binfmt.BINFMT_DIR / arch.entry_name).read_text()
            assert f"interpreter /usr/bin/qemu-{arch.qemu}-static\n" in text
            assert "flags: POCF\n" in text  # C implies O
            em = binfmt.emulation(platform)
            assert (em.entry, em.interpreter, em.problem) == (
                arch.entry_name, f"/usr/bin/qemu-{arch.qemu}-static", None)
            assert binfmt.install([arch.name, "amd64"]) == []  # registered already; native
        finally:
            removed = binfmt.uninstall([arch.name])
        assert removed == [arch.entry_name]
        assert not (binfmt.BINFMT_DIR / arch.entry_name).exists()
        assert binfmt.emulation(platform).problem == "no binfmt_misc entry runs its binaries"
        assert binfmt.uninstall([arch.name]) == []


def test_uninstall_leaves_others_entries(arm64_emulation: binfmt.Emulation) -> None:
    with exclusive():
        arch = _unregistered_arch()
    name = f"qemu-{arch.qemu}-not-kilns-{os.getpid()}"
    with _throwaway(name, arch, str(arch.interpreter()), "F") as entry:
        assert binfmt.emulation(Platform("linux", arch.name)).entry == name
        assert binfmt.uninstall([arch.name]) == []
        assert entry.exists()


def test_cli_lists_and_round_trips(arm64_emulation: binfmt.Emulation, tmp_path: Path) -> None:
    listed = _kiln("binfmt")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert f"linux/arm64    emulated by {arm64_emulation.entry} ({arm64_emulation.interpreter})" in lines
    assert "linux/amd64    native" in lines
    assert len(lines) == 8
    unmounted = _kiln("binfmt", "--binfmt-dir", str(tmp_path))
    assert f"linux/arm64    not runnable: binfmt_misc is not mounted at {tmp_path}" in unmounted.stdout.splitlines()
    with exclusive():
        arch = _unregistered_arch()
        try:
            installed = _kiln("binfmt", "--install", arch.name)
            assert installed.returncode == 0, installed.stderr
            out = installed.stdout.splitlines()
            assert out[0] == f"registered: {arch.entry_name}"
            assert any(line.endswith(f"emulated by {arch.entry_name} (/usr/bin/qemu-{arch.qemu}-static)")
                       for line in out)
        finally:
            removed = _kiln("binfmt", "--uninstall", arch.name)
        assert removed.returncode == 0, removed.stderr
        assert removed.stdout.splitlines()[0] == f"removed: {arch.entry_name}"
        assert not (binfmt.BINFMT_DIR / arch.entry_name).exists()


def test_cli_errors_are_one_line() -> None:
    bad = _kiln("binfmt", "--install", "sparc")
    assert (bad.returncode, bad.stderr) == (
        2, "error: --install: unknown architecture 'sparc' (kiln knows amd64, 386, arm64, arm, ppc64le, s390x, "
           "riscv64)\n")
    as_nobody = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                                "kiln", "binfmt", "--install", "arm64"], capture_output=True, text=True, check=False)
    assert (as_nobody.returncode, as_nobody.stderr) == (
        1, "error: registering interpreters needs root (binfmt_misc registrations are the whole host's)\n")


def _busybox(image: OciImage, where: Path) -> Path:
    binary = where / "busybox"
    binary.write_bytes(read_layer_file(image.layout, image.tag, "/bin/busybox"))
    binary.chmod(0o755)
    return binary


def test_arm64_busybox_runs_through_the_entry(busybox_arm64_image: OciImage, arm64_emulation: binfmt.Emulation,
                                              tmp_path: Path) -> None:
    busybox = _busybox(busybox_arm64_image, tmp_path)
    assert run([busybox, "uname", "-m"]).stdout == b"aarch64\n"


def test_arm64_busybox_runs_in_a_chroot(busybox_arm64_image: OciImage, arm64_emulation: binfmt.Emulation,
                                        tmp_path: Path) -> None:
    """The F flag at work: the interpreter's path does not exist in the chroot, as in a RUN step's container."""
    bundle = tmp_path / "bundle"
    run(["umoci", "raw", "unpack", "--image", busybox_arm64_image.ref.removeprefix("oci:"), bundle])
    assert arm64_emulation.interpreter is not None
    assert not (bundle / arm64_emulation.interpreter.lstrip("/")).exists()
    out = run(["chroot", bundle, "/bin/sh", "-c", "uname -m; id -un"]).stdout
    assert out == b"aarch64\nroot\n"


def test_argv0_is_preserved(busybox_arm64_image: OciImage, arm64_emulation: binfmt.Emulation,
                            tmp_path: Path) -> None:
    """busybox's sh runs an applet in a pipeline by executing /proc/self/exe with argv[0] the applet's name:
    without the P flag the kernel replaces argv[0] by the file's path and `cat` runs as sh."""
    bundle = tmp_path / "bundle"
    run(["umoci", "raw", "unpack", "--image", busybox_arm64_image.ref.removeprefix("oci:"), bundle])
    script = 'uname -m > /a && cat /a; echo hi | cat; exec -a foo /bin/sh -c "echo \\$0"'
    proc = run(["chroot", bundle, "/bin/sh", "-c", script], check=False)
    assert (proc.stdout, proc.stderr) == (b"aarch64\nhi\n", b"foo: applet not found\n")
