"""kiln.binfmt's rules without the kernel: ELF headers against Debian's own binfmt.d lines and real binaries,
what counts as native, entries read from a directory laid out as binfmt_misc shows them, the error's text."""

from __future__ import annotations

import platform
import re
from pathlib import Path

import pytest

from kiln import binfmt
from kiln.errors import EmulationError
from kiln.oci.platform import Platform

ARM64 = Platform("linux", "arm64")
AMD64_HOST = platform.machine() == "x86_64"
needs_amd64_host = pytest.mark.skipif(not AMD64_HOST, reason="the CI machines are x86_64")


def _unescape(text: str) -> bytes:
    return bytes(int(h, 16) for h in re.findall(r"\\x([0-9a-fA-F]{2})", text))


def _debian_line(qemu: str) -> tuple[bytes, bytes] | None:
    """(magic, mask) of Debian's /usr/lib/binfmt.d/qemu-QEMU.conf (qemu-user-static), if installed."""
    conf = Path(f"/usr/lib/binfmt.d/qemu-{qemu}.conf")
    if not conf.exists():
        return None
    fields = conf.read_text().strip().split(":")
    return _unescape(fields[4]), _unescape(fields[5])


def test_elf_headers_and_masks_are_debians() -> None:
    """Each architecture's header (masked) is the magic Debian's qemu-user-static registers, and kiln's mask is
    Debian's: an independent source for the e_machine numbers and byte orders."""
    compared = []
    for arch in binfmt.ARCHES.values():
        line = _debian_line(arch.qemu)
        if line is None:
            continue  # Debian ships none for the host's own family (x86_64 and i386 on amd64)
        magic, mask = line
        assert arch.mask == mask, arch.name
        for header in arch.headers():
            assert bytes(h & k for h, k in zip(header, mask, strict=True)) == bytes(
                m & k for m, k in zip(magic, mask, strict=True)), arch.name
        compared.append(arch.name)
    assert {"arm64", "arm", "ppc64le", "s390x", "riscv64"} <= set(compared), "qemu-user-static is not installed"


@needs_amd64_host
@pytest.mark.parametrize("path", ["/bin/busybox", "/usr/bin/python3"])
def test_amd64_header_matches_host_binaries(path: str) -> None:
    """A static executable (busybox) and a PIE (python3): kiln's amd64 entry would match both."""
    header = Path(path).read_bytes()[:20]
    arch = binfmt.ARCHES["amd64"]
    magic = bytes(h & k for h, k in zip(arch.header(binfmt.ET_EXEC), arch.mask, strict=True))
    entry = binfmt.Entry("x", True, "/x", "F", 0, magic, arch.mask)
    assert entry.matches(header)
    assert not binfmt.Entry("y", True, "/y", "F", 0, binfmt.ARCHES["arm64"].header(2), binfmt.ARCHES["arm64"].mask
                            ).matches(header)


@needs_amd64_host
def test_native_platforms_on_amd64() -> None:
    assert binfmt.native(Platform("linux", "amd64"))
    assert binfmt.native(Platform("linux", "386"))
    assert not binfmt.native(ARM64)
    assert not binfmt.native(Platform("linux", "arm", "v7"))
    assert not binfmt.native(Platform("windows", "amd64"))


def test_arm_on_arm64_is_not_claimed_native() -> None:
    arm64 = Platform("linux", "arm64")
    assert binfmt.native(Platform("linux", "arm64", "v8"), host=arm64)
    assert not binfmt.native(Platform("linux", "arm", "v7"), host=arm64)
    assert not binfmt.native(Platform("linux", "arm", "v7"), host=Platform("linux", "arm", "v6"))


@needs_amd64_host
def test_native_needs_no_binfmt(tmp_path: Path) -> None:
    em = binfmt.emulation(Platform("linux", "386"), tmp_path)
    assert (em.native, em.entry, em.problem) == (True, None, None)


def test_not_mounted_is_said_and_nothing_is_mounted(tmp_path: Path) -> None:
    em = binfmt.emulation(ARM64, tmp_path)
    assert not em.native and em.entry is None
    assert em.problem == f"binfmt_misc is not mounted at {tmp_path}"
    assert list(tmp_path.iterdir()) == []


def _fake_binfmt(root: Path, entries: dict[str, str]) -> Path:
    """A directory laid out as binfmt_misc shows itself (register, status, one file per entry)."""
    root.mkdir()
    (root / "register").touch()
    (root / "status").write_text("enabled\n")
    for name, text in entries.items():
        (root / name).write_text(text)
    return root


def _entry_text(arch: str, interpreter: str, flags: str, enabled: bool = True) -> str:
    a = binfmt.ARCHES[arch]
    magic = bytes(h & k for h, k in zip(a.header(binfmt.ET_EXEC), a.mask, strict=True))
    return (f"{'enabled' if enabled else 'disabled'}\ninterpreter {interpreter}\nflags: {flags}\noffset 0\n"
            f"magic {magic.hex()}\nmask {a.mask.hex()}\n")


