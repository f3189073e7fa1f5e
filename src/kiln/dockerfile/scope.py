"""Which variables an instruction sees: ARG and ENV scoping, exactly as BuildKit's dispatcher does it.

BuildKit keeps one environment per stage (the "state env"): the base image's ENV, then every ENV and every
ARG that has a value, in the order they appear, a later one replacing an earlier one of the same name. That one
list is what words are expanded against and what a RUN sees. The image config only keeps the ENV part. So an
ENV after an ARG of the same name wins (the Dockerfile reference's "ENV overrides ARG"), and an ARG with a value
after an ENV wins for the rest of the build of that stage without changing the image's ENV.

Global ARGs (before the first FROM) are only seen by FROM lines and by a stage that re-declares them with a
bare ``ARG NAME``. The platform ARGs (TARGETPLATFORM, BUILDARCH, ...) are global ARGs that are always there.
Proxy build arguments reach RUN without a declaration, are not expanded in words and are not written to history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from kiln.dockerfile.expand import Expander
from kiln.dockerfile.instructions import Arg, Env, Instruction
from kiln.errors import DockerfileError
from kiln.oci.platform import Platform

PLATFORM_ARG_NAMES: tuple[str, ...] = (
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
)
# BuildKit matches these build arguments case-insensitively and gives RUN both spellings.
PROXY_ARG_NAMES: tuple[str, ...] = (
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
)
_PROXY_KINDS = ("http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "all_proxy")
# What BuildKit puts in an image's config when the base image has no PATH (Linux; Windows leaves it alone).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def platform_args(target: Platform, build: Platform) -> dict[str, str]:
    """The automatic platform ARGs of a build for ``target`` running on ``build``."""
    return {
        "TARGETPLATFORM": str(target),
        "TARGETOS": target.os,
        "TARGETARCH": target.architecture,
        "TARGETVARIANT": target.variant or "",
        "BUILDPLATFORM": str(build),
        "BUILDOS": build.os,
        "BUILDARCH": build.architecture,
        "BUILDVARIANT": build.variant or "",
    }


def proxy_env(build_args: Mapping[str, str]) -> dict[str, str]:
    """The proxy variables a RUN gets from build arguments, in both spellings (empty values are dropped)."""
    found: dict[str, str] = {}
    for key in sorted(build_args):  # sorted: with HTTP_PROXY and http_proxy both given, the result is stable
        if key.lower() in _PROXY_KINDS:
            found[key.lower()] = build_args[key]
    env: dict[str, str] = {}
    for kind in _PROXY_KINDS:
        value = found.get(kind, "")
        if value:
            env[kind.upper()] = value
            env[kind] = value
    return env


def _located(err: DockerfileError, path: str, line: int) -> DockerfileError:
    return err.located(path, line)


@dataclass(frozen=True)
class GlobalArgs:
    """The global scope: what FROM lines see, and where a bare ``ARG NAME`` in a stage takes its value."""

    values: Mapping[str, str]
    # The global ARG instructions with each value resolved (None: declared without a value).
    resolved: tuple[Arg, ...]
    used_build_args: frozenset[str]

    def expander(self, escape: str = "\\") -> Expander:
        return Expander(self.values, escape)


def resolve_global_args(
    args: Sequence[Arg],
    build_args: Mapping[str, str],
    platform: Mapping[str, str],
    escape: str = "\\",
    path: str = "Dockerfile",
) -> GlobalArgs:
    """Evaluate the ARGs before the first FROM, in order, as BuildKit's buildMetaArgs does.

    A build argument replaces the default of an ARG it names (and, like BuildKit, a platform ARG); a default is
    expanded against the global values so far, so ``ARG A=1 B=$A`` gives B=1.
    """
    values: dict[str, str] = {}
    used: set[str] = set()
    for key, default_value in platform.items():
        if key in build_args:
            used.add(key)
        values[key] = build_args.get(key, default_value)
    resolved: list[Arg] = []
    for instr in args:
        pairs: list[tuple[str, str | None]] = []
        for key, default in instr.pairs:
            value: str | None
            if key in build_args:
                value = build_args[key]
                used.add(key)
            elif default is not None:
                try:
                    value = Expander(values, escape).word(default)
                except DockerfileError as e:
                    raise _located(e, path, instr.line) from None
            else:
                value = None
            if value is not None:
                values[key] = value
            pairs.append((key, value))
        resolved.append(replace(instr, pairs=tuple(pairs)))
    return GlobalArgs(values, tuple(resolved), frozenset(used))


class StageScope:
    """The variables of one stage, stepped through instruction by instruction.

    Start it from the base image's ENV (``base_env``; empty when unknown, as in a dry run) or from the scope of
    the stage this one is built FROM (``parent``), which it copies: ARGs and ENV of the parent stay visible.
    """

    def __init__(
        self,
        global_args: Mapping[str, str],
        build_args: Mapping[str, str],
        platform_args: Mapping[str, str] | None = None,
        base_env: Mapping[str, str] | None = None,
        parent: StageScope | None = None,
        *,
        escape: str = "\\",
        path: str = "Dockerfile",
        default_path: str | None = DEFAULT_PATH,
    ) -> None:
        if parent is not None and base_env is not None:
            raise ValueError("a stage starts from a base image's ENV or from a parent stage, not both")
        # Bare `ARG NAME` looks here: the platform ARGs under the global ARGs (which normally include them).
        self._globals: dict[str, str] = {**(platform_args or {}), **global_args}
        self._build_args = dict(build_args)
        self.escape = escape
        self.path = path
        self._used: set[str] = set()
        # (name, value or None) of every ARG declared in the stage, its parents' first: the RUN history prefix.
        self._declared: list[tuple[str, str | None]] = []
        if parent is not None:
            self._state: dict[str, str] = dict(parent._state)
            self._config: dict[str, str] = dict(parent._config)
            self._declared = list(parent._declared)
            self._used = set(parent._used)
        else:
            self._config = dict(base_env or {})
            if default_path is not None and "PATH" not in self._config:
                self._config["PATH"] = default_path
            self._state = dict(self._config)

    # -- what the build engine reads -----------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """The ENV of the image config, in order."""
        return dict(self._config)

    @property
    def used_build_args(self) -> frozenset[str]:
        """Build arguments an ARG of this stage (or its parents) consumed; the rest may deserve a warning."""
        return frozenset(self._used)

    def expander(self) -> Expander:
        """An expander over the variables the next instruction sees."""
        return Expander(self._state, self.escape)

    def run_env(self) -> dict[str, str]:
        """The environment of a RUN: ENV and ARGs with values (the later of a same-named pair), then proxies."""
        env = dict(self._state)
        for key, value in proxy_env(self._build_args).items():
            env.setdefault(key, value)
        return env

    def run_history_args(self) -> list[str]:
        """``NAME=value`` of each ARG in scope, as BuildKit writes them before a RUN in history (``|N ...``)."""
        out: dict[str, str] = {}
        for name, value in self._declared:
            out[name] = self._state.get(name, value if value is not None else "")
        return [f"{k}={v}" for k, v in out.items()]

    # -- stepping --------------------------------------------------------------------------------------------
    def apply(self, instr: Instruction) -> Instruction:
        """The instruction with its words expanded in the current scope; ARG and ENV also update the scope."""
        try:
            if isinstance(instr, Arg):
                return self._apply_arg(instr)
            expanded = instr.expand(self.expander())
        except DockerfileError as e:
            raise _located(e, self.path, instr.line) from None
        if isinstance(expanded, Env):
            # Env.expand used the old scope for every pair (`ENV a=1 b=$a` sees the old a), as BuildKit does.
            for key, value in expanded.pairs:
                self._state[key] = value
                self._config[key] = value
        return expanded

    def _apply_arg(self, instr: Arg) -> Arg:
        # Unlike ENV, each ARG pair sees the pairs before it: BuildKit dispatches them one at a time.
        # The name is a word too: `ENV n=foo` then `ARG ${n}=x` declares foo (which --build-arg foo=... sets),
        # as BuildKit's ArgCommand.Expand, kaniko and buildah do; it is expanded in the scope at this pair.
        # (BuildKit's Dockerfile frontend 1.8 stopped expanding it, moby/buildkit#5156; kiln keeps 1.7's rule.)
        pairs: list[tuple[str, str | None]] = []
        for written, default in instr.pairs:
            key = self.expander().word(written)
            if not key:
                raise DockerfileError("ARG names can not be blank")
            value: str | None = default
            if key in self._build_args:
                value = self._build_args[key]
                self._used.add(key)
            elif default is not None:
                value = self.expander().word(default)
            elif key in self._globals:
                value = self._globals[key]
            if value is not None:
                self._state[key] = value
            self._declared.append((key, value))
            pairs.append((key, value))
        resolved = tuple(pairs)
        return instr if resolved == instr.pairs else replace(instr, pairs=resolved)

    def apply_all(self, instrs: Iterable[Instruction]) -> list[Instruction]:
        return [self.apply(i) for i in instrs]
