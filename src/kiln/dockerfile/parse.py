"""Dockerfile text to typed instructions: the lexer's nodes checked and typed as BuildKit's instruction
parser does (argument counts, flags per instruction, HEALTHCHECK, ONBUILD rules), with its warnings."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

from kiln.dockerfile.flags import FlagKind, FlagValue, parse_flags, parse_health_interval
from kiln.dockerfile.instructions import (
    Add,
    Arg,
    Cmd,
    Command,
    Copy,
    Entrypoint,
    Env,
    ExecCommand,
    Expose,
    From,
    Healthcheck,
    Instruction,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    ShellCommand,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from kiln.dockerfile.lexer import (
    Directives,
    DockerfileWarning,
    Node,
    first_word,
    lex,
    parse_heredoc_word,
    split_line,
    syntax_supported,
)
from kiln.errors import DockerfileError

__all__ = ["Dockerfile", "parse_dockerfile", "parse_instruction_text"]


@dataclass(frozen=True)
class Dockerfile:
    path: str
    directives: Directives
    instructions: tuple[Instruction, ...]  # flat, in file order; global ARGs are those before the first From
    warnings: tuple[DockerfileWarning, ...]


def parse_dockerfile(text: str | bytes, path: str = "Dockerfile") -> Dockerfile:
    """Parse a whole Dockerfile. Raises DockerfileError (path and line) on anything BuildKit refuses.

    ``text`` may be the file's bytes, or text decoded with errors="surrogateescape": bytes that are not UTF-8
    are accepted as BuildKit accepts them (lexer.go_text says how they come out)."""
    directives, nodes, warnings = lex(text, path)
    if directives.syntax is not None and not syntax_supported(directives.syntax):
        warnings.append(
            DockerfileWarning(1, f"unsupported syntax {directives.syntax!r}: parsing as docker/dockerfile:1")
        )
    instructions = tuple(_instruction(node, directives.escape, path, warnings) for node in nodes)
    warnings = _apply_checks(directives, path, _drop_json_args_under_custom_shell(instructions, warnings))
    return Dockerfile(path, directives, instructions, tuple(warnings))


def _drop_json_args_under_custom_shell(
    instructions: tuple[Instruction, ...], warnings: list[DockerfileWarning]
) -> list[DockerfileWarning]:
    """BuildKit does not recommend JSON arguments once the image has its own SHELL. Known statically: a
    SHELL earlier in the stage or in the stage it is built FROM (a base image's shell is not known here)."""
    custom: set[int] = set()  # lines of CMD/ENTRYPOINT under a custom shell
    stage_has_shell: dict[str, bool] = {}
    shell = False
    current: str | None = None
    for inst in instructions:
        if isinstance(inst, From):
            shell = stage_has_shell.get(inst.image.lower(), False)
            if inst.name:
                stage_has_shell[inst.name] = shell
            current = inst.name
        elif isinstance(inst, Shell):
            shell = True
            if current:
                stage_has_shell[current] = True
        elif isinstance(inst, Cmd | Entrypoint) and shell:
            custom.add(inst.line)
    return [w for w in warnings if not (w.rule == "JSONArgsRecommended" and w.line in custom)]


def _apply_checks(directives: Directives, path: str, warnings: list[DockerfileWarning]) -> list[DockerfileWarning]:
    """`# check=skip=...` drops rule warnings; `# check=error=true` makes the remaining ones fatal."""
    skip = set(directives.check_skip)
    if "all" in skip:
        kept = [w for w in warnings if not w.rule]
    else:
        kept = [w for w in warnings if w.rule not in skip]
    if directives.check_error:
        failed = [w for w in kept if w.rule]
        if failed:
            first = failed[0]
            raise DockerfileError(f"lint violation ({first.rule}): {first.message}", path, first.line)
    return kept


def parse_instruction_text(text: str, path: str, line: int) -> Instruction:
    """One instruction from its text, e.g. an ONBUILD trigger kept in a base image's config.

    The text may carry heredoc bodies (as ONBUILD stores them). Errors point at `path`:`line`.
    """
    try:
        _, nodes, _ = lex(text, path)
    except DockerfileError as e:
        raise DockerfileError(e.msg, path, line) from None
    if len(nodes) != 1:
        raise DockerfileError(f"expected one instruction, got {len(nodes)}: {text!r}", path, line)
    node = nodes[0]
    span = node.end_line - node.start_line
    placed = Node(
        node.keyword, node.args, node.flags, node.json, node.original, line, line + span, node.heredocs, node.sub
    )
    try:
        return _instruction(placed, "\\", path, [])
    except DockerfileError as e:
        raise DockerfileError(e.msg, path, line) from None


# ------------------------------------------------------------------------------------------------ helpers

_S, _B, _SS = FlagKind.STRING, FlagKind.BOOL, FlagKind.STRINGS
_FLAGS: dict[str, dict[str, FlagKind]] = {
    "from": {"platform": _S},
    "run": {"mount": _SS, "network": _S, "security": _S},
    "copy": {"from": _S, "chown": _S, "chmod": _S, "link": _B, "parents": _B, "exclude": _SS},
    "add": {"chown": _S, "chmod": _S, "link": _B, "checksum": _S, "keep-git-dir": _B, "unpack": _B, "exclude": _SS},
    "healthcheck": {"interval": _S, "timeout": _S, "start-period": _S, "start-interval": _S, "retries": _S},
}
_NETWORKS = ("default", "none", "host")
_SECURITY = ("insecure", "sandbox")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*$")
_ONBUILD_PREFIX = re.compile(r"^[\t\n\f\r ]*ONBUILD[\t\n\f\r ]*", re.I)


class _Base(TypedDict):
    line: int
    end_line: int
    original: str


class _Req:
    """What every instruction parser needs: the node, its flags, a place to put warnings."""

    def __init__(self, node: Node, escape: str, warnings: list[DockerfileWarning]) -> None:
        self.node = node
        self.escape = escape
        self.warnings = warnings
        self.args = node.args
        self.base = _Base(line=node.start_line, end_line=node.end_line, original=node.original)

    def flags(self, name: str | None = None) -> dict[str, FlagValue]:
        return parse_flags(self.node.flags, _FLAGS.get(name or self.node.keyword, {}))

    def warn(self, rule: str, message: str) -> None:
        self.warnings.append(DockerfileWarning(self.node.start_line, message, rule))

    def command(self) -> Command:
        if self.node.json:
            return ExecCommand(self.args)
        return ShellCommand(" ".join(self.args))


def _str(flags: dict[str, FlagValue], name: str) -> str | None:
    value = flags.get(name)
    return value if isinstance(value, str) and value != "" else None


def _bool(flags: dict[str, FlagValue], name: str) -> bool | None:
    value = flags.get(name)
    return value if isinstance(value, bool) else None


def _strs(flags: dict[str, FlagValue], name: str) -> tuple[str, ...]:
    value = flags.get(name, ())
    return value if isinstance(value, tuple) else ()


def _at_least_one(req: _Req) -> None:
    if not req.args:
        raise DockerfileError(f"{req.node.keyword.upper()} requires at least one argument")


def _exactly_one(req: _Req) -> None:
    if len(req.args) != 1:
        raise DockerfileError(f"{req.node.keyword.upper()} requires exactly one argument")


def _legacy_key_value(req: _Req) -> bool:
    first = first_word(split_line(req.node.original)[2], req.escape)
    return first is not None and "=" not in first


def _pairs(req: _Req) -> tuple[tuple[str, str], ...]:
    name = req.node.keyword.upper()
    _at_least_one(req)
    args = req.args
    if len(args) % 2:
        raise DockerfileError(f"Bad input to {name}, too many arguments")
    if "" in args[::2]:
        raise DockerfileError(f"{name} names can not be blank")
    pairs = tuple(zip(args[::2], args[1::2], strict=True))
    if _legacy_key_value(req):
        req.warn(
            "LegacyKeyValueFormat", f'"{name} key=value" should be used instead of legacy "{name} key value" format'
        )
    return pairs


# ------------------------------------------------------------------------------------------------ per kind


def _from(req: _Req) -> Instruction:
    args = req.args
    name: str | None = None
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.match(name):
            raise DockerfileError(
                f'invalid name for build stage: "{args[2]}", name can\'t start with a number or contain symbols'
            )
        if args[2] != name:
            req.warn("StageNameCasing", f"Stage name '{args[2]}' should be lowercase")
        keyword = split_line(req.node.original)[0]
        if (keyword.isupper() and not args[1].isupper()) or (keyword.islower() and not args[1].islower()):
            req.warn("FromAsCasing", f"'{args[1]}' and '{keyword}' keywords' casing do not match")
    elif len(args) != 1:
        raise DockerfileError("FROM requires either one or three arguments")
    flags = req.flags()
    return From(**req.base, image=args[0], name=name, platform=_str(flags, "platform"))


def _arg(req: _Req) -> Instruction:
    _at_least_one(req)
    req.flags()
    pairs: list[tuple[str, str | None]] = []
    for word in req.args:
        key, eq, value = word.partition("=")
        if eq and not key:
            raise DockerfileError("ARG names can not be blank")
        pairs.append((key, value if eq else None))
    return Arg(**req.base, pairs=tuple(pairs))


def _env(req: _Req) -> Instruction:
    req.flags()
    return Env(**req.base, pairs=_pairs(req))


def _label(req: _Req) -> Instruction:
    req.flags()
    return Label(**req.base, pairs=_pairs(req))


def _maintainer(req: _Req) -> Instruction:
    _exactly_one(req)
    req.flags()
    req.warn("MaintainerDeprecated", "MAINTAINER instruction is deprecated in favor of using label")
    return Maintainer(**req.base, name=req.args[0])


def _run(req: _Req) -> Instruction:
    flags = req.flags()
    network = _str(flags, "network")
    if network is not None and network not in _NETWORKS:
        raise DockerfileError(f"unsupported network mode {network!r}, allowed: {', '.join(_NETWORKS)}")
    security = _str(flags, "security")
    if security is not None and security not in _SECURITY:
        raise DockerfileError(f"unsupported security mode {security!r}, allowed: {', '.join(_SECURITY)}")
    return Run(
        **req.base,
        command=req.command(),
        heredocs=req.node.heredocs,
        mount_specs=_strs(flags, "mount"),
        network=network,
        security=security,
    )


def _json_args_recommended(req: _Req) -> None:
    if not req.node.json and req.args:
        name = req.node.keyword.upper()
        req.warn(
            "JSONArgsRecommended",
            f"JSON arguments recommended for {name} to prevent unintended behavior related to OS signals",
        )


def _cmd(req: _Req) -> Instruction:
    req.flags()
    _json_args_recommended(req)
    return Cmd(**req.base, command=req.command())


def _entrypoint(req: _Req) -> Instruction:
    req.flags()
    _json_args_recommended(req)
    return Entrypoint(**req.base, command=req.command())


def _sources(req: _Req) -> tuple[tuple[str, ...], str]:
    name = req.node.keyword.upper()
    if len(req.args) < 2:
        raise DockerfileError(
            f"{name} requires at least two arguments, but only one was provided. Destination could not be determined"
        )
    *srcs, dest = req.args
    if parse_heredoc_word(dest) is not None and not req.node.json:
        raise DockerfileError(f"{name} cannot accept a heredoc as a destination")
    if req.node.json:
        return tuple(srcs), dest
    # Heredoc sources become files named after their terminators (Copy/Add.heredocs).
    known = {h.name for h in req.node.heredocs}
    paths = []
    for src in srcs:
        doc = parse_heredoc_word(src)
        if doc is None:
            paths.append(src)
        elif doc.name not in known:
            raise DockerfileError(f"{name}: heredoc {src} has no body")
    return tuple(paths), dest


def _copy(req: _Req) -> Instruction:
    sources, dest = _sources(req)
    flags = req.flags()
    return Copy(
        **req.base,
        sources=sources,
        dest=dest,
        from_=_str(flags, "from"),
        chown=_str(flags, "chown"),
        chmod=_str(flags, "chmod"),
        link=bool(_bool(flags, "link")),
        parents=bool(_bool(flags, "parents")),
        excludes=_strs(flags, "exclude"),
        heredocs=req.node.heredocs,
    )


def _add(req: _Req) -> Instruction:
    sources, dest = _sources(req)
    flags = req.flags()
    return Add(
        **req.base,
        sources=sources,
        dest=dest,
        chown=_str(flags, "chown"),
        chmod=_str(flags, "chmod"),
        link=bool(_bool(flags, "link")),
        excludes=_strs(flags, "exclude"),
        heredocs=req.node.heredocs,
        checksum=_str(flags, "checksum"),
        keep_git_dir=bool(_bool(flags, "keep-git-dir")),
        unpack=_bool(flags, "unpack"),
    )


def _workdir(req: _Req) -> Instruction:
    _exactly_one(req)
    req.flags()
    return Workdir(**req.base, path=req.args[0])


def _user(req: _Req) -> Instruction:
    _exactly_one(req)
    req.flags()
    return User(**req.base, user=req.args[0])


def _volume(req: _Req) -> Instruction:
    _at_least_one(req)
    req.flags()
    paths = tuple(p.strip() for p in req.args)
    if any(not p for p in paths):
        raise DockerfileError("VOLUME specified can not be an empty string")
    return Volume(**req.base, paths=paths)


def _expose(req: _Req) -> Instruction:
    _at_least_one(req)
    req.flags()
    return Expose(**req.base, ports=req.args)


def _stopsignal(req: _Req) -> Instruction:
    _exactly_one(req)
    req.flags()
    return StopSignal(**req.base, signal=req.args[0])


def _shell(req: _Req) -> Instruction:
    req.flags()
    if not req.args:
        raise DockerfileError("SHELL requires at least one argument")
    if not req.node.json:
        raise DockerfileError("SHELL requires the arguments to be in JSON form")
    return Shell(**req.base, argv=req.args)


def _healthcheck(req: _Req) -> Instruction:
    _at_least_one(req)
    kind = req.args[0].upper()
    rest = req.args[1:]
    if kind == "NONE":
        if rest:
            raise DockerfileError("HEALTHCHECK NONE takes no arguments")
        return Healthcheck(
            **req.base, test=None, interval=None, timeout=None, start_period=None, start_interval=None, retries=None
        )
    flags = req.flags()
    if kind != "CMD":
        raise DockerfileError(f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    if req.node.json:
        test: tuple[str, ...] = ("CMD", *rest)
    else:
        test = ("CMD-SHELL", " ".join(rest)) if rest else ()
    if len(test) < 2:
        raise DockerfileError("Missing command after HEALTHCHECK CMD")
    retries: int | None = None
    retries_text = _str(flags, "retries")
    if retries_text is not None:
        try:
            retries = int(retries_text, 10)
        except ValueError:
            raise DockerfileError(f'strconv.ParseInt: parsing "{retries_text}": invalid syntax') from None
        if retries < 0:
            raise DockerfileError(f"--retries cannot be negative ({retries})")
    return Healthcheck(
        **req.base,
        test=test,
        interval=parse_health_interval("interval", _str(flags, "interval")),
        timeout=parse_health_interval("timeout", _str(flags, "timeout")),
        start_period=parse_health_interval("start-period", _str(flags, "start-period")),
        start_interval=parse_health_interval("start-interval", _str(flags, "start-interval")),
        retries=retries,
    )


def _onbuild(req: _Req) -> Instruction:
    sub = req.node.sub
    if sub is None:
        raise DockerfileError("ONBUILD requires at least one argument")
    req.flags()
    trigger = sub.keyword.upper()
    if trigger == "ONBUILD":
        raise DockerfileError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise DockerfileError(f"{trigger} isn't allowed as an ONBUILD trigger")
    line = req.node.original
    text = _ONBUILD_PREFIX.sub("", line, count=1)
    for doc in sub.heredocs:
        text += "\n" + doc.raw_content + doc.name
    return Onbuild(**req.base, trigger=_instruction_of(sub, req.escape, req.warnings), text=text)


_PARSERS: dict[str, Callable[[_Req], Instruction]] = {
    "from": _from,
    "arg": _arg,
    "env": _env,
    "label": _label,
    "maintainer": _maintainer,
    "run": _run,
    "cmd": _cmd,
    "entrypoint": _entrypoint,
    "copy": _copy,
    "add": _add,
    "workdir": _workdir,
    "user": _user,
    "volume": _volume,
    "expose": _expose,
    "stopsignal": _stopsignal,
    "shell": _shell,
    "healthcheck": _healthcheck,
    "onbuild": _onbuild,
}


def _instruction_of(node: Node, escape: str, warnings: list[DockerfileWarning]) -> Instruction:
    parser = _PARSERS.get(node.keyword)
    if parser is None:
        raise DockerfileError(f"unknown instruction: {split_line(node.original)[0]}")
    return parser(_Req(node, escape, warnings))


def _instruction(node: Node, escape: str, path: str, warnings: list[DockerfileWarning]) -> Instruction:
    try:
        return _instruction_of(node, escape, warnings)
    except DockerfileError as e:
        raise DockerfileError(e.msg, path, node.start_line) from None
