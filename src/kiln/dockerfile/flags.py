"""Instruction flags: the `--name=value` words of an instruction, and the typed values some of them carry.

Rules follow BuildKit's BFlags: a bool flag takes no value or true/false, a string flag needs `=value`, a
strings flag may repeat, any other repetition or an unknown name is an error. Errors are raised without a
line (DockerfileError.located() adds it where the instruction is known).
"""

from __future__ import annotations

import csv
import enum
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from kiln.errors import DockerfileError
from kiln.gotext import go_duration


class FlagKind(enum.Enum):
    BOOL = "bool"
    STRING = "string"
    STRINGS = "strings"


FlagValue = bool | str | tuple[str, ...]


def parse_flags(words: Sequence[str], spec: Mapping[str, FlagKind]) -> dict[str, FlagValue]:
    """The flag words of one instruction, checked against the flags it accepts.

    Only flags that were given appear in the result; STRINGS flags map to a tuple in the given order.
    """
    found: dict[str, FlagValue] = {}
    for word in words:
        if not word.startswith("--"):
            raise DockerfileError(f"arg should start with -- : {word}")
        if word == "--":
            break
        name, eq, value = word[2:].partition("=")
        kind = spec.get(name)
        if kind is None:
            raise DockerfileError(f"unknown flag: {name}")
        if name in found and kind is not FlagKind.STRINGS:
            raise DockerfileError(f"duplicate flag specified: {name}")
        if kind is FlagKind.BOOL:
            if eq and value == "":
                raise DockerfileError(f"missing a value on flag: {name}")
            lowered = value.lower()
            if lowered in ("", "true"):
                found[name] = True
            elif lowered == "false":
                found[name] = False
            else:
                raise DockerfileError(f"expecting boolean value for flag {name}, not: {value}")
        elif not eq:
            raise DockerfileError(f"missing a value on flag: {name}")
        elif kind is FlagKind.STRING:
            found[name] = value
        else:
            previous = found.get(name, ())
            assert isinstance(previous, tuple)
            found[name] = (*previous, value)
    return found


# ---------------------------------------------------------------------------------------------- durations

def parse_duration(text: str) -> float:
    """A Go time.ParseDuration string ("30s", "1m30s", "1.5h", "250ms", "0") in seconds."""
    try:
        return go_duration(text)
    except ValueError as e:
        raise DockerfileError(str(e)) from None


def parse_health_interval(name: str, text: str | None) -> float | None:
    """A HEALTHCHECK duration flag: None when unset or zero (Docker's default applies), at least 1ms."""
    if not text:
        return None
    seconds = parse_duration(text)
    if seconds == 0:
        return None
    if seconds < 1e-3:
        raise DockerfileError(f'Interval "{name}" cannot be less than 1ms')
    return seconds


# ---------------------------------------------------------------------------------------------- sizes

_MEM_BYTES = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")


def parse_mem_bytes(text: str) -> int:
    """A docker memory size ("64m", "1g", "512", "1.5GiB"), 1024-based like docker's RAMInBytes."""
    m = _MEM_BYTES.match(text)
    if m is None:
        raise DockerfileError(f"invalid size: '{text}'")
    try:
        number = float(m.group(1))
    except ValueError:
        raise DockerfileError(f"invalid size: '{text}'") from None
    power = " kmgtp".index((m.group(2) or " ").lower())
    return int(number * 1024**power)


# ---------------------------------------------------------------------------------------------- chmod

_SYMBOLIC_CLAUSE = re.compile(r"[ugoa]*(?:[-+=](?:[rwxXst]*|[ugo]))+")


@dataclass(frozen=True)
class Chmod:
    """A --chmod value: octal ("755") or symbolic ("u+x,go-w")."""

    octal: int | None
    symbolic: str | None

    def apply(self, mode: int, is_dir: bool) -> int:
        """The permission bits (0o7777) a file with `mode` gets."""
        if self.octal is not None:
            return self.octal
        assert self.symbolic is not None
        return _apply_symbolic(self.symbolic, mode & 0o7777, is_dir)


def parse_chmod(text: str) -> Chmod:
    if text and all(c in "01234567" for c in text):
        value = int(text, 8)
        if value > 0o7777:
            raise DockerfileError(f"invalid chmod parameter: '{text}'")
        return Chmod(octal=value, symbolic=None)
    if text and all(_SYMBOLIC_CLAUSE.fullmatch(clause) for clause in text.split(",")):
        return Chmod(octal=None, symbolic=text)
    raise DockerfileError(f"invalid chmod parameter: '{text}'. it should be octal string like 755 or a symbolic mode")


