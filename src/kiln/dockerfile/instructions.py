"""Typed Dockerfile instructions, and where each one expands variables.

One class per instruction. Fields hold what the Dockerfile says; `expand(ex)` returns a copy with the words
BuildKit expands replaced by their expansion and typed flag values (mounts, chmod, ports, signal) checked.
Bodies of RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK are never expanded here: the shell does that at run time.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import ClassVar, Protocol, TypeVar

from kiln.dockerfile.flags import (
    Chmod,
    Mount,
    PortSpec,
    parse_chmod,
    parse_mount,
    parse_port_spec,
    parse_signal,
)
from kiln.dockerfile.lexer import Heredoc
from kiln.errors import DockerfileError

__all__ = [
    "Add",
    "Arg",
    "Cmd",
    "Command",
    "Copy",
    "Entrypoint",
    "Env",
    "ExecCommand",
    "Expose",
    "From",
    "Healthcheck",
    "Instruction",
    "Label",
    "Maintainer",
    "Onbuild",
    "Run",
    "Shell",
    "ShellCommand",
    "StopSignal",
    "User",
    "Volume",
    "WordExpander",
    "Workdir",
]


class WordExpander(Protocol):
    def word(self, s: str) -> str:
        """BuildKit ProcessWord: one word, quotes removed, variables expanded."""
        ...

    def words(self, s: str) -> list[str]:
        """BuildKit ProcessWords: expanded, then split into words."""
        ...


@dataclass(frozen=True)
class ShellCommand:
    """Shell form: run as SHELL + [text]."""

    text: str


@dataclass(frozen=True)
class ExecCommand:
    """Exec (JSON) form."""

    argv: tuple[str, ...]


Command = ShellCommand | ExecCommand

_I = TypeVar("_I", bound="Instruction")


@dataclass(frozen=True)
class Instruction:
    line: int  # start line, 1-based
    end_line: int
    original: str

    keyword: ClassVar[str] = ""

    def expand(self: _I, ex: WordExpander) -> _I:
        """This instruction with its arguments expanded where BuildKit expands them (default: nowhere)."""
        return self

    def _error(self, message: str) -> DockerfileError:
        return DockerfileError(message, line=self.line)


def _located(inst: Instruction, e: DockerfileError) -> DockerfileError:
    return DockerfileError(e.msg, e.path, e.line if e.line is not None else inst.line)


@dataclass(frozen=True)
class From(Instruction):
    image: str
    name: str | None  # stage name, lower-cased
    platform: str | None

    keyword: ClassVar[str] = "FROM"

    def expand(self, ex: WordExpander) -> From:
        # Called by the planner with the global ARG scope only (a stage name is never expanded).
        platform = ex.word(self.platform) if self.platform is not None else None
        return dataclasses.replace(self, image=ex.word(self.image), platform=platform)


@dataclass(frozen=True)
class Arg(Instruction):
    pairs: tuple[tuple[str, str | None], ...]

    keyword: ClassVar[str] = "ARG"

    def expand(self, ex: WordExpander) -> Arg:
        pairs = tuple((ex.word(k), ex.word(v) if v is not None else None) for k, v in self.pairs)
        return dataclasses.replace(self, pairs=pairs)


@dataclass(frozen=True)
class Env(Instruction):
    pairs: tuple[tuple[str, str], ...]

    keyword: ClassVar[str] = "ENV"

    def expand(self, ex: WordExpander) -> Env:
        pairs = tuple((ex.word(k), ex.word(v)) for k, v in self.pairs)
        for k, _ in pairs:
            if not k:
                raise self._error("ENV names can not be blank")
        return self if pairs == self.pairs else dataclasses.replace(self, pairs=pairs)


@dataclass(frozen=True)
class Label(Instruction):
    pairs: tuple[tuple[str, str], ...]

    keyword: ClassVar[str] = "LABEL"

    def expand(self, ex: WordExpander) -> Label:
        pairs = tuple((ex.word(k), ex.word(v)) for k, v in self.pairs)
        for k, _ in pairs:
            if not k:
                raise self._error("LABEL names can not be blank")
        return self if pairs == self.pairs else dataclasses.replace(self, pairs=pairs)


@dataclass(frozen=True)
class Maintainer(Instruction):
    name: str

    keyword: ClassVar[str] = "MAINTAINER"


@dataclass(frozen=True)
class Run(Instruction):
    command: Command
    heredocs: tuple[Heredoc, ...]
    mount_specs: tuple[str, ...]  # raw --mount values; parsed into `mounts` by expand()
    network: str | None  # default | none | host
    security: str | None  # insecure | sandbox
    mounts: tuple[Mount, ...] = ()

    keyword: ClassVar[str] = "RUN"

    def expand(self, ex: WordExpander) -> Run:
        try:
            mounts = tuple(parse_mount(spec, ex.word) for spec in self.mount_specs)
        except DockerfileError as e:
            raise _located(self, e) from None
        return dataclasses.replace(self, mounts=mounts)


@dataclass(frozen=True)
class Cmd(Instruction):
    command: Command

    keyword: ClassVar[str] = "CMD"


@dataclass(frozen=True)
class Entrypoint(Instruction):
    command: Command

    keyword: ClassVar[str] = "ENTRYPOINT"


_CHECKSUM = re.compile(r"^(?:[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+|[0-9a-f]{7,64})$")


@dataclass(frozen=True)
class Copy(Instruction):
    sources: tuple[str, ...]  # paths (heredoc sources are in `heredocs`, copied under their names)
    dest: str
    from_: str | None
    chown: str | None
    chmod: str | None
    link: bool
    parents: bool
    excludes: tuple[str, ...]
    heredocs: tuple[Heredoc, ...]
    mode: Chmod | None = None  # the parsed --chmod, filled by expand()

    keyword: ClassVar[str] = "COPY"

    def expand(self, ex: WordExpander) -> Copy:
        chmod = ex.word(self.chmod) if self.chmod is not None else None
        try:
            mode = parse_chmod(chmod) if chmod is not None else None
        except DockerfileError as e:
            raise _located(self, e) from None
        return dataclasses.replace(
            self,
            sources=tuple(ex.word(s) for s in self.sources),
            dest=ex.word(self.dest),
            from_=ex.word(self.from_) if self.from_ is not None else None,
            chown=ex.word(self.chown) if self.chown is not None else None,
            chmod=chmod,
            mode=mode,
            excludes=tuple(ex.word(x) for x in self.excludes),
        )


@dataclass(frozen=True)
class Add(Instruction):
    sources: tuple[str, ...]
    dest: str
    chown: str | None
    chmod: str | None
    link: bool
    excludes: tuple[str, ...]
    heredocs: tuple[Heredoc, ...]
    checksum: str | None
    keep_git_dir: bool
    unpack: bool | None  # None: BuildKit's default (unpack local archives, not remote ones)
    mode: Chmod | None = None

    keyword: ClassVar[str] = "ADD"

    def expand(self, ex: WordExpander) -> Add:
        chmod = ex.word(self.chmod) if self.chmod is not None else None
        checksum = ex.word(self.checksum) if self.checksum is not None else None
        try:
            mode = parse_chmod(chmod) if chmod is not None else None
        except DockerfileError as e:
            raise _located(self, e) from None
        if checksum is not None and not _CHECKSUM.match(checksum):
            raise self._error(f"invalid checksum digest format: {checksum}")
        return dataclasses.replace(
            self,
            sources=tuple(ex.word(s) for s in self.sources),
            dest=ex.word(self.dest),
            chown=ex.word(self.chown) if self.chown is not None else None,
            chmod=chmod,
            mode=mode,
            checksum=checksum,
            excludes=tuple(ex.word(x) for x in self.excludes),
        )


@dataclass(frozen=True)
class Workdir(Instruction):
    path: str

    keyword: ClassVar[str] = "WORKDIR"

    def expand(self, ex: WordExpander) -> Workdir:
        return dataclasses.replace(self, path=ex.word(self.path))


@dataclass(frozen=True)
class User(Instruction):
    user: str

    keyword: ClassVar[str] = "USER"

    def expand(self, ex: WordExpander) -> User:
        return dataclasses.replace(self, user=ex.word(self.user))


@dataclass(frozen=True)
class Volume(Instruction):
    paths: tuple[str, ...]

    keyword: ClassVar[str] = "VOLUME"

    def expand(self, ex: WordExpander) -> Volume:
        paths = tuple(ex.word(p) for p in self.paths)
        if any(not p.strip() for p in paths):
            raise self._error("VOLUME specified can not be an empty string")
        return dataclasses.replace(self, paths=paths)


@dataclass(frozen=True)
class Expose(Instruction):
    ports: tuple[str, ...]
    parsed: tuple[PortSpec, ...] = ()  # filled by expand()

    keyword: ClassVar[str] = "EXPOSE"

    def expand(self, ex: WordExpander) -> Expose:
        # EXPOSE uses ProcessWords: one written port may expand into several.
        ports = tuple(word for p in self.ports for word in ex.words(p))
        try:
            parsed = tuple(parse_port_spec(p) for p in ports)
        except DockerfileError as e:
            raise _located(self, e) from None
        return dataclasses.replace(self, ports=ports, parsed=parsed)


@dataclass(frozen=True)
class StopSignal(Instruction):
    signal: str

    keyword: ClassVar[str] = "STOPSIGNAL"

    def expand(self, ex: WordExpander) -> StopSignal:
        signal = ex.word(self.signal)
        try:
            parse_signal(signal)
        except DockerfileError as e:
            raise _located(self, e) from None
        return dataclasses.replace(self, signal=signal)


@dataclass(frozen=True)
class Shell(Instruction):
    argv: tuple[str, ...]

    keyword: ClassVar[str] = "SHELL"


@dataclass(frozen=True)
class Healthcheck(Instruction):
    test: tuple[str, ...] | None  # None for NONE; else ("CMD", *argv) or ("CMD-SHELL", text)
    interval: float | None  # seconds; None: Docker's default
    timeout: float | None
    start_period: float | None
    start_interval: float | None
    retries: int | None

    keyword: ClassVar[str] = "HEALTHCHECK"


@dataclass(frozen=True)
class Onbuild(Instruction):
    trigger: Instruction
    text: str  # the trigger as stored in the image config's OnBuild list

    keyword: ClassVar[str] = "ONBUILD"


def plain_argument(instr: Instruction) -> str | None:
    """The one string an instruction holds, for those whose whole argument is one (USER, STOPSIGNAL, MAINTAINER,
    ONBUILD); None for the others. Renderings differ on quoting and on the rest, not on these."""
    if isinstance(instr, User):
        return instr.user
    if isinstance(instr, StopSignal):
        return instr.signal
    if isinstance(instr, Maintainer):
        return instr.name
    if isinstance(instr, Onbuild):
        return instr.text
    return None
