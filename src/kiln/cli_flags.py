"""Turning flag values into settings, for `kiln build` and `kiln warm` alike: kaniko's Go-style booleans, KEY=VALUE
pairs, build arguments, the registry flags, and the kaniko flags registered from kaniko_flags.py's table (their
notices and refusals)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from kiln.errors import NotSupportedYet, UsageError
from kiln.gotext import go_bool
from kiln.kaniko_flags import Command, aliases_of, bool_defaults, flags_for
from kiln.transports.registry.settings import RegistrySettings

# Boolean flags of each command, with their default, so that kaniko's "--flag=true|false" spelling can be
# rewritten for click: every boolean of kaniko's executor or warmer (from the table) and kiln's own.
_BOOL_FLAGS: dict[Command, dict[str, bool]] = {
    "build": {**bool_defaults("build"), "--in-place": False, "--dry-run": False},
    "warm": bool_defaults("warm"),
}
# Booleans registered with a --no- form: "=false" becomes that, so a given false is seen (a notice still says
# what kiln does). The others are off unless given: "=false" just leaves them out.
_NEGATABLE: dict[Command, set[str]] = {
    command: {f.name for f in flags_for(command) if f.takes == "bool" and f.handling in ("notice", "refused")}
    for command in ("build", "warm")
}
_NEGATABLE["build"] |= {"--ignore-var-run", "--whitelist-var-run", "--cache-run-layers"}


def rewrite_go_bools(args: Sequence[str]) -> list[str]:
    """kaniko's ``--flag=true|false`` into click's spellings, for the command that ``args`` starts with."""
    command: Command = "warm" if args and args[0] == "warm" else "build"
    bools, negatable = _BOOL_FLAGS[command], _NEGATABLE[command]
    out: list[str] = []
    for arg in args:
        name, eq, value = arg.partition("=")
        if eq and name in bools:
            if go_bool(value, name):
                out.append(name)
            elif name in negatable or bools[name]:
                out.append("--no-" + name[2:])
            # off for a default-off flag: simply leave it out
            continue
        out.append(arg)
    return out


def pairs(values: Sequence[str], flag: str, sep: str = "=") -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        key, found, val = v.partition(sep)
        if not found or not key:
            raise UsageError(f"expected KEY{sep}VALUE, got {v!r}", flag)
        out[key] = val
    return out


def build_args(values: Sequence[str]) -> dict[str, str]:
    """--build-arg K=V, or a bare K taking its value from kiln's own environment (skipped when unset)."""
    out: dict[str, str] = {}
    for v in values:
        key, found, val = v.partition("=")
        if not key:
            raise UsageError(f"bad build argument {v!r}", "--build-arg")
        if found:
            out[key] = val
        elif key in os.environ:
            out[key] = os.environ[key]
    return out


def _client_certs(values: Sequence[str]) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for reg, pair in pairs(values, "--registry-client-cert").items():
        cert, comma, key = pair.partition(",")
        if not comma or not cert or not key:
            raise UsageError(f"expected REGISTRY=CERT,KEY, got {reg}={pair}", "--registry-client-cert")
        out[reg] = (cert, key)
    return out