_WHO_BITS = {"u": 0o4700, "g": 0o2070, "o": 0o1007}


def _apply_symbolic(symbolic: str, mode: int, is_dir: bool) -> int:
    for clause in symbolic.split(","):
        who_end = 0
        while who_end < len(clause) and clause[who_end] in "ugoa":
            who_end += 1
        who = clause[:who_end] or "a"
        if "a" in who:
            who = "ugo"
        mask = 0
        for w in who:
            mask |= _WHO_BITS[w]
        for op, perms in re.findall(r"([-+=])([rwxXstugo]*)", clause[who_end:]):
            bits = 0
            if perms in ("u", "g", "o"):
                shift = {"u": 6, "g": 3, "o": 0}[perms]
                rwx = (mode >> shift) & 0o7
                bits = rwx << 6 | rwx << 3 | rwx
            else:
                for p in perms:
                    if p == "r":
                        bits |= 0o444
                    elif p == "w":
                        bits |= 0o222
                    elif p == "x" or (p == "X" and (is_dir or mode & 0o111)):
                        bits |= 0o111
                    elif p == "s":
                        bits |= 0o6000
                    elif p == "t":
                        bits |= 0o1000
            bits &= mask
            if op == "+":
                mode |= bits
            elif op == "-":
                mode &= ~bits
            else:
                mode = (mode & ~mask) | bits
    return mode & 0o7777


# ---------------------------------------------------------------------------------------------- ports

_PROTOCOLS = ("tcp", "udp", "sctp")


@dataclass(frozen=True)
class PortSpec:
    """An EXPOSEd port or port range ("8000-8010/udp")."""

    start: int
    end: int
    proto: str

    def keys(self) -> tuple[str, ...]:
        """The image config ExposedPorts keys ("80/tcp", one per port of a range)."""
        return tuple(f"{port}/{self.proto}" for port in range(self.start, self.end + 1))


def parse_port_spec(text: str) -> PortSpec:
    port, slash, proto = text.partition("/")
    proto = proto.lower() if slash and proto else "tcp"
    if proto not in _PROTOCOLS:
        raise DockerfileError(f"invalid proto: {proto}")
    start_text, dash, end_text = port.partition("-")
    try:
        start = int(start_text)
        end = int(end_text) if dash else start
    except ValueError:
        raise DockerfileError(f"invalid containerPort: {port}") from None
    if not start_text.isdigit() or (dash and not end_text.isdigit()) or start > 65535 or end > 65535:
        raise DockerfileError(f"invalid containerPort: {port}")
    if end < start:
        raise DockerfileError(f"invalid range specified for container port: {port}")
    return PortSpec(start=start, end=end, proto=proto)


# ---------------------------------------------------------------------------------------------- signals

_SIGNALS = {
    "ABRT",
    "ALRM",
    "BUS",
    "CHLD",
    "CLD",
    "CONT",
    "FPE",
    "HUP",
    "ILL",
    "INT",
    "IO",
    "IOT",
    "KILL",
    "PIPE",
    "POLL",
    "PROF",
    "PWR",
    "QUIT",
    "SEGV",
    "STKFLT",
    "STOP",
    "SYS",
    "TERM",
    "TRAP",
    "TSTP",
    "TTIN",
    "TTOU",
    "UNUSED",
    "URG",
    "USR1",
    "USR2",
    "VTALRM",
    "WINCH",
    "XCPU",
    "XFSZ",
    "RTMIN",
    "RTMAX",
    *(f"RTMIN+{n}" for n in range(1, 16)),
    *(f"RTMAX-{n}" for n in range(1, 15)),
}


def parse_signal(text: str) -> str:
    """A STOPSIGNAL value checked like moby's ParseSignal; returned as written."""
    try:
        number = int(text, 10)
    except ValueError:
        number = None
    if number is not None:
        if number == 0:
            raise DockerfileError(f"Invalid signal: {text}")
        return text
    name = text.upper()
    if name.startswith("SIG"):
        name = name[3:]
    if name not in _SIGNALS:
        raise DockerfileError(f"Invalid signal: {text}")
    return text


# ---------------------------------------------------------------------------------------------- mounts

MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
SHARING_MODES = ("shared", "private", "locked")
_MOUNT_KEYS = (
    "type",
    "from",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "readonly",
    "ro",
    "readwrite",
    "rw",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "env",
)


@dataclass(frozen=True)
class Mount:
    """One RUN --mount, after expansion. readonly is already resolved to the type's default."""

    type: str = "bind"
    target: str | None = None
    source: str | None = None
    from_: str | None = None
    readonly: bool = True
    id: str | None = None
    sharing: str | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    required: bool = False
    env: str | None = None
    size: int | None = None


