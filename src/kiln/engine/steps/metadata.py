"""Instructions that change only the image config: ENV LABEL USER EXPOSE VOLUME CMD ENTRYPOINT SHELL HEALTHCHECK
STOPSIGNAL ONBUILD MAINTAINER. Each takes the expanded instruction and the stage's config and returns the new config;
none of them touches the root filesystem."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from kiln.dockerfile.instructions import (
    Cmd,
    Command,
    Entrypoint,
    Env,
    ExecCommand,
    Expose,
    Healthcheck,
    Instruction,
    Label,
    Maintainer,
    Onbuild,
    Shell,
    ShellCommand,
    StopSignal,
    User,
    Volume,
    plain_argument,
)
from kiln.oci.config import ContainerConfig
from kiln.oci.config import Healthcheck as ConfigHealthcheck

DEFAULT_SHELL = ("/bin/sh", "-c")
_NS = 1_000_000_000


@dataclass(frozen=True)
class MetaState:
    """What metadata instructions read and write: the runtime config, the author, and whether this stage has set
    CMD itself (ENTRYPOINT resets a CMD inherited from the base image, not one set in this stage)."""

    config: ContainerConfig
    author: str = ""
    cmd_set_here: bool = False

    @property
    def shell(self) -> tuple[str, ...]:
        return self.config.shell or DEFAULT_SHELL


def command_argv(command: Command, shell: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(command, ExecCommand):
        return command.argv
    assert isinstance(command, ShellCommand)
    return (*shell, command.text)


def apply_metadata(instr: Instruction, state: MetaState) -> MetaState | None:
    """The state after a config-only instruction, or None when ``instr`` is not one."""
    c = state.config
    if isinstance(instr, Env):
        for key, value in instr.pairs:
            c = c.with_env(key, value)
        return replace(state, config=c)
    if isinstance(instr, Label):
        return replace(state, config=replace(c, labels={**c.labels, **dict(instr.pairs)}))
    if isinstance(instr, Maintainer):
        return replace(state, author=instr.name)
    if isinstance(instr, User):
        return replace(state, config=replace(c, user=instr.user))
    if isinstance(instr, Expose):
        ports = set(c.exposed_ports)
        for spec in instr.parsed:
            ports.update(spec.keys())
        return replace(state, config=replace(c, exposed_ports=tuple(sorted(ports))))
    if isinstance(instr, Volume):
        return replace(state, config=replace(c, volumes=tuple(sorted({*c.volumes, *instr.paths}))))
    if isinstance(instr, Cmd):
        return replace(state, config=replace(c, cmd=command_argv(instr.command, state.shell)), cmd_set_here=True)
    if isinstance(instr, Entrypoint):
        c = replace(c, entrypoint=command_argv(instr.command, state.shell))
        if not state.cmd_set_here:
            c = replace(c, cmd=None)
        return replace(state, config=c)
    if isinstance(instr, Shell):
        return replace(state, config=replace(c, shell=instr.argv))
    if isinstance(instr, StopSignal):
        return replace(state, config=replace(c, stop_signal=instr.signal))
    if isinstance(instr, Healthcheck):
        return replace(state, config=replace(c, healthcheck=config_healthcheck(instr)))
    if isinstance(instr, Onbuild):
        return replace(state, config=replace(c, on_build=(*c.on_build, instr.text)))
    return None


def config_healthcheck(instr: Healthcheck) -> ConfigHealthcheck:
    if instr.test is None:
        return ConfigHealthcheck(("NONE",))

    def ns(seconds: float | None) -> int:
        return round(seconds * _NS) if seconds else 0

    return ConfigHealthcheck(
        tuple(instr.test),
        ns(instr.interval),
        ns(instr.timeout),
        ns(instr.start_period),
        ns(instr.start_interval),
        instr.retries or 0,
    )


def created_by(instr: Instruction, shell: tuple[str, ...], run_args: list[str] | None = None) -> str:
    """The history line of an instruction, in BuildKit's spelling where it has one."""
    kw = instr.keyword
    if isinstance(instr, Env | Label):
        return f"{kw} " + " ".join(f"{k}={v}" for k, v in instr.pairs)
    if isinstance(instr, Cmd | Entrypoint):
        return f"{kw} {json.dumps(list(command_argv(instr.command, shell)))}"
    if isinstance(instr, Expose):
        return f"{kw} " + " ".join(p for spec in instr.parsed for p in spec.keys())  # noqa: SIM118 - PortSpec.keys, not a dict
    if isinstance(instr, Volume):
        return f"{kw} {json.dumps(list(instr.paths))}"
    if isinstance(instr, Shell):
        return f"{kw} {json.dumps(list(instr.argv))}"
    if (arg := plain_argument(instr)) is not None:
        return f"{kw} {arg}"
    # RUN, COPY, ADD, WORKDIR, HEALTHCHECK: the source text after the keyword is what users recognise.
    body = instr.original.strip()
    first, _, rest = body.partition(" ")
    text = f"{kw} {rest.strip()}" if first.upper() == kw else body
    if run_args:
        text = f"|{len(run_args)} {' '.join(run_args)} {text}"
    return text
