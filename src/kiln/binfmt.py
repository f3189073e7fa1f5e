"""Running other architectures' binaries: which platforms this kernel can run, and registering qemu-user.

A RUN step of a linux/arm64 stage on an amd64 host executes aarch64 binaries. The kernel runs them through a
binfmt_misc entry: a magic/mask matched against the file's first bytes (the ELF header) names an interpreter
(qemu-aarch64-static). The step runs in runc, inside the image's root, where the host's interpreter path does
not exist; only an entry with the F flag (fix-binary: the kernel opens the interpreter when it is registered,
not when a binary runs) works there. So an entry counts only when it is enabled, matches the platform's ELF
header and has F, whoever registered it (Debian's own qemu-* entries have F; tonistiigi/binfmt's too).

`emulation()` only looks: it never mounts binfmt_misc. `install()` (root) mounts it if needed and registers
kiln's own entries, named kiln-qemu-<qemu arch>, which `uninstall()` removes, and nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kiln import linux
from kiln.errors import EmulationError, UsageError
from kiln.oci.platform import Platform

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
QEMU_DIR = Path("/usr/bin")
ENTRY_PREFIX = "kiln-"

# What kiln registers: F because the interpreter must be found from inside the step's container (see above);
# C (which implies O) as tonistiigi/binfmt does, so that a setuid program of the image (su, sudo, ping) gets its
# own credentials rather than the interpreter's, as on real hardware; and P (preserve argv[0]), as Debian's own
# entries have it and tonistiigi/binfmt offers it (QEMU_PRESERVE_ARGV0): without it the kernel puts the file's
# path where argv[0] was, and a multi-call binary that re-executes itself as an applet (busybox's sh runs
# `cat` as /proc/self/exe with argv[0] "cat") runs as `sh` instead: `echo hi | cat` says "hi: not found".
# qemu-user learns of P from the kernel's AT_FLAGS (bookworm's qemu 7.2 does: tests/binfmt checks it).
REGISTER_FLAGS = "PCF"

ET_EXEC = 2
ET_DYN = 3


@dataclass(frozen=True)
class ElfArch:
    """One architecture as its binaries' ELF headers spell it, and the qemu-user that runs it."""

    name: str  # the image architecture (GOARCH)
    qemu: str  # qemu's name: qemu-<qemu>-static
    elf_class: int  # e_ident[EI_CLASS]: 1 32-bit, 2 64-bit
    elf_data: int  # e_ident[EI_DATA]: 1 little-endian, 2 big-endian
    machine: int  # e_machine (the ELF spec's EM_* numbers)
    mask: bytes  # what kiln registers: qemu's scripts/qemu-binfmt-conf.sh masks, as Debian's binfmt.d has them

    def header(self, e_type: int) -> bytes:
        """The first 20 bytes of a Linux binary of this architecture: e_ident (magic, class, data, version 1,
        the System V ABI, padding), e_type, e_machine."""
        order: Literal["little", "big"] = "little" if self.elf_data == 1 else "big"
        ident = b"\x7fELF" + bytes([self.elf_class, self.elf_data, 1, 0]) + bytes(8)
        return ident + e_type.to_bytes(2, order) + self.machine.to_bytes(2, order)

    def headers(self) -> tuple[bytes, bytes]:
        """Executables and position-independent ones (every dynamic binary Debian builds): an entry must run both."""
        return self.header(ET_EXEC), self.header(ET_DYN)

    @property
    def entry_name(self) -> str:
        return f"{ENTRY_PREFIX}qemu-{self.qemu}"

    def interpreter(self, qemu_dir: Path = QEMU_DIR) -> Path:
        return qemu_dir / f"qemu-{self.qemu}-static"