def _parse_bool(key: str, value: str) -> bool:
    # Go's strconv.ParseBool
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise DockerfileError(f"invalid value for {key}: {value}")


def _parse_uint(key: str, value: str, base: int) -> int:
    try:
        number = int(value, base)
    except ValueError:
        number = -1
    if number < 0 or number > 0xFFFFFFFF or not value.isalnum():
        raise DockerfileError(f"invalid value for {key}: {value}")
    return number


def mount_fields(spec: str) -> list[str]:
    """The comma-separated fields of a --mount value, quoted as CSV (BuildKit reads it with Go's encoding/csv)."""
    try:
        return next(csv.reader([spec]), [])
    except csv.Error as e:
        shown = spec if len(spec) <= 200 else spec[:200] + "..."
        raise DockerfileError(f"invalid mount {shown!r}: {e}") from None


def parse_mount(spec: str, word: Callable[[str], str] | None = None) -> Mount:
    """A --mount value ("type=cache,target=/root/.cache,sharing=locked").

    `word` expands each field's value (BuildKit expands values one by one, after splitting the fields).
    """
    fields = mount_fields(spec)
    kind = "bind"
    values: dict[str, str] = {}
    readonly: bool | None = None
    required = False
    for field in fields:
        key, eq, value = field.partition("=")
        key = key.lower()
        if not eq:
            if key in ("readonly", "ro"):
                readonly = True
            elif key in ("readwrite", "rw"):
                readonly = False
            elif key == "required":
                if kind not in ("secret", "ssh"):
                    raise DockerfileError(f"unexpected key '{key}' for mount type '{kind}'")
                required = True
            else:
                raise DockerfileError(f"invalid field '{field}' must be a key=value pair")
            continue
        if word is not None:
            value = word(value)
        if key == "type":
            if value.lower() not in MOUNT_TYPES:
                raise DockerfileError(f'unsupported mount type "{value}"')
            kind = value.lower()
        elif key in ("readonly", "ro"):
            readonly = _parse_bool(key, value)
        elif key in ("readwrite", "rw"):
            readonly = not _parse_bool(key, value)
        elif key == "required":
            if kind not in ("secret", "ssh"):
                raise DockerfileError(f"unexpected key '{key}' for mount type '{kind}'")
            required = _parse_bool(key, value)
        elif key == "size" and kind != "tmpfs":
            raise DockerfileError(f"unexpected key '{key}' for mount type '{kind}'")
        elif key == "sharing" and kind != "cache":
            raise DockerfileError(f"invalid cache sharing set for {kind} mount")
        elif key not in _MOUNT_KEYS:
            raise DockerfileError(f"unexpected key '{key}' in '{field}'")
        else:
            canonical = {"src": "source", "dst": "target", "destination": "target"}.get(key, key)
            values[canonical] = value
    sharing = values.get("sharing")
    if sharing is not None:
        sharing = sharing.lower()
        if sharing not in SHARING_MODES:
            raise DockerfileError(f'unsupported sharing value "{values["sharing"]}"')
    mode = _parse_uint("mode", values["mode"], 8) if "mode" in values else None
    uid = _parse_uint("uid", values["uid"], 10) if "uid" in values else None
    gid = _parse_uint("gid", values["gid"], 10) if "gid" in values else None
    if kind not in ("secret", "ssh", "cache"):
        for name, got in (("mode", mode), ("uid", uid), ("gid", gid)):
            if got is not None:
                raise DockerfileError(f'{name} not allowed for "{kind}" type mounts')
    if readonly is None:
        readonly = kind not in ("cache", "tmpfs")
    if kind == "secret":
        if "from" in values:
            raise DockerfileError("secret mount should not have a from")
        if not values.get("source") and not values.get("target") and not values.get("id") and "env" not in values:
            raise DockerfileError("invalid secret mount. one of source, target required")
        if values.get("source") and values.get("id"):
            raise DockerfileError("both source and id can't be set")
    if kind in ("bind", "cache", "tmpfs") and not values.get("target"):
        raise DockerfileError(f"invalid mount: {kind} mount requires a target")
    return Mount(
        type=kind,
        target=values.get("target") or None,
        source=values.get("source") or None,
        from_=values.get("from") or None,
        readonly=readonly,
        id=values.get("id") or None,
        sharing=sharing,
        mode=mode,
        uid=uid,
        gid=gid,
        required=required,
        env=values.get("env"),
        size=parse_mem_bytes(values["size"]) if "size" in values else None,
    )
