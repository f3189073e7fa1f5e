"""Go's path rules, as Docker applies them to .dockerignore patterns and COPY sources.

``clean`` is Go's ``path.Clean``; ``parse_glob`` reads a Go ``filepath.Match`` pattern (``*``, ``?``, ``[...]``
classes with ``^`` negation and ranges, ``\\`` escapes) into tokens, rejecting exactly the patterns Go rejects
with ``ErrBadPattern``; ``glob_regex`` turns the tokens of one path element into a regular expression.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class BadPattern(ValueError):
    """A pattern Go's filepath.Match rejects (ErrBadPattern)."""


def clean(path: str) -> str:
    """Go's path.Clean: the shortest equivalent path, "." for empty, ".." kept only where it cannot be dropped."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for elem in path.split("/"):
        if elem in ("", "."):
            continue
        if elem == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            # ".." at the root of a rooted path stays at the root
            continue
        parts.append(elem)
    body = "/".join(parts)
    if rooted:
        return "/" + body
    return body or "."


@dataclass(frozen=True)
class Literal:
    char: str


@dataclass(frozen=True)
class Star:
    """``*``: any run of characters except the separator."""


@dataclass(frozen=True)
class AnyChar:
    """``?``: one character except the separator."""


@dataclass(frozen=True)
class CharClass:
    negated: bool
    ranges: tuple[tuple[str, str], ...]


Token = Literal | Star | AnyChar | CharClass


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    """One (possibly escaped) character of a class at ``pattern[i]``, as Go's getEsc reads it."""
    if i >= len(pattern) or pattern[i] in "-]":
        raise BadPattern(pattern)
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise BadPattern(pattern)
    char = pattern[i]
    i += 1
    # Go insists the class goes on after every character: an unterminated class is malformed.
    if i >= len(pattern):
        raise BadPattern(pattern)
    return char, i


def parse_glob(pattern: str) -> list[Token]:
    """The tokens of a Go filepath.Match pattern; BadPattern where Go returns ErrBadPattern."""
    tokens: list[Token] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            tokens.append(Star())
            i += 1
        elif ch == "?":
            tokens.append(AnyChar())
            i += 1
        elif ch == "\\":
            if i + 1 >= len(pattern):
                raise BadPattern(pattern)
            tokens.append(Literal(pattern[i + 1]))
            i += 2
        elif ch == "[":
            i += 1
            negated = i < len(pattern) and pattern[i] == "^"
            if negated:
                i += 1
            ranges: list[tuple[str, str]] = []
            while True:
                if i < len(pattern) and pattern[i] == "]" and ranges:
                    i += 1
                    break
                lo, i = _class_char(pattern, i)
                hi = lo
                if pattern[i] == "-":
                    hi, i = _class_char(pattern, i + 1)
                ranges.append((lo, hi))
            tokens.append(CharClass(negated, tuple(ranges)))
        else:
            tokens.append(Literal(ch))
            i += 1
    return tokens


def _class_regex(token: CharClass) -> str:
    # Go accepts reversed ranges such as [z-a] (they match nothing); Python's re rejects them, so drop them.
    parts = [re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}" for lo, hi in token.ranges if lo <= hi]
    if not parts:
        return r"[\s\S]" if token.negated else "(?!)"
    return "[" + ("^" if token.negated else "") + "".join(parts) + "]"


def token_regex(token: Token) -> str:
    """The regular expression of one token (a class may match "/", as in Go)."""
    if isinstance(token, Literal):
        return re.escape(token.char)
    if isinstance(token, Star):
        return "[^/]*"
    if isinstance(token, AnyChar):
        return "[^/]"
    return _class_regex(token)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A compiled regex that fullmatches exactly the names Go's filepath.Match(pattern, name) accepts."""
    return re.compile("".join(token_regex(t) for t in parse_glob(pattern)))


def has_wildcards(path: str) -> bool:
    """Whether a COPY source holds wildcards, as BuildKit decides: ``*``, ``?`` or ``[`` not after a backslash."""
    i = 0
    while i < len(path):
        if path[i] == "\\":
            i += 2
            continue
        if path[i] in "*?[":
            return True
        i += 1
    return False
