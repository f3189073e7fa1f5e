"""Values in Go's spellings, as kaniko (a Go program) reads them from its flags, environment and context URLs."""

from __future__ import annotations

import re

from kiln.errors import UsageError


def go_bool(text: str, what: str) -> bool:
    """A boolean as Go's strconv.ParseBool reads it; a UsageError naming `what` (a flag, a variable) otherwise."""
    truth = text.strip()
    if truth in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if truth in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise UsageError(f"expected true or false, got {text!r}", what)


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]+)")


def go_duration(text: str) -> float:
    """A duration as Go's time.ParseDuration reads it ("30s", "1m30s", "1.5h", "250ms", "0") in seconds; a
    ValueError with Go's own message otherwise (callers make it their error type, naming what held it)."""
    s = text
    sign = 1.0
    if s[:1] in ("+", "-"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None and re.fullmatch(r"\d*(?:\.\d*)?", s[pos:]):
            raise ValueError(f'time: missing unit in duration "{text}"')
        if m is None or (m.group(1) == "" and not m.group(2)):
            raise ValueError(f'time: invalid duration "{text}"')
        unit = m.group(3)
        if unit not in _DURATION_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{text}"')
        number = float(f"{m.group(1) or '0'}.{m.group(2) or '0'}")
        total += number * _DURATION_UNITS[unit]
        pos = m.end()
    return sign * total


def go_duration_flag(text: str, flag: str) -> float:
    """go_duration for a flag's value: a UsageError naming the flag, with examples."""
    try:
        return go_duration(text.strip())
    except ValueError as e:
        raise UsageError(f"{e} (examples: 336h, 90m, 1h30m)", flag) from None
