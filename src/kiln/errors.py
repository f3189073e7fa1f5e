"""kiln's exception types.

Every error a user can cause is a KilnError carrying what the user needs to find the cause: the Dockerfile and
line, the flag, the image reference or the path. The command line turns them into one message and an exit code;
nothing below cli.py prints errors itself.
"""

from __future__ import annotations

from dataclasses import dataclass


class KilnError(Exception):
    """Base of every error kiln reports to its user. `location` is the Dockerfile line of the instruction that
    met it, attached once by the engine (KilnError.at) whatever the error's type, so its exit code stays."""

    exit_code: int = 1
    location: SourceLocation | None = None

    def message(self) -> str:
        return str(self)

    def at(self, where: SourceLocation) -> KilnError:
        """This error, placed at a Dockerfile line unless it already knows one."""
        if self.location is None:
            self.location = where
        return self

    def describe(self) -> str:
        """The one-line message the user sees: the location first, once."""
        text = str(self)
        if self.location is not None and not text.startswith(f"{self.location.path}:"):
            return f"{self.location}: {text}"
        return text


@dataclass
class SourceLocation:
    """A place in a Dockerfile: its path as the user named it, and a 1-based line."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


class DockerfileError(KilnError):
    """Bad Dockerfile input: syntax, unknown instruction or flag, bad value, unknown stage.

    Rendered as ``Dockerfile:LINE: message`` so editors and CI logs can jump to it.
    """

    def __init__(self, message: str, path: str = "Dockerfile", line: int | None = None) -> None:
        super().__init__(message)
        self.msg = message
        self.path = path
        self.line = line

    def located(self, path: str, line: int | None = None) -> DockerfileError:
        """The same error placed in a file (and line, when the raiser did not know it)."""
        return DockerfileError(self.msg, path, self.line if self.line is not None else line)

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.msg}"
        return f"{self.path}:{self.line}: {self.msg}"


class UsageError(KilnError):
    """A bad or unsupported command-line flag or flag value. Names the flag."""

    exit_code = 2

    def __init__(self, message: str, flag: str | None = None) -> None:
        super().__init__(message)
        self.msg = message
        self.flag = flag

    def __str__(self) -> str:
        return f"{self.flag}: {self.msg}" if self.flag else self.msg


class NotSupportedYet(UsageError):
    """A flag or feature kiln accepts but does not implement yet: never ignored silently."""

    def __init__(self, flag: str, what: str = "") -> None:
        super().__init__(f"not supported yet{': ' + what if what else ''}", flag)


class ContextError(KilnError):
    """A build-context problem: a missing source, a path outside the context, an unreadable archive."""


class ImageFormatError(KilnError):
    """An image, layout, archive, manifest or layer that is malformed or corrupt."""


class DigestMismatch(ImageFormatError):
    """Bytes that do not hash to the digest they were fetched or stored under."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"{what}: digest mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class UnsafePathError(ImageFormatError):
    """A layer entry or link that would land outside the root it is extracted onto."""


class RegistryError(KilnError):
    """A registry interaction that failed. Names the reference; never carries credentials."""

    def __init__(self, message: str, reference: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.msg = message
        self.reference = reference
        self.status = status

    def __str__(self) -> str:
        return f"{self.reference}: {self.msg}" if self.reference else self.msg


class AuthError(RegistryError):
    """Authentication refused or impossible (wrong password, no credentials, token service failure)."""


class BuildError(KilnError):
    """A build step that failed (a RUN with a non-zero status, a USER that does not exist, ...).

    Carries the Dockerfile location of the instruction.
    """

    def __init__(self, message: str, location: SourceLocation | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.msg = message
        self.location = location
        self.status = status
        # A RUN that failed: kiln exits with the command's own status, as kaniko and Docker's legacy builder do
        # (pipelines moving from kaniko rely on it); any other build error: 1.
        self.exit_code = status if status is not None and 0 < status < 256 else 1

    def __str__(self) -> str:
        return f"{self.location}: {self.msg}" if self.location else self.msg


class SandboxError(KilnError):
    """Setting up or running the sandbox of a RUN step failed (namespaces, mounts, pivot_root)."""


class SnapshotError(KilnError):
    """Finding or recording the changes of a step failed."""


class EmulationError(KilnError):
    """Binaries of a platform this host cannot run (no binfmt_misc interpreter usable inside a container), or a
    failed `kiln binfmt --install`. The message says how to fix it, one line per platform."""

    def __init__(self, message: str, platforms: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.msg = message
        self.platforms = platforms
