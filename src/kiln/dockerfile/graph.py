"""The stage graph of a Dockerfile: stages, their names, and which stage needs which.

A stage needs another when it is built FROM it, copies from it (``COPY --from``) or mounts it
(``RUN --mount=from=``). Names are case-insensitive. A ``--from`` that names no stage (nor, for COPY, a stage
index) is an image reference. As in BuildKit a stage can only use stages defined before it, ``--from`` values
are never expanded, and FROM lines see only the global ARGs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kiln.dockerfile.expand import Expander
from kiln.dockerfile.flags import mount_fields
from kiln.dockerfile.instructions import Arg, Copy, From, Instruction, Onbuild, Run
from kiln.errors import DockerfileError


@dataclass(frozen=True)
class RawStage:
    """One FROM and the instructions up to the next FROM, as written."""

    index: int
    from_: From
    instructions: tuple[Instruction, ...]

    @property
    def name(self) -> str | None:
        return self.from_.name.lower() if self.from_.name else None


@dataclass(frozen=True)
class Reference:
    """Where a COPY --from or RUN --mount from= points: a stage (by index) or an image."""

    stage: int | None
    image: str | None
    line: int


def split_stages(instructions: Sequence[Instruction], path: str = "Dockerfile") -> tuple[list[Arg], list[RawStage]]:
    """The global ARGs (before the first FROM) and the stages."""
    global_args: list[Arg] = []
    stages: list[tuple[From, list[Instruction]]] = []
    for instr in instructions:
        if isinstance(instr, From):
            stages.append((instr, []))
        elif stages:
            stages[-1][1].append(instr)
        elif isinstance(instr, Arg):
            global_args.append(instr)
        else:
            raise DockerfileError(f"no build stage in current context: {instr.keyword} before the first FROM", path,
                                  instr.line)
    if not stages:
        raise DockerfileError("the Dockerfile contains no stages to build (no FROM)", path)
    return global_args, [RawStage(i, f, tuple(body)) for i, (f, body) in enumerate(stages)]


def stage_names(stages: Sequence[RawStage], path: str = "Dockerfile") -> dict[str, int]:
    """Lower-cased stage name -> index. A name used twice is an error (BuildKit would silently take the last)."""
    names: dict[str, int] = {}
    for st in stages:
        if st.name is None:
            continue
        if st.name in names:
            raise DockerfileError(f'duplicate stage name "{st.name}" (first used on stage {names[st.name]})', path,
                                  st.from_.line)
        names[st.name] = st.index
    return names


def _mount_from(spec: str) -> tuple[str | None, str]:
    """The from= and type= of a raw --mount value (the rest is parsed, expanded, when the RUN runs)."""
    fields = mount_fields(spec)
    kind, source = "bind", None
    for field in fields:
        key, eq, value = field.partition("=")
        if not eq:
            continue
        if key.lower() == "type":
            kind = value.lower()
        elif key.lower() == "from":
            source = value
    return source, kind


def _check_unexpanded(value: str, escape: str, path: str, line: int) -> None:
    if Expander({}, escape).word(value) != value:
        raise DockerfileError(
            f"variable expansion is not supported for --from ({value}): define a stage with FROM using a global "
            "ARG instead",
            path,
            line,
        )


def instruction_references(
    instr: Instruction, names: Mapping[str, int], n_stages: int, escape: str = "\\", path: str = "Dockerfile"
) -> list[Reference]:
    """The stages and images one instruction (not its ONBUILD trigger) takes files from."""
    refs: list[Reference] = []
    if isinstance(instr, Copy) and instr.from_:
        value = instr.from_
        _check_unexpanded(value, escape, path, instr.line)
        if value.lower() in names:
            refs.append(Reference(names[value.lower()], None, instr.line))
        elif value.isdecimal() and value.isascii():
            index = int(value)
            if index >= n_stages:
                raise DockerfileError(f"invalid stage index {index} in --from (there are {n_stages} stages)", path,
                                      instr.line)
            refs.append(Reference(index, None, instr.line))
        else:
            refs.append(Reference(None, value, instr.line))
    elif isinstance(instr, Run):
        for spec in instr.mount_specs:
            try:
                source, kind = _mount_from(spec)
            except DockerfileError as e:
                raise e.located(path, instr.line) from None
            # Only by name, as BuildKit: a mount's from= is never a stage index. tmpfs mounts have no source.
            if not source or kind == "tmpfs":
                continue
            _check_unexpanded(source, escape, path, instr.line)
            if source.lower() in names:
                refs.append(Reference(names[source.lower()], None, instr.line))
            else:
                refs.append(Reference(None, source, instr.line))
    return refs


def onbuild_triggers_of(stage: RawStage) -> list[Instruction]:
    """The ONBUILD triggers a stage declares: a stage built FROM it runs them first."""
    return [i.trigger for i in stage.instructions if isinstance(i, Onbuild)]


def check_order(index: int, ref: int, what: str, path: str, line: int, stage_label: str) -> None:
    """A stage may only use stages before it (BuildKit dispatches in file order)."""
    if ref == index:
        raise DockerfileError(f"circular dependency: stage {stage_label} uses itself ({what})", path, line)
    if ref > index:
        raise DockerfileError(
            f"stage {ref} is used by {what} in stage {stage_label} but defined after it: a stage must be defined "
            "before the stages that use it",
            path,
            line,
        )


def needed_stages(target: int, deps: Mapping[int, Sequence[int]]) -> set[int]:
    """The target and every stage it needs, directly or not."""
    seen: set[int] = set()
    todo = [target]
    while todo:
        i = todo.pop()
        if i in seen:
            continue
        seen.add(i)
        todo.extend(deps.get(i, ()))
    return seen


def waves(stages: Sequence[int], deps: Mapping[int, Sequence[int]], path: str = "Dockerfile") -> list[list[int]]:
    """Stages grouped so that each group needs only earlier groups: the stages of a group can run in parallel.

    Kahn's algorithm, a layer at a time (linear in stages and dependencies; needs outside `stages` are ignored)."""
    members = set(stages)
    waiting: dict[int, int] = {}  # stage -> how many of its needs are not built yet
    users: dict[int, list[int]] = {}
    for i in members:
        needs = {d for d in deps.get(i, ()) if d in members}
        waiting[i] = len(needs)
        for d in needs:
            users.setdefault(d, []).append(i)
    out: list[list[int]] = []
    ready = sorted(i for i in members if waiting[i] == 0)
    placed = 0
    while ready:
        out.append(ready)
        placed += len(ready)
        unlocked: list[int] = []
        for d in ready:
            for i in users.get(d, ()):
                waiting[i] -= 1
                if waiting[i] == 0:
                    unlocked.append(i)
        ready = sorted(unlocked)
    if placed != len(members):
        remaining = sorted(i for i in members if waiting[i] > 0)
        raise DockerfileError(f"circular dependency between stages {remaining}", path)
    return out
