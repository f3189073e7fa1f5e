"""What ``kiln build --dry-run`` shows: the build plan with every instruction's expanded arguments.

No image is fetched: a base image's ENV is unknown, so words that use it expand as if it were empty (the
default PATH aside). The text is for people; ``plan_to_json`` gives the same content as plain JSON values.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from kiln.dockerfile.flags import Mount
from kiln.dockerfile.instructions import (
    Add,
    Arg,
    Cmd,
    Command,
    Copy,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Instruction,
    Label,
    Run,
    Shell,
    ShellCommand,
    User,
    Volume,
    Workdir,
    plain_argument,
)
from kiln.dockerfile.plan import BuildPlan, StagePlan, expand_plan

_NEEDS_QUOTES = set(" \t\n\"'\\$")


def _q(value: str) -> str:
    """A value as it could be written back in a Dockerfile: quoted when it is empty or has special characters."""
    if value == "" or any(ch in _NEEDS_QUOTES for ch in value):
        return json.dumps(value, ensure_ascii=False)
    return value


def _pairs(pairs: Sequence[tuple[str, str | None]]) -> str:
    return " ".join(k if v is None else f"{k}={_q(v)}" for k, v in pairs)


def _command(cmd: Command) -> str:
    if isinstance(cmd, ShellCommand):
        return cmd.text
    return json.dumps(list(cmd.argv), ensure_ascii=False)


def _mount(m: Mount) -> str:
    fields = [f"type={m.type}"]
    for key, value in (("from", m.from_), ("source", m.source), ("target", m.target), ("id", m.id),
                       ("sharing", m.sharing), ("env", m.env)):
        if value is not None:
            fields.append(f"{key}={value}")
    for key, number in (("uid", m.uid), ("gid", m.gid), ("size", m.size)):
        if number is not None:
            fields.append(f"{key}={number}")
    if m.mode is not None:
        fields.append(f"mode={m.mode:o}")
    if m.required:
        fields.append("required")
    fields.append("ro" if m.readonly else "rw")
    return ",".join(fields)


def _copy_flags(instr: Copy | Add) -> list[str]:
    flags: list[str] = []
    if isinstance(instr, Copy) and instr.from_:
        flags.append(f"--from={instr.from_}")
    if instr.chown:
        flags.append(f"--chown={instr.chown}")
    if instr.chmod:
        flags.append(f"--chmod={instr.chmod}")
    if instr.link:
        flags.append("--link")
    if isinstance(instr, Copy) and instr.parents:
        flags.append("--parents")
    flags.extend(f"--exclude={_q(x)}" for x in instr.excludes)
    if isinstance(instr, Add):
        if instr.checksum:
            flags.append(f"--checksum={instr.checksum}")
        if instr.keep_git_dir:
            flags.append("--keep-git-dir")
        if instr.unpack is not None:
            flags.append(f"--unpack={'true' if instr.unpack else 'false'}")
    return flags


def _seconds(value: float) -> str:
    return f"{value:g}s"


def instruction_text(instr: Instruction) -> str:
    """One instruction, with the values it holds (expanded ones once expanded), in Dockerfile syntax."""
    kw = instr.keyword
    if isinstance(instr, Arg):
        return f"{kw} {_pairs(instr.pairs)}"
    if isinstance(instr, (Env, Label)):
        return f"{kw} {_pairs(instr.pairs)}"
    if isinstance(instr, Run):
        parts = [kw]
        parts.extend(f"--mount={_mount(m)}" for m in instr.mounts)
        if not instr.mounts:
            parts.extend(f"--mount={spec}" for spec in instr.mount_specs)
        if instr.network:
            parts.append(f"--network={instr.network}")
        if instr.security:
            parts.append(f"--security={instr.security}")
        parts.append(_command(instr.command))
        return " ".join(parts)
    if isinstance(instr, (Cmd, Entrypoint)):
        return f"{kw} {_command(instr.command)}"
    if isinstance(instr, (Copy, Add)):
        sources = [_q(s) for s in instr.sources] + [f"<<{h.name}" for h in instr.heredocs]
        return " ".join([kw, *_copy_flags(instr), *sources, _q(instr.dest)])
    if isinstance(instr, Workdir):
        return f"{kw} {_q(instr.path)}"
    if (arg := plain_argument(instr)) is not None:
        return f"{kw} {_q(arg) if isinstance(instr, User) else arg}"
    if isinstance(instr, Volume):
        return f"{kw} {json.dumps(list(instr.paths), ensure_ascii=False)}"
    if isinstance(instr, Expose):
        return f"{kw} {' '.join(instr.ports)}"
    if isinstance(instr, Shell):
        return f"{kw} {json.dumps(list(instr.argv), ensure_ascii=False)}"
    if isinstance(instr, Healthcheck):
        if instr.test is None:
            return f"{kw} NONE"
        opts = [f"--{name.replace('_', '-')}={_seconds(v)}" for name, v in (
            ("interval", instr.interval), ("timeout", instr.timeout), ("start_period", instr.start_period),
            ("start_interval", instr.start_interval)) if v is not None]
        if instr.retries is not None:
            opts.append(f"--retries={instr.retries}")
        test = instr.test[1] if instr.test[0] == "CMD-SHELL" else json.dumps(list(instr.test[1:]))
        return " ".join([kw, *opts, "CMD", test])
    return instr.original


def _base_text(plan: BuildPlan, st: StagePlan) -> str:
    if st.base_stage is not None:
        base = plan.stage(st.base_stage)
        return f'stage {base.index} "{base.label}"' if base.name else f"stage {base.index}"
    return st.base_image or ""


def _header(plan: BuildPlan, st: StagePlan) -> str:
    name = f' "{st.name}"' if st.name else ""
    extras = [str(st.platform)]
    if st.deps:
        extras.append("needs " + ", ".join(str(d) for d in st.deps))
    if st.images:
        extras.append("uses " + ", ".join(st.images))
    if st.index == plan.target:
        extras.append("target")
    return f"[stage {st.index}{name} FROM {_base_text(plan, st)}] " + "; ".join(extras)


def render_text(plan: BuildPlan, expanded: Mapping[int, Sequence[Instruction]] | None = None) -> str:
    """The plan as lines of text; ``expanded`` defaults to expanding with unknown base images."""
    if expanded is None:
        expanded = expand_plan(plan)
    lines = [
        f"{plan.path}: target stage {plan.target} \"{plan.stage(plan.target).label}\" for {plan.target_platform}"
        f" (building on {plan.build_platform})",
        "waves: " + " ".join("[" + " ".join(str(i) for i in w) + "]" for w in plan.waves),
    ]
    for st in plan.stages:
        lines.append(_header(plan, st))
        for n, instr in enumerate(expanded[st.index]):
            marker = "(ONBUILD) " if n < st.onbuild_count else ""
            lines.append(f"  {plan.path}:{instr.line}  {marker}{instruction_text(instr)}")
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Instruction):
        out = {"keyword": value.keyword}
        out.update({f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)
                    if f.name not in ("line", "end_line", "original")})
        return out
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def plan_to_json(plan: BuildPlan, expanded: Mapping[int, Sequence[Instruction]] | None = None) -> dict[str, Any]:
    """The plan as JSON values (for ``--format json``)."""
    if expanded is None:
        expanded = expand_plan(plan)
    stages = []
    for st in plan.stages:
        base: dict[str, Any] = {"stage": st.base_stage} if st.base_stage is not None else {"image": st.base_image}
        stages.append({
            "index": st.index,
            "name": st.name,
            "base": base,
            "platform": str(st.platform),
            "deps": list(st.deps),
            "images": list(st.images),
            "instructions": [
                {
                    "line": instr.line,
                    "end_line": instr.end_line,
                    "keyword": instr.keyword,
                    "text": instruction_text(instr),
                    "onbuild": n < st.onbuild_count,
                    "args": _jsonable(instr),
                }
                for n, instr in enumerate(expanded[st.index])
            ],
        })
    return {
        "dockerfile": plan.path,
        "target": {"index": plan.target, "name": plan.stage(plan.target).name},
        "target_platform": str(plan.target_platform),
        "build_platform": str(plan.build_platform),
        "global_args": dict(plan.global_args.values),
        "waves": [list(w) for w in plan.waves],
        "stages": stages,
    }
