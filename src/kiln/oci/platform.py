"""Platforms (os/architecture/variant) as the OCI image index and Docker's --platform name them."""

from __future__ import annotations

import platform as _platform
from dataclasses import dataclass

from kiln.errors import UsageError

# uname machine names to the GOARCH names images use.
_MACHINE_TO_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


# The operating systems containerd's platform parser knows by name: alone, one means that OS on this machine's
# architecture.
_KNOWN_OS = frozenset({"linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris", "illumos",
                       "android", "ios", "aix", "dragonfly", "plan9", "js", "wasip1"})


@dataclass(frozen=True, order=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]`` (or a bare ``arch``, taken as linux), normalising as containerd does."""
        parts = [p.strip().lower() for p in text.strip().split("/")]
        if len(parts) == 1 and parts[0] in _KNOWN_OS:
            return cls(parts[0], cls.host().architecture, cls.host().variant)  # containerd: an OS alone
        if len(parts) == 1 and parts[0]:
            parts = ["linux", parts[0]]
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"bad platform {text!r}: expected os/arch[/variant]", "--platform")
        os_, arch = parts[0], _MACHINE_TO_ARCH.get(parts[1], parts[1])
        variant = parts[2] if len(parts) == 3 else None
        if arch == "arm64" and variant == "v8":
            variant = None  # arm64 means v8 unless said otherwise; keep one spelling so comparisons work
        if arch == "arm" and variant is None:
            variant = "v7"
        return cls(os_, arch, variant)

    @classmethod
    def host(cls) -> Platform:
        machine = _platform.machine().lower()
        arch = _MACHINE_TO_ARCH.get(machine, machine)
        variant = {"armv7l": "v7", "armv6l": "v6"}.get(machine)
        return cls("linux", arch, variant)

    def normal(self) -> Platform:
        """One spelling per platform, so that equality means what it should (arm64 is v8 unless said otherwise;
        arm is v7), as parse() gives for what users type."""
        if self.architecture == "arm64" and self.variant == "v8":
            return Platform(self.os, self.architecture, None)
        if self.architecture == "arm" and self.variant is None:
            return Platform(self.os, self.architecture, "v7")
        return self

    def matches(self, other: Platform) -> bool:
        """True when an image made for ``other`` serves a build for this platform."""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        return self.variant is None or other.variant is None or self.variant == other.variant

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base
