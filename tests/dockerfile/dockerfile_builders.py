"""Instruction objects built by hand, for planner tests that must not depend on the parser."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kiln.dockerfile.instructions import Arg, Copy, Env, From, Instruction, Onbuild, Run, ShellCommand, Workdir
from kiln.dockerfile.lexer import Directives, DockerfileWarning


@dataclass(frozen=True)
class FakeDockerfile:
    instructions: tuple[Instruction, ...]
    path: str = "Dockerfile"
    directives: Directives = Directives()
    warnings: tuple[DockerfileWarning, ...] = field(default=())


def numbered(*instrs: Instruction) -> FakeDockerfile:
    """A Dockerfile of these instructions, given lines 1, 2, 3, ... in order."""
    import dataclasses

    return FakeDockerfile(tuple(dataclasses.replace(i, line=n, end_line=n) for n, i in enumerate(instrs, 1)))


def frm(image: str, name: str | None = None, platform: str | None = None) -> From:
    return From(0, 0, f"FROM {image}", image, name, platform)


def arg(*pairs: tuple[str, str | None]) -> Arg:
    return Arg(0, 0, "ARG", tuple(pairs))


def env(*pairs: tuple[str, str]) -> Env:
    return Env(0, 0, "ENV", tuple(pairs))


def copy(src: str, dest: str, from_: str | None = None) -> Copy:
    return Copy(0, 0, f"COPY {src} {dest}", (src,), dest, from_, None, None, False, False, (), ())


def run(text: str, mounts: Sequence[str] = ()) -> Run:
    return Run(0, 0, f"RUN {text}", ShellCommand(text), (), tuple(mounts), None, None)


def workdir(path: str) -> Workdir:
    return Workdir(0, 0, f"WORKDIR {path}", path)


def onbuild(trigger: Instruction) -> Onbuild:
    return Onbuild(0, 0, "ONBUILD " + trigger.original, trigger, trigger.original)
