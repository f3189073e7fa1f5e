"""The build plan: which stages to build for a target, from what, for which platform, in which order.

The plan resolves what can be known without any image: the global ARGs, FROM lines (expanded with the global
ARGs only), the stage graph, the target and the waves of stages that can run in parallel. Instruction
arguments stay unexpanded: they may use the base image's ENV, which only the build engine knows. The engine
expands them with a StageScope (``BuildPlan.scope``) as it goes; ``expand_plan`` does it with unknown base
images for a dry run.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kiln.dockerfile.graph import (
    RawStage,
    check_order,
    instruction_references,
    needed_stages,
    onbuild_triggers_of,
    split_stages,
    stage_names,
    waves,
)
from kiln.dockerfile.instructions import From, Instruction, Onbuild
from kiln.dockerfile.scope import PROXY_ARG_NAMES, GlobalArgs, StageScope, platform_args, resolve_global_args
from kiln.errors import DockerfileError, KilnError
from kiln.oci.platform import Platform

if TYPE_CHECKING:
    from kiln.dockerfile.parse import Dockerfile

SCRATCH = "scratch"


@dataclass(frozen=True)
class StagePlan:
    index: int
    name: str | None  # lower-cased
    from_: From  # with image and platform expanded
    base_image: str | None  # the image reference ("scratch" for none); None when built FROM a stage
    base_stage: int | None
    platform: Platform
    instructions: tuple[Instruction, ...]  # unexpanded; a base stage's ONBUILD triggers first
    onbuild_count: int  # how many of the instructions are ONBUILD triggers
    deps: tuple[int, ...]  # stages that must be built first (the base stage included)
    images: tuple[str, ...]  # images used by COPY --from / RUN --mount from=, besides the base image

    @property
    def label(self) -> str:
        """How BuildKit names the stage in progress output."""
        return self.name or f"stage-{self.index}"


@dataclass(frozen=True)
class BuildPlan:
    path: str
    escape: str
    stages: tuple[StagePlan, ...]  # the stages the target needs, in Dockerfile order
    all_stage_names: tuple[str, ...]  # every stage's label, for messages
    names: Mapping[str, int]  # lower-cased stage name -> index, all stages
    target: int
    waves: tuple[tuple[int, ...], ...]
    global_args: GlobalArgs
    build_args: Mapping[str, str]
    platform_args: Mapping[str, str]
    target_platform: Platform
    build_platform: Platform

    @functools.cached_property
    def _by_index(self) -> dict[int, StagePlan]:
        return {st.index: st for st in self.stages}

    def stage(self, index: int) -> StagePlan:
        return self._by_index[index]

    def scope(self, stage: StagePlan, base_env: Mapping[str, str] | None = None,
              parent: StageScope | None = None) -> StageScope:
        """A fresh scope for ``stage``: from its base image's ENV, or from its base stage's finished scope."""
        if stage.base_stage is not None and parent is None:
            raise ValueError(f"stage {stage.label} is built FROM stage {stage.base_stage}: pass its scope")
        return StageScope(
            self.global_args.values,
            self.build_args,
            self.platform_args,
            base_env=None if stage.base_stage is not None else (base_env or {}),
            parent=parent,
            escape=self.escape,
            path=self.path,
        )

    def unused_build_args(self, used_by_stages: Sequence[frozenset[str]] = ()) -> list[str]:
        """Build arguments no ARG consumed (proxy arguments never count as unused)."""
        used = set(self.global_args.used_build_args)
        for u in used_by_stages:
            used |= u
        return sorted(k for k in self.build_args if k not in used and k not in PROXY_ARG_NAMES)


def _expand_from(instr: From, global_args: GlobalArgs, escape: str, path: str) -> From:
    try:
        expanded = instr.expand(global_args.expander(escape))
    except DockerfileError as e:
        raise e.located(path, instr.line) from None
    if not expanded.image:
        raise DockerfileError(f"base name ({instr.image}) should not be blank", path, instr.line)
    if expanded.platform is not None and not expanded.platform:
        raise DockerfileError(f"empty platform value from expression {instr.platform}", path, instr.line)
    return expanded


def _parse_platform(text: str, path: str, line: int) -> Platform:
    try:
        return Platform.parse(text)
    except KilnError as e:
        raise DockerfileError(f"failed to parse platform {text}: {e}", path, line) from None


def _relocated(instr: Instruction, at: From) -> Instruction:
    # BuildKit reports a trigger at the FROM line of the stage that runs it.
    return dataclasses.replace(instr, line=at.line, end_line=at.end_line)


def plan_build(
    df: Dockerfile,
    build_args: Mapping[str, str],
    target: str | None,
    target_platform: Platform,
    build_platform: Platform,
) -> BuildPlan:
    path, escape = df.path, df.directives.escape
    global_arg_instrs, raw = split_stages(df.instructions, path)
    names = stage_names(raw, path)
    plat_args = platform_args(target_platform, build_platform)
    global_args = resolve_global_args(global_arg_instrs, build_args, plat_args, escape, path)

    if target is None:
        target_index = len(raw) - 1
    elif target.lower() in names:
        target_index = names[target.lower()]
    else:
        known = ", ".join(sorted(names)) or "none (no stage has a name)"
        raise DockerfileError(f'target stage "{target}" could not be found; stages: {known}', path)

    plans: dict[int, StagePlan] = {}
    for st in raw:
        plans[st.index] = _plan_stage(st, raw, plans, names, global_args, target_platform, escape, path)

    deps = {i: p.deps for i, p in plans.items()}
    needed = needed_stages(target_index, deps)
    order = waves(sorted(needed), deps, path)
    return BuildPlan(
        path=path,
        escape=escape,
        stages=tuple(plans[i] for i in sorted(needed)),
        all_stage_names=tuple(s.name or f"stage-{s.index}" for s in raw),
        names=names,
        target=target_index,
        waves=tuple(tuple(w) for w in order),
        global_args=global_args,
        build_args=dict(build_args),
        platform_args=plat_args,
        target_platform=target_platform,
        build_platform=build_platform,
    )


def _plan_stage(
    st: RawStage,
    raw: Sequence[RawStage],
    earlier: Mapping[int, StagePlan],
    names: Mapping[str, int],
    global_args: GlobalArgs,
    target_platform: Platform,
    escape: str,
    path: str,
) -> StagePlan:
    from_ = _expand_from(st.from_, global_args, escape, path)
    label = st.name or str(st.index)
    base_stage: int | None = None
    base_key = from_.image.lower()
    # Only an earlier stage can be a base: BuildKit takes the name of this or a later stage as an image
    # reference (so `FROM node AS node` pulls node).
    if base_key in names and names[base_key] < st.index:
        base_stage = names[base_key]

    triggers: list[Instruction] = []
    if base_stage is not None:
        base = earlier[base_stage]
        platform = base.platform
        triggers = [_relocated(t, st.from_) for t in onbuild_triggers_of(raw[base_stage])]
    elif from_.platform is not None:
        platform = _parse_platform(from_.platform, path, st.from_.line)
    else:
        platform = target_platform

    instructions = (*triggers, *st.instructions)
    deps: set[int] = set() if base_stage is None else {base_stage}
    images: list[str] = []
    for instr in instructions:
        for ref in instruction_references(instr, names, len(raw), escape, path):
            if ref.stage is not None:
                check_order(st.index, ref.stage, instr.keyword, path, ref.line, label)
                deps.add(ref.stage)
            elif ref.image is not None and ref.image not in images:
                images.append(ref.image)
    return StagePlan(
        index=st.index,
        name=st.name,
        from_=from_,
        base_image=None if base_stage is not None else from_.image,
        base_stage=base_stage,
        platform=platform,
        instructions=instructions,
        onbuild_count=len(triggers),
        deps=tuple(sorted(deps)),
        images=tuple(images),
    )


def onbuild_instructions(
    triggers: Sequence[str],
    base_image: str,
    at: From,
    parse: Callable[[str, str, int], Instruction],
    path: str = "Dockerfile",
) -> list[Instruction]:
    """A base image's ONBUILD triggers (its config's OnBuild) as instructions to run right after ``at``.

    ``parse`` is parse_instruction_text. Errors name the base image, at the FROM line, as BuildKit reports them.
    """
    out: list[Instruction] = []
    for text in triggers:
        try:
            instr = parse(text, path, at.line)
        except DockerfileError as e:
            raise DockerfileError(f"ONBUILD trigger {text!r} of base image {base_image}: {e.msg}", path,
                                  at.line) from None
        if isinstance(instr, (From, Onbuild)) or instr.keyword == "MAINTAINER":
            raise DockerfileError(f"ONBUILD trigger {text!r} of base image {base_image}: {instr.keyword} is not "
                                  "allowed as an ONBUILD trigger", path, at.line)
        out.append(_relocated(instr, at))
    return out


def with_onbuild(plan: BuildPlan, stage: StagePlan, triggers: Sequence[Instruction]) -> StagePlan:
    """``stage`` with a base image's triggers placed first; their --from stages must already be in the plan."""
    names = plan.names
    deps, images = set(stage.deps), list(stage.images)
    for instr in triggers:
        for ref in instruction_references(instr, names, len(plan.all_stage_names), plan.escape, plan.path):
            if ref.stage is not None:
                check_order(stage.index, ref.stage, instr.keyword, plan.path, ref.line, stage.label)
                deps.add(ref.stage)
            elif ref.image is not None and ref.image not in images:
                images.append(ref.image)
    return dataclasses.replace(
        stage,
        instructions=(*triggers, *stage.instructions),
        onbuild_count=stage.onbuild_count + len(triggers),
        deps=tuple(sorted(deps)),
        images=tuple(images),
    )


def expand_plan(
    plan: BuildPlan, base_env: Callable[[StagePlan], Mapping[str, str]] | None = None
) -> dict[int, list[Instruction]]:
    """Every planned stage's instructions expanded, base images' ENV from ``base_env`` (default: unknown)."""
    scopes: dict[int, StageScope] = {}
    out: dict[int, list[Instruction]] = {}
    for wave in plan.waves:
        for index in wave:
            st = plan.stage(index)
            if st.base_stage is not None:
                scope = plan.scope(st, parent=scopes[st.base_stage])
            else:
                scope = plan.scope(st, base_env=base_env(st) if base_env else None)
            out[index] = scope.apply_all(st.instructions)
            scopes[index] = scope
    return out