def test_debian_entry_with_f_counts(tmp_path: Path) -> None:
    d = _fake_binfmt(tmp_path / "b", {
        "python3.11": "enabled\ninterpreter /usr/bin/python3.11\nflags: \nextension .pyc\n",
        "qemu-aarch64": _entry_text("arm64", "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "POCF"),
    })  # fmt: skip
    em = binfmt.emulation(ARM64, d)
    assert (em.entry, em.interpreter, em.problem) == (
        "qemu-aarch64", "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", None)
    binfmt.require_runnable([ARM64, Platform("linux", "arm64", "v8")], d)


def test_entry_without_f_is_a_problem(tmp_path: Path) -> None:
    d = _fake_binfmt(tmp_path / "b", {"qemu-aarch64": _entry_text("arm64", "/usr/bin/qemu-aarch64", "OC")})
    em = binfmt.emulation(ARM64, d)
    assert em.entry == "qemu-aarch64"
    assert em.problem is not None and "lacks the F flag" in em.problem


def test_an_entry_without_f_spoils_one_with_f(tmp_path: Path) -> None:
    """The kernel may pick either (the newest first; the directory does not show which that is)."""
    d = _fake_binfmt(tmp_path / "b", {
        "a-good": _entry_text("arm64", "/usr/bin/qemu-aarch64-static", "F"),
        "b-bad": _entry_text("arm64", "/usr/bin/qemu-aarch64", ""),
    })  # fmt: skip
    problem = binfmt.emulation(ARM64, d).problem
    assert problem is not None and "b-bad" in problem and "F flag" in problem


def test_disabled_entry_and_other_architectures(tmp_path: Path) -> None:
    d = _fake_binfmt(tmp_path / "b", {
        "qemu-aarch64": _entry_text("arm64", "/usr/bin/qemu-aarch64-static", "F", enabled=False),
        "qemu-riscv64": _entry_text("riscv64", "/usr/bin/qemu-riscv64-static", "F"),
    })  # fmt: skip
    assert binfmt.emulation(ARM64, d).problem == "binfmt_misc entry qemu-aarch64 is disabled"
    assert binfmt.emulation(Platform("linux", "s390x"), d).problem == "no binfmt_misc entry runs its binaries"
    assert binfmt.emulation(Platform("linux", "riscv64"), d).entry == "qemu-riscv64"
    (d / "status").write_text("disabled\n")
    assert binfmt.emulation(Platform("linux", "riscv64"), d).problem == f"binfmt_misc is disabled ({d / 'status'})"


def test_arm_variants_share_qemu_arm(tmp_path: Path) -> None:
    d = _fake_binfmt(tmp_path / "b", {"qemu-arm": _entry_text("arm", "/usr/bin/qemu-arm-static", "CF")})
    for variant in ("v6", "v7", None):
        em = binfmt.emulation(Platform("linux", "arm", variant), d)
        assert (em.entry, em.problem) == ("qemu-arm", None)
    assert binfmt.emulation(ARM64, d).problem == "no binfmt_misc entry runs its binaries"


@needs_amd64_host
def test_require_runnable_says_how_to_fix_each_platform(tmp_path: Path) -> None:
    platforms = [Platform("linux", "amd64"), ARM64, Platform("linux", "arm", "v7"), Platform("linux", "arm64", "v8")]
    with pytest.raises(EmulationError) as caught:
        binfmt.require_runnable(platforms, tmp_path)
    e = caught.value
    lines = e.describe().splitlines()
    assert lines == [
        f"cannot run linux/arm64 binaries here (binfmt_misc is not mounted at {tmp_path}): run "
        "`kiln binfmt --install arm64` as root (needs qemu-user-static), or on a host with Docker "
        "`docker run --privileged --rm tonistiigi/binfmt --install arm64`",
        f"cannot run linux/arm/v7 binaries here (binfmt_misc is not mounted at {tmp_path}): run "
        "`kiln binfmt --install arm` as root (needs qemu-user-static), or on a host with Docker "
        "`docker run --privileged --rm tonistiigi/binfmt --install arm`",
    ]
    assert e.platforms == ("linux/arm64", "linux/arm/v7")
    assert e.exit_code == 1
    binfmt.require_runnable([Platform("linux", "amd64"), Platform("linux", "386")], tmp_path)


def test_unknown_architecture_is_named(tmp_path: Path) -> None:
    em = binfmt.emulation(Platform("linux", "mips64le"), tmp_path)
    assert em.problem is not None and "mips64le" in em.problem
    with pytest.raises(EmulationError, match="cannot run linux/mips64le binaries"):
        binfmt.require_runnable([Platform("linux", "mips64le")], tmp_path)
    with pytest.raises(EmulationError, match="unknown architecture 'sparc'"):
        binfmt.install(["sparc"], tmp_path)


def test_architecture_names_users_type() -> None:
    assert [binfmt.architecture(n).qemu for n in ("arm64", "aarch64", "linux/arm/v7", "x86_64", "386")] == [
        "aarch64", "aarch64", "arm", "x86_64", "i386"]


def test_install_needs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(EmulationError, match="needs root"):
        binfmt.install(["arm64"], tmp_path)
    with pytest.raises(EmulationError, match="needs root"):
        binfmt.uninstall(["arm64"], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_missing_interpreter_says_which_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    with pytest.raises(EmulationError) as caught:
        binfmt.install(["arm64", "riscv64"], tmp_path / "binfmt", qemu_dir=tmp_path)
    assert str(caught.value) == (f"{tmp_path}/qemu-aarch64-static, {tmp_path}/qemu-riscv64-static missing: "
                                 "apt-get install qemu-user-static")
    assert not (tmp_path / "binfmt").exists()


def test_register_line_is_escaped_text() -> None:
    """The kernel parses \\xHH itself: a raw NUL or ':' would cut the magic short (and match every binary)."""
    line = binfmt.register_line(binfmt.ARCHES["arm64"], Path("/usr/bin/qemu-aarch64-static"))
    assert line.isascii() and line.isprintable()
    name, kind, offset, magic, mask, interpreter, flags = line.split(":")[1:]
    assert (name, kind, offset, interpreter, flags) == (
        "kiln-qemu-aarch64", "M", "0", "/usr/bin/qemu-aarch64-static", "PCF")
    assert _unescape(magic) == bytes.fromhex("7f454c460201010000000000000000000200b700")
    assert _unescape(mask) == binfmt.ARCHES["arm64"].mask
