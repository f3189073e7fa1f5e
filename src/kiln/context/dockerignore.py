""".dockerignore matching with the semantics of Docker and BuildKit (moby's patternmatcher, fsutil's walker).

Reading: one pattern a line; a line starting with ``#`` (in the first column) is a comment; surrounding
whitespace is trimmed and blank lines skipped; ``!`` marks an exception; each pattern is cleaned like Go's
path.Clean and loses one leading ``/``. A lone ``!`` or a pattern Go's filepath.Match rejects is an error.

Matching: patterns apply in order and the last one that matches a path decides. A pattern matches a path
when it matches the path itself or one of its parent directories, so excluding a directory excludes what is
below it unless a later exception brings it back. ``**`` spans any number of directories (zero included).

Two details follow BuildKit rather than the simplest reading of the rules, because the context BuildKit sends
is what COPY sees: (1) a path's result is folded down from its parent directories the way fsutil's walker
does (moby's MatchesUsingParentResults); (2) a walker descends into an excluded directory only when an
exception might match below it (``may_contain_exceptions``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from kiln.context import gomatch
from kiln.errors import ContextError

_BOM = "\ufeff"


class _Kind(Enum):
    EXACT = "exact"
    PREFIX = "prefix"  # pattern ends in "**": a plain prefix test
    SUFFIX = "suffix"  # pattern starts with "**" and has no other wildcard: a plain suffix test
    REGEX = "regex"


@dataclass(frozen=True)
class Pattern:
    """One cleaned pattern (without its ``!``) and how it matches."""

    text: str
    exception: bool
    line: int
    kind: _Kind
    regex: re.Pattern[str] | None

    @classmethod
    def compile(cls, text: str, exception: bool, line: int) -> Pattern:
        kind, regex = _compile(text)
        return cls(text, exception, line, kind, regex)

    def match(self, path: str) -> bool:
        """Whether this pattern matches ``path`` itself (parents are the caller's business)."""
        if self.kind is _Kind.EXACT:
            return path == self.text
        if self.kind is _Kind.PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind is _Kind.SUFFIX:
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            # "**/foo" also matches "foo" at the top
            return suffix.startswith("/") and path == suffix[1:]
        assert self.regex is not None
        return self.regex.fullmatch(path) is not None


def _compile(text: str) -> tuple[_Kind, re.Pattern[str] | None]:
    """How a pattern matches, decided as moby's patternmatcher decides it (the kinds differ at the edges:
    a leading ``**`` followed only by literals is a plain suffix test, so ``**foo`` matches ``barfoo``)."""
    tokens = gomatch.parse_glob(text)  # Go validates every pattern this way; BadPattern propagates
    kind = _Kind.EXACT
    regex: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        first = i == 0
        if isinstance(tok, gomatch.Star) and i + 1 < len(tokens) and isinstance(tokens[i + 1], gomatch.Star):
            i += 2
            # "**/" is read as "**"
            if i < len(tokens) and tokens[i] == gomatch.Literal("/"):
                i += 1
            if i == len(tokens):
                if kind is _Kind.EXACT:
                    kind = _Kind.PREFIX
                else:
                    regex.append(".*")
                    kind = _Kind.REGEX
            else:
                regex.append("(.*/)?")
                kind = _Kind.REGEX
            if first:
                kind = _Kind.SUFFIX
            continue
        # moby compiles a regex for every wildcard, every bracket and every backslash escape (a literal from an
        # escape cannot be compared as plain text: the pattern still holds its backslash)
        if not isinstance(tok, gomatch.Literal) or tok.char == "]" or "\\" in text:
            kind = _Kind.REGEX
        regex.append(gomatch.token_regex(tok))
        i += 1
    if kind is _Kind.REGEX:
        return kind, re.compile("".join(regex))
    return kind, None


def read_patterns(text: str, source: str = ".dockerignore") -> list[Pattern]:
    """The patterns of a .dockerignore file, in order. ContextError names the file and line of a bad one."""
    patterns: list[Pattern] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        if number == 1:
            line = line.removeprefix(_BOM)
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        exception = line.startswith("!")
        if exception:
            line = line[1:].strip()
            if not line:
                raise ContextError(f'{source}:{number}: illegal exclusion pattern: "!"')
        line = gomatch.clean(line)
        if len(line) > 1 and line.startswith("/"):
            line = line[1:]
        try:
            patterns.append(Pattern.compile(line, exception, number))
        except gomatch.BadPattern:
            raise ContextError(f"{source}:{number}: syntax error in pattern {raw.strip()!r}") from None
    return patterns


@dataclass(frozen=True)
class MatchState:
    """Which patterns matched a directory (or one of its parents): what its children start from."""

    matched: tuple[bool, ...]


@dataclass(frozen=True)
class DockerIgnore:
    """A parsed .dockerignore. ``matches(path)`` is True when the path is excluded from the context."""

    patterns: tuple[Pattern, ...] = ()
    source: str = ".dockerignore"
    # BuildKit's walker checks exceptions by prefix when none of them holds a wildcard, and otherwise
    # walks every excluded directory.
    _exceptions_are_prefixes: bool = field(init=False, default=True, repr=False)

    def __post_init__(self) -> None:
        prefixes = all(
            not any(c in _strip_trailing_glob(p.text) for c in "*[]?^\\") for p in self.patterns if p.exception
        )
        object.__setattr__(self, "_exceptions_are_prefixes", prefixes)

    @classmethod
    def parse(cls, text: str, source: str = ".dockerignore") -> DockerIgnore:
        return cls(tuple(read_patterns(text, source)), source)

    @property
    def has_exceptions(self) -> bool:
        return any(p.exception for p in self.patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def step(self, rel_path: str, parent: MatchState | None) -> tuple[bool, MatchState]:
        """Match one path given its parent directory's state (None at the top, or when unknown).

        Moby's MatchesUsingParentResults: a pattern that matched the parent counts as matching the child;
        otherwise it is tried on the path itself (and, without a parent state, on every parent directory).
        Patterns that cannot change the outcome are skipped and do not pass on to the children.
        """
        path = _normalise(rel_path)
        excluded = False
        states: list[bool] = []
        parents = _parent_dirs(path) if parent is None else []
        for index, pattern in enumerate(self.patterns):
            hit = parent.matched[index] if parent is not None else False
            if not hit:
                if pattern.exception != excluded:
                    states.append(False)
                    continue
                hit = pattern.match(path) or any(pattern.match(d) for d in parents)
            states.append(hit)
            if hit:
                excluded = not pattern.exception
        return excluded, MatchState(tuple(states))

    def state_of(self, rel_path: str) -> tuple[bool, MatchState]:
        """``step`` folded from the top down to ``rel_path``: what a walker reaching it would have found."""
        path = _normalise(rel_path)
        if path == ".":
            return False, MatchState((False,) * len(self.patterns))
        state: MatchState | None = None
        excluded = False
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            excluded, state = self.step("/".join(parts[:depth]), state)
        assert state is not None
        return excluded, state

    def matches(self, rel_path: str) -> bool:
        """True when ``rel_path`` (relative to the context root, "/"-separated) is excluded."""
        if not self.patterns:
            return False
        return self.state_of(rel_path)[0]

    def may_contain_exceptions(self, dir_rel: str) -> bool:
        """Whether a walker must descend into the excluded directory ``dir_rel`` (an exception may match inside)."""
        if not self.has_exceptions:
            return False
        if not self._exceptions_are_prefixes:
            return True
        dir_slash = _normalise(dir_rel) + "/"
        return any(p.exception and (_strip_trailing_glob(p.text) + "/").startswith(dir_slash) for p in self.patterns)


def _strip_trailing_glob(text: str) -> str:
    return text.removesuffix("/**").removesuffix("/*")


def _normalise(rel_path: str) -> str:
    path = gomatch.clean(rel_path)
    return path.lstrip("/") or "."


def _parent_dirs(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