def _registry_maps(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """kaniko's --registry-map: ``;``-separated ORIGINAL=MIRROR pairs, each adding a mirror for its registry
    (``a=m1;b=m2``). A part without ``=`` is one more mirror for the registry before it (kiln's earlier
    ``a=m1;m2``), which kaniko refuses, so every value kaniko takes means the same here."""
    out: list[tuple[str, str]] = []
    for v in values:
        if not v:
            continue  # kaniko: an empty value sets nothing
        orig = ""
        for part in v.split(";"):
            key, found, mirror = part.partition("=")
            if found:
                orig = key
            else:
                key, mirror = orig, part
            if not key or (found and not mirror):
                raise UsageError(f"expected ORIGINAL=MIRROR[;ORIGINAL=MIRROR...], got {v!r}", "--registry-map")
            if mirror:
                out.append((key, mirror))
    return tuple(out)


F = TypeVar("F", bound=Callable[..., Any])


def multi(*names: str, help: str) -> Callable[[F], F]:
    return click.option(*names, multiple=True, default=(), help=help)


def shared_registry_flags(f: F) -> F:
    """The registry flags kiln build and kiln warm both take: which registries are plain HTTP or unverified,
    their certificates, Docker Hub's mirrors and the registry maps."""
    for option in reversed((
        multi("--insecure-registry", help="A registry reached over plain HTTP (repeatable)."),
        multi("--skip-tls-verify-registry", help="A registry whose certificate is not verified (repeatable)."),
        multi("--registry-certificate", help="REGISTRY=CA_FILE (repeatable)."),
        multi("--registry-client-cert", help="REGISTRY=CERT,KEY for mutual TLS (repeatable)."),
        multi("--registry-mirror", help="A mirror for Docker Hub (repeatable, tried in order)."),
        multi("--registry-map", help="ORIGINAL=MIRROR[;ORIGINAL=MIRROR...] (repeatable)."),
        click.option("--skip-default-registry-fallback", is_flag=True),
    )):
        f = option(f)
    return f


def flag_names(name: str, *more: str, command: Command = "build") -> tuple[str, ...]:
    """A flag's spellings: its own, kiln's others, and the deprecated ones kaniko still registers."""
    return (name, *more, *aliases_of(name, command))


def kaniko_table_options(command: Command) -> Callable[[F], F]:
    """click options for the kaniko flags kiln does not implement (notices and refusals), from the table. A
    value left out is None (or () for a repeatable one), so that a given flag, even false or empty, is seen."""

    def apply(f: F) -> F:
        for flag in reversed(flags_for(command)):
            if flag.handling not in ("notice", "refused") or flag.alias_of:
                continue
            names = (flag.name, *((flag.short,) if flag.short else ()))
            shown = ("kaniko's; kiln: " if flag.handling == "notice" else "not supported yet: ") + flag.kiln
            if flag.takes == "bool":
                f = click.option(f"{flag.name}/--no-{flag.name[2:]}", flag.dest, default=None, help=shown)(f)
            elif flag.takes == "value":
                f = click.option(*names, flag.dest, default=None, help=shown)(f)
            else:
                f = click.option(*names, flag.dest, multiple=True, default=(), help=shown)(f)
        return f

    return apply


def _given(value: object) -> bool:
    return value is not None and value != ()


def _asks(value: object) -> bool:
    """Whether a given value asks for something: a false boolean or empty values ask for nothing."""
    if isinstance(value, tuple):
        return any(v for v in value)
    return bool(value)


def kaniko_notices(kw: dict[str, Any], command: Command = "build") -> list[str]:
    """The one-line notices for the given kaniko flags that mean nothing to kiln (what kiln does instead)."""
    return [f"{f.name}: {f.kiln}" for f in flags_for(command)
            if f.handling == "notice" and not f.alias_of and _given(kw.get(f.dest))]


def refuse_unsupported(kw: dict[str, Any], command: Command = "build") -> None:
    """NotSupportedYet for the first given kaniko flag that asks for what kiln lacks."""
    for f in flags_for(command):
        if f.handling == "refused" and not f.alias_of and _asks(kw.get(f.dest)):
            raise NotSupportedYet(f.name, f.kiln)



def _env(name: str) -> tuple[str, ...]:
    """A kaniko environment variable that adds one value to a repeatable flag (none when unset or empty)."""
    value = os.environ.get(name, "")
    return (value,) if value else ()


def registry_settings(kw: dict[str, Any], **extra: Any) -> RegistrySettings:
    """The registry flags of a command (those it lacks are left at their defaults)."""
    return RegistrySettings(
        insecure=bool(kw.get("insecure")),
        insecure_pull=bool(kw.get("insecure_pull")),
        insecure_registries=tuple(kw.get("insecure_registry", ())),
        skip_tls_verify=bool(kw.get("skip_tls_verify")),
        skip_tls_verify_pull=bool(kw.get("skip_tls_verify_pull")),
        skip_tls_verify_registries=tuple(kw.get("skip_tls_verify_registry", ())),
        registry_certificates=pairs(kw.get("registry_certificate", ()), "--registry-certificate"),
        registry_client_certs=_client_certs(kw.get("registry_client_cert", ())),
        registry_mirrors=(*kw.get("registry_mirror", ()), *_env("KANIKO_REGISTRY_MIRROR")),
        registry_maps=_registry_maps((*kw.get("registry_map", ()), *_env("KANIKO_REGISTRY_MAP"))),
        skip_default_registry_fallback=bool(kw.get("skip_default_registry_fallback")),
        push_retry=kw.get("push_retry") or 0,
        image_download_retry=kw.get("image_download_retry") or 0,
        **extra,
    )