def _mask(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# EM_386 3, EM_PPC64 21, EM_S390 22, EM_ARM 40, EM_X86_64 62, EM_AARCH64 183, EM_RISCV 243. The masks are qemu's:
# they ignore the OS ABI byte (Linux binaries say System V or GNU) and e_type's low bit (ET_EXEC and ET_DYN).
ARCHES: dict[str, ElfArch] = {a.name: a for a in (
    ElfArch("amd64", "x86_64", 2, 1, 62, _mask("ffffffff fffefe00 ffffffff ffffffff feffffff")),
    ElfArch("386", "i386", 1, 1, 3, _mask("ffffffff fffefe00 ffffffff ffffffff feffffff")),
    ElfArch("arm64", "aarch64", 2, 1, 183, _mask("ffffffff ffffff00 ffffffff ffffffff feffffff")),
    ElfArch("arm", "arm", 1, 1, 40, _mask("ffffffff ffffff00 ffffffff ffffffff feffffff")),
    ElfArch("ppc64le", "ppc64le", 2, 1, 21, _mask("ffffffff fffffffc ffffffff ffffffff feffff00")),
    ElfArch("s390x", "s390x", 2, 2, 22, _mask("ffffffff fffffffc ffffffff ffffffff fffeffff")),
    ElfArch("riscv64", "riscv64", 2, 1, 243, _mask("ffffffff ffffff00 ffffffff ffffffff feffffff")),
)}  # fmt: skip

# What a kernel runs without help besides its own architecture: only where it surely does. An x86_64 kernel runs
# i386 binaries (IA32 emulation, on in every distribution kernel); an arm64 one may lack AArch32 (the CPU or the
# kernel), so arm there needs an entry like any other.
_ALSO_NATIVE = {"amd64": ("386",)}


@dataclass(frozen=True)
class Emulation:
    """How a platform's binaries run here."""

    platform: Platform
    native: bool
    entry: str | None  # the binfmt_misc entry that runs them (None if native or none)
    interpreter: str | None
    problem: str | None  # None when runnable; else why not

    @property
    def runnable(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class Entry:
    """A binfmt_misc entry as its file under the mount shows it."""

    name: str
    enabled: bool
    interpreter: str
    flags: str
    offset: int
    magic: bytes
    mask: bytes | None

    def matches(self, header: bytes) -> bool:
        """The kernel's test: (file byte ^ magic byte) & mask byte is zero at every magic position."""
        end = self.offset + len(self.magic)
        if not self.magic or end > len(header):
            return False
        mask = self.mask or b"\xff" * len(self.magic)
        window = header[self.offset:end]
        return all((b ^ m) & k == 0 for b, m, k in zip(window, self.magic, mask, strict=True))


def parse_entry(name: str, text: str) -> Entry | None:
    """An entry file's text; None for what cannot match an ELF header (extension entries)."""
    fields: dict[str, str] = {}
    enabled = False
    for line in text.splitlines():
        if line.strip() == "enabled":
            enabled = True
            continue
        key, _, value = line.partition(" ")
        fields[key.rstrip(":")] = value.strip()
    if "magic" not in fields:
        return None
    try:
        magic = bytes.fromhex(fields["magic"])
        mask = bytes.fromhex(fields["mask"]) if fields.get("mask") else None
        offset = int(fields.get("offset", "0"))
    except ValueError:
        return None
    return Entry(name, enabled, fields.get("interpreter", ""), fields.get("flags", ""), offset, magic, mask)


def mounted(binfmt_dir: Path = BINFMT_DIR) -> bool:
    return (binfmt_dir / "register").exists()


def entries(binfmt_dir: Path = BINFMT_DIR) -> list[Entry]:
    """Every magic entry registered, by name."""
    found = []
    try:
        names = sorted(os.listdir(binfmt_dir))
    except OSError:
        return []
    for name in names:
        if name in ("register", "status"):
            continue
        try:
            text = (binfmt_dir / name).read_text(errors="replace")
        except OSError:
            continue  # removed while listing
        entry = parse_entry(name, text)
        if entry is not None:
            found.append(entry)
    return found


@dataclass(frozen=True)
class Match:
    """The entry that runs binaries with some headers, or why none does."""

    entry: Entry | None
    problem: str | None


def match(headers: Sequence[bytes], binfmt_dir: Path = BINFMT_DIR) -> Match:
    """Which entry runs files starting with each of headers, from inside a container. The kernel tries the most
    recently registered entry first and the directory does not show that order, so one enabled matching entry
    without F is a problem even beside one with F: the kernel may pick it."""
    if not mounted(binfmt_dir):
        return Match(None, f"binfmt_misc is not mounted at {binfmt_dir}")
    try:
        if (binfmt_dir / "status").read_text().strip() != "enabled":
            return Match(None, f"binfmt_misc is disabled ({binfmt_dir / 'status'})")
    except OSError as err:
        return Match(None, f"cannot read {binfmt_dir / 'status'}: {err.strerror}")
    candidates = [e for e in entries(binfmt_dir) if all(e.matches(h) for h in headers)]
    enabled = [e for e in candidates if e.enabled]
    for e in enabled:
        if "F" not in e.flags:
            return Match(e, f"binfmt_misc entry {e.name} ({e.interpreter}) lacks the F flag, so its interpreter "
                            "cannot be found inside a RUN step's container")
    if enabled:
        return Match(enabled[0], None)
    if candidates:
        return Match(candidates[0], f"binfmt_misc entry {candidates[0].name} is disabled")
    return Match(None, "no binfmt_misc entry runs its binaries")


def native(platform: Platform, host: Platform | None = None) -> bool:
    host = (host or Platform.host()).normal()
    p = platform.normal()
    if p.os != host.os:
        return False
    if p.architecture == host.architecture:
        # An armv6 kernel cannot run v7 binaries; every other variant of the host's architecture runs.
        return not (p.architecture == "arm" and host.variant == "v6" and p.variant != "v6")
    return p.architecture in _ALSO_NATIVE.get(host.architecture, ())


def emulation(platform: Platform, binfmt_dir: Path = BINFMT_DIR) -> Emulation:
    """How binaries of platform run here; looks only (binfmt_misc is never mounted here)."""
    p = platform.normal()
    if native(p):
        return Emulation(p, True, None, None, None)
    if p.os != "linux":
        return Emulation(p, False, None, None, f"RUN steps run only Linux binaries, not {p.os}'s")
    arch = ARCHES.get(p.architecture)
    if arch is None:
        known = ", ".join(ARCHES)
        return Emulation(p, False, None, None, f"kiln does not know {p.architecture}'s binaries (it knows {known})")
    found = match(arch.headers(), binfmt_dir)
    entry = found.entry
    return Emulation(p, False, entry.name if entry else None, entry.interpreter if entry else None, found.problem)


def fix_hint(architecture: str) -> str:
    return (f"run `kiln binfmt --install {architecture}` as root (needs qemu-user-static), or on a host with Docker "
            f"`docker run --privileged --rm tonistiigi/binfmt --install {architecture}`")


def require_runnable(platforms: Iterable[Platform], binfmt_dir: Path = BINFMT_DIR) -> None:
    """Raise EmulationError, one line per platform whose binaries this host cannot run, each saying how to fix it."""
    lines: list[str] = []
    names: list[str] = []
    for platform in dict.fromkeys(p.normal() for p in platforms):
        em = emulation(platform, binfmt_dir)
        if em.problem is None:
            continue
        names.append(str(platform))
        hint = f": {fix_hint(platform.architecture)}" if platform.architecture in ARCHES else ""
        lines.append(f"cannot run {platform} binaries here ({em.problem}){hint}")
    if lines:
        raise EmulationError("\n".join(lines), tuple(names))


def architecture(name: str) -> ElfArch:
    """An architecture as users name it: arm64, aarch64, linux/arm/v7, amd64, x86_64."""
    try:
        arch = Platform.parse(name).architecture
    except UsageError:
        arch = name
    found = ARCHES.get(arch)
    if found is None:
        raise EmulationError(f"unknown architecture {name!r} (kiln knows {', '.join(ARCHES)})")
    return found


def _escaped(data: bytes) -> str:
    # The kernel reads \xHH escapes itself; raw bytes would stop at the first NUL or ':' and register a far
    # shorter magic than meant (one that matches every binary, the host's own included).
    return "".join(f"\\x{b:02x}" for b in data)


def register_line(arch: ElfArch, interpreter: Path) -> str:
    magic = bytes(h & k for h, k in zip(arch.header(ET_EXEC), arch.mask, strict=True))
    return f":{arch.entry_name}:M:0:{_escaped(magic)}:{_escaped(arch.mask)}:{interpreter}:{REGISTER_FLAGS}"


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise EmulationError(f"{what} needs root (binfmt_misc registrations are the whole host's)")


def ensure_mounted(binfmt_dir: Path = BINFMT_DIR) -> bool:
    """Mount binfmt_misc unless it is; True when this call mounted it. It stays mounted: unmounting it drops
    every registration (as kernel 6.x does)."""
    if mounted(binfmt_dir):
        return False
    try:
        linux.mount("binfmt_misc", binfmt_dir, "binfmt_misc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    except OSError as e:
        raise EmulationError(f"cannot mount binfmt_misc at {binfmt_dir} ({e.strerror}); inside a container, "
                             "register the interpreters on the host instead") from None
    return True


def install(architectures: Iterable[str], binfmt_dir: Path = BINFMT_DIR, qemu_dir: Path = QEMU_DIR) -> list[str]:
    """Register qemu-<arch>-static with F for each architecture this host cannot run yet (root). Idempotent: an
    architecture already runnable (natively, through kiln's entry or another usable one) is left alone. Returns
    the names of the entries registered."""
    arches = list(dict.fromkeys(architecture(a) for a in architectures))
    _require_root("registering interpreters")
    missing = [str(a.interpreter(qemu_dir)) for a in arches if not a.interpreter(qemu_dir).is_file()]
    if missing:
        raise EmulationError(f"{', '.join(missing)} missing: apt-get install qemu-user-static")
    ensure_mounted(binfmt_dir)
    registered = []
    for arch in arches:
        if emulation(Platform("linux", arch.name), binfmt_dir).problem is None:
            continue
        if (binfmt_dir / arch.entry_name).exists():
            _remove(binfmt_dir, arch.entry_name)  # kiln's, yet not usable (disabled by hand): register it afresh
        try:
            with open(binfmt_dir / "register", "w") as f:
                f.write(register_line(arch, arch.interpreter(qemu_dir)))
        except OSError as e:
            raise EmulationError(f"cannot register {arch.entry_name} in {binfmt_dir}: {e.strerror}") from None
        registered.append(arch.entry_name)
    return registered


def _remove(binfmt_dir: Path, name: str) -> None:
    try:
        with open(binfmt_dir / name, "w") as f:
            f.write("-1")
    except FileNotFoundError:
        pass
    except OSError as e:
        raise EmulationError(f"cannot remove binfmt_misc entry {name}: {e.strerror}") from None


def uninstall(architectures: Iterable[str], binfmt_dir: Path = BINFMT_DIR) -> list[str]:
    """Remove kiln's entries for architectures (root); others' entries are never touched. Returns the names
    removed."""
    arches = list(dict.fromkeys(architecture(a) for a in architectures))
    _require_root("removing interpreters")
    removed = []
    for arch in arches:
        if (binfmt_dir / arch.entry_name).exists():
            _remove(binfmt_dir, arch.entry_name)
            removed.append(arch.entry_name)
    return removed
