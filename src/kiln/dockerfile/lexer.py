"""The Dockerfile lexer: text to the nodes BuildKit's parser produces.

This layer decides what an instruction's words are, and nothing about what they mean: parser directives,
continuation lines, comments, flag words, JSON (exec) form versus shell form, and heredoc bodies. The rules
are those of BuildKit's frontend parser (Dockerfile syntax 1.x), quirks included, because a Dockerfile must
split the same way here as under `docker build`:

- Directives (`# syntax=`, `# escape=`, `# check=`) count only before any other line, comment or blank line.
- A line continues when it ends with the escape token (plus spaces/tabs) not itself escaped. Comment lines
  and blank lines inside a continuation are dropped; continuation lines keep their leading whitespace.
- The rest of the line is JSON (exec) form only when all of it is one JSON array (json.Unmarshal, as BuildKit
  has done since it stopped using json.Decoder): `CMD ["a"] # x` or `RUN ["a"]b` is shell form, the whole text
  being the command. An array that decodes with a non-string element is an error.
- Heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`) belong to RUN, COPY and ADD (also under ONBUILD), only in
  shell form, and only as whole shell words.
- The file need not be UTF-8 (BuildKit reads bytes): each byte that is not part of valid UTF-8 becomes one
  U+FFFD (see go_text), so a Latin-1 comment or value never stops a build.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from kiln.errors import DockerfileError

__all__ = [
    "Directives",
    "DockerfileWarning",
    "Heredoc",
    "Node",
    "first_word",
    "go_text",
    "lex",
    "parse_words",
    "split_line",
]


@dataclass(frozen=True)
class Heredoc:
    name: str  # terminator word, e.g. "EOF"
    content: str  # body with its final newline; leading tabs stripped for <<-
    expand: bool  # False when any part of the terminator was quoted
    chomp: bool  # <<-
    fd: int | None  # 3<<EOF
    raw_content: str = field(default="", compare=False)  # body as written (tabs kept), for ONBUILD text


@dataclass(frozen=True)
class Node:
    """One instruction as BuildKit's parser sees it."""

    keyword: str  # lower-case
    args: tuple[str, ...]  # BuildKit's node.Next values
    flags: tuple[str, ...]  # flag words, quotes and backslashes processed, in order
    json: bool
    original: str  # the joined line (continuations removed), plus heredoc bodies when there are any
    start_line: int  # 1-based
    end_line: int
    heredocs: tuple[Heredoc, ...] = ()
    sub: Node | None = None  # ONBUILD's trigger


@dataclass(frozen=True)
class Directives:
    syntax: str | None = None
    escape: str = "\\"
    check_skip: tuple[str, ...] = ()
    check_error: bool = False


@dataclass(frozen=True)
class DockerfileWarning:
    line: int
    message: str
    rule: str = ""  # BuildKit's check name (e.g. "LegacyKeyValueFormat"), "" for other warnings


# ----------------------------------------------------------------------------------------- characters

_GO_SPACES = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)


_GO_SPACE_CHARS = "".join(sorted(_GO_SPACES))
_GO_SPACE_CLASS = "".join(re.escape(c) for c in _GO_SPACE_CHARS)  # for a [...] character class
_GO_SPACE_RUN = re.compile(f"[{_GO_SPACE_CLASS}]*")
_GO_SPACE_SPLIT = re.compile(f"[{_GO_SPACE_CLASS}]+")
_GO_WORD = re.compile(f"[^{_GO_SPACE_CLASS}]*")

# Linear lexing: runs of ordinary characters are taken by regular expressions (possessive, so they never
# backtrack) or str methods, not one character at a time in Python; nothing rescans a line from its start or
# builds a string by repeated concatenation.


def _end_of(run: re.Pattern[str], s: str, pos: int = 0) -> int:
    """Where a run of `run` (a pattern that may match nothing) starting at `pos` ends."""
    m = run.match(s, pos)
    assert m is not None
    return m.end()


def _is_space(c: str) -> bool:
    """Go's unicode.IsSpace."""
    return c in _GO_SPACES


def _trim_left(s: str) -> str:
    return s.lstrip(_GO_SPACE_CHARS)


def _trim(s: str) -> str:
    return s.strip(_GO_SPACE_CHARS)


_WHITESPACE = re.compile(r"[\t\v\f\r ]+")  # BuildKit's reWhitespace (no newline, no unicode spaces)
# BuildKit's reDirective is ^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$ (Go's \s: [\t\n\f\r ]); the value is cut out
# in _directive, as a lazy (.+?) before \s*$ backtracks quadratically over a long run of blanks.
_DIRECTIVE = re.compile(r"^#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=(.*)$", re.S)
_DIRECTIVE_BLANKS = "\t\n\f\r "
_HEREDOC = re.compile(r"^(\d*)<<(-?)([^<]*)$", re.S)
_LEADING_TABS = re.compile(r"^\t+", re.M)
_KNOWN_DIRECTIVES = ("syntax", "escape", "check")


def _is_comment(line: str) -> bool:
    return _trim_left(line.rstrip("\r\n")).startswith("#")


def _directive(line: str) -> tuple[str, str] | None:
    """(name, value) when `line` has the form of a parser directive."""
    m = _DIRECTIVE.match(line)
    if m is None:
        return None
    after = m.group(2)
    value = after.strip(_DIRECTIVE_BLANKS)
    if not value:
        if not after:
            return None
        value = after[-1]  # (.+?) must take one character: with only blanks left, it takes the last one
    return m.group(1), value


# ----------------------------------------------------------------------------------------- directives


class _DirectiveState:
    """Collects parser directives until the first line that is not one."""

    def __init__(self) -> None:
        self.done = False
        self.values: dict[str, str] = {}
        self.escape = "\\"

    def see(self, line: str) -> None:
        if self.done:
            return
        found = _directive(line)
        if found is None or found[0].lower() not in _KNOWN_DIRECTIVES:
            self.done = True
            return
        key, value = found[0].lower(), found[1]
        if key in self.values:
            raise DockerfileError(f"only one {key} parser directive can be used")
        self.values[key] = value
        if key == "escape":
            if value not in ("\\", "`"):
                raise DockerfileError(f"invalid escape token '{value}' does not match ` or \\")
            self.escape = value

    def trim_continuation(self, line: str) -> tuple[str, bool]:
        """The line without its continuation token, and whether the instruction ends on it.

        BuildKit's `([^e])e[ \t]*$|^e[ \t]*$` replaced by "$1": the escape token, then only spaces and tabs,
        continues the line unless it is itself escaped ("foo \\\\" ends the instruction)."""
        stripped = line.rstrip(" \t")
        e = self.escape
        if stripped.endswith(e) and (len(stripped) == 1 or stripped[-2] != e):
            return stripped[:-1], False
        return line, True


def _check_options(value: str) -> tuple[tuple[str, ...], bool]:
    """`# check=skip=A,B;error=true`."""
    skip: tuple[str, ...] = ()
    error = False
    value = value.strip()
    if not value:
        return skip, error
    for part in value.split(";"):
        key, eq, v = part.partition("=")
        key = key.strip()
        if not eq:
            raise DockerfileError(f"invalid check option {part!r}")
        if key == "skip":
            skip = tuple(s.strip() for s in v.split(",") if s.strip())
        elif key == "error":
            lowered = v.strip()
            if lowered in ("1", "t", "T", "true", "TRUE", "True"):
                error = True
            elif lowered in ("0", "f", "F", "false", "FALSE", "False"):
                error = False
            else:
                raise DockerfileError(f"failed to parse check option {part!r}")
        elif key == "experimental":
            continue
        else:
            raise DockerfileError(f"invalid check option {key!r}")
    return skip, error


_SUPPORTED_SYNTAX = re.compile(
    r"^(?:(?:docker\.io|registry-1\.docker\.io)/)?docker/dockerfile(?:-upstream)?"
    r"(?::(?:1(?:\.\d+){0,2}(?:-labs)?|labs|latest))?(?:@sha256:[0-9a-f]{64})?$"
)


def syntax_supported(syntax: str) -> bool:
    """Whether a `# syntax=` frontend is one kiln implements (BuildKit's dockerfile 1.x)."""
    return _SUPPORTED_SYNTAX.match(syntax.split(" ", 1)[0]) is not None


# ----------------------------------------------------------------------------------------- words


def split_line(line: str) -> tuple[str, tuple[str, ...], str]:
    """BuildKit's splitCommand: (command word, flag words, rest of the line)."""
    parts = _WHITESPACE.split(_trim(line), maxsplit=1)
    if len(parts) < 2:
        return parts[0], (), ""
    rest, flags = _extract_flags(parts[1])
    return parts[0], flags, _trim(rest)


_FLAG_PLAIN = re.compile(f"""[^{_GO_SPACE_CLASS}'"\\\\]+""")
_FLAG_QUOTED = {q: re.compile(f"[^{q}\\\\]+") for q in ("'", '"')}


def _extract_flags(line: str) -> tuple[str, tuple[str, ...]]:
    """Leading `--flag[=value]` words. Quotes and backslashes inside them are processed (backslash always,
    whatever the escape directive says); a bare `--` ends the flags."""
    words: list[str] = []
    i = 0
    n = len(line)
    while True:
        i = _end_of(_GO_SPACE_RUN, line, i)
        if i >= n:
            return "", tuple(words)
        if not line.startswith("--", i):
            return line[i:], tuple(words)
        word: list[str] = []
        blank_ok = False
        quote = ""
        while i < n:
            plain = (_FLAG_QUOTED[quote] if quote else _FLAG_PLAIN).match(line, i)
            if plain is not None:  # a run of characters taken as they are
                word.append(plain.group())
                i = plain.end()
                continue
            c = line[i]
            if quote:
                if c == quote:
                    quote = ""
                elif c == "\\":
                    if i + 1 == n:
                        quote = ""
                    else:
                        i += 1
                        word.append(line[i])
                else:
                    word.append(c)
                i += 1
                continue
            if _is_space(c):
                break
            if c in ("'", '"'):
                quote = c
                blank_ok = True
            elif c == "\\":
                if i + 1 < n:
                    i += 1
                    word.append(line[i])
            else:
                word.append(c)
            i += 1
        text = "".join(word)
        if i < n and text == "--":
            return line[i:], tuple(words)
        if text != "--" and (blank_ok or text):
            words.append(text)
        if i >= n:
            return "", tuple(words)


@functools.lru_cache(maxsize=4)
def _word_regex(escape: str) -> re.Pattern[str]:
    """One word of parseWords, as written. A trailing escape token (the last character of the text, not itself
    escaped, not in single quotes) is captured by the group `drop`: parseWords leaves it out."""
    e = re.escape(escape)
    return re.compile(  # possessive quantifiers: no backtracking, whatever the text
        rf"""(?:[^{_GO_SPACE_CLASS}'"{e}]++"""  # plain characters
        rf"|{e}(?P<drop>\Z)|{e}."  # an escape token and the character it escapes, or a trailing one
        r"|'[^']*+(?:'|\Z)"  # single quotes: nothing is special, an unterminated one runs to the end
        rf"""|"(?:[^"{e}]++|{e}(?P<qdrop>\Z)|{e}.)*+(?:"|\Z)"""  # double quotes: the escape token still escapes
        r")++",
        re.S,
    )


def first_word(rest: str, escape: str) -> str | None:
    """The first word parse_words would give (None when there is none), reading no further than that word."""
    pos = _end_of(_GO_SPACE_RUN, rest)
    end = _end_of(_GO_WORD, rest, pos)
    if "'" not in rest[pos:end] and '"' not in rest[pos:end] and escape not in rest[pos:end]:
        return rest[pos:end] or None  # a word of plain characters
    while pos < len(rest):
        m = _word_regex(escape).match(rest, pos)
        assert m is not None
        if m.group("drop") is None and m.group("qdrop") is None:
            return m.group()
        if len(m.group()) > 1:
            return m.group()[:-1]
        pos = _end_of(_GO_SPACE_RUN, rest, m.end())
    return None


def parse_words(rest: str, escape: str) -> list[str]:
    """BuildKit's parseWords: split on whitespace outside quotes, keeping quotes and escapes in the words."""
    if "'" not in rest and '"' not in rest and escape not in rest:
        return [w for w in _GO_SPACE_SPLIT.split(rest) if w]  # nothing but words and blanks
    words: list[str] = []
    word_at = _word_regex(escape).match
    n = len(rest)
    pos = _end_of(_GO_SPACE_RUN, rest)
    while pos < n:
        m = word_at(rest, pos)
        assert m is not None  # a non-blank character always starts a word
        word = m.group()
        if m.group("drop") is not None or m.group("qdrop") is not None:
            word = word[:-1]
        if word:  # only a lone trailing escape token makes an empty word, and BuildKit drops it
            words.append(word)
        pos = _end_of(_GO_SPACE_RUN, rest, m.end())
    return words


def _reject_constant(name: str) -> object:
    raise ValueError(name)  # NaN/Infinity are not JSON for Go


def _go_number(text: str) -> float:
    # Go decodes a number into interface{} as a float64; one out of its range fails the whole Unmarshal (so
    # the line is shell form) instead of being a non-string element.
    value = float(text)
    if math.isinf(value):
        raise ValueError(text)
    return value


_JSON = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_go_number, parse_int=_go_number)
_NOT_STRINGS = "when using JSON array syntax, arrays must be comprised of strings only"


def _parse_json(rest: str) -> tuple[str, ...] | None:
    """The strings of a JSON array, or None when `rest` is not one (then it is shell form).

    BuildKit's parseJSON: json.Unmarshal of the whole rest of the line, so the array must be all of it (JSON
    white space after it is fine, anything else makes the line shell form). Unmarshal checks the syntax of
    the whole input before decoding, so `["a", 1] x` is shell form, not the non-string error."""
    rest = _trim_left(rest)
    if not rest.startswith("["):
        return None
    try:
        value = _JSON.decode(rest)  # raises on trailing data, unlike raw_decode
    except (ValueError, RecursionError):
        # RecursionError: absurdly deep nesting. Go accepts up to 10000 levels (and then refuses the
        # non-string element); shell form is close enough.
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise DockerfileError(_NOT_STRINGS)
    # Go decodes an unpaired "\ud800" escape as U+FFFD; Python keeps the lone surrogate.
    return tuple(go_text(v) for v in value)


_Parsed = tuple[tuple[str, ...], bool]


def _maybe_json(rest: str, escape: str) -> _Parsed:
    if not rest:
        return (), False
    parsed = _parse_json(rest)
    return (parsed, True) if parsed is not None else ((rest,), False)


def _maybe_json_list(rest: str, escape: str) -> _Parsed:
    parsed = _parse_json(rest)
    return (parsed, True) if parsed is not None else _whitespace_list(rest, escape)


def _whitespace_list(rest: str, escape: str) -> _Parsed:
    return (tuple(_WHITESPACE.split(rest)) if rest else ()), False


def _string(rest: str, escape: str) -> _Parsed:
    return ((rest,) if rest else ()), False


def _name_or_name_val(rest: str, escape: str) -> _Parsed:
    return tuple(parse_words(rest, escape)), False


def _name_val(keyword: str) -> Callable[[str, str], _Parsed]:
    def parse(rest: str, escape: str) -> _Parsed:
        words = parse_words(rest, escape)
        if not words:
            return (), False
        if "=" not in words[0]:
            # Legacy form `ENV name value with spaces`.
            parts = _WHITESPACE.split(rest, maxsplit=1)
            if len(parts) < 2:
                raise DockerfileError(f"{keyword} must have two arguments")
            return (parts[0], parts[1]), False
        out: list[str] = []
        for word in words:
            if "=" not in word:
                raise DockerfileError(
                    f"Syntax error - can't find = in {json.dumps(word)}. Must be of the form: name=value"
                )
            key, _, value = word.partition("=")
            out += [key, value]
        return tuple(out), False

    return parse


def _health(rest: str, escape: str) -> _Parsed:
    sep = _end_of(_GO_WORD, rest)
    if sep == 0:
        return (), False
    nxt = _end_of(_GO_SPACE_RUN, rest, sep)
    args, is_json = _maybe_json(rest[nxt:], escape)
    return (rest[:sep], *args), is_json


_ARG_PARSERS: dict[str, Callable[[str, str], _Parsed]] = {
    "add": _maybe_json_list,
    "arg": _name_or_name_val,
    "cmd": _maybe_json,
    "copy": _maybe_json_list,
    "entrypoint": _maybe_json,
    "env": _name_val("ENV"),
    "expose": _whitespace_list,
    "from": _whitespace_list,
    "healthcheck": _health,
    "label": _name_val("LABEL"),
    "maintainer": _string,
    "run": _maybe_json,
    "shell": _maybe_json,
    "stopsignal": _string,
    "user": _string,
    "volume": _maybe_json_list,
    "workdir": _string,
}
HEREDOC_KEYWORDS = ("run", "copy", "add")


def node_from_line(line: str, escape: str, start: int, end: int) -> Node:
    """One logical line (continuations joined) to a node, without heredoc bodies."""
    cmd, flags, rest = split_line(line)
    keyword = cmd.lower()
    if keyword == "onbuild":
        if not rest:
            return Node(keyword, (), flags, False, line, start, end)
        sub = node_from_line(rest, escape, start, end)
        return Node(keyword, sub.args, flags, sub.json, line, start, end, sub=sub)
    parser = _ARG_PARSERS.get(keyword)
    if parser is None:
        # BuildKit keeps unknown instructions with one empty argument; the instruction layer refuses them.
        return Node(keyword, ("",), flags, False, line, start, end)
    args, is_json = parser(rest, escape)
    return Node(keyword, args, flags, is_json, line, start, end)


# ----------------------------------------------------------------------------------------- heredocs


_SHELL_WORD = re.compile(  # plain, \x, '...', "..." (with \x inside); possessive: no backtracking
    r"""(?:[^ \t\r\n\\'"]++|\\.?|'[^']*+'|"(?:[^"\\]++|\\.)*+")++""",
    re.S,
)
_SHELL_BLANKS = re.compile(r"[ \t\r\n]*")


def _shell_words_raw(line: str) -> list[str] | None:
    """Shell words of a line, quotes and backslashes kept as written; None on an unterminated quote."""
    words: list[str] = []
    n = len(line)
    pos = _end_of(_SHELL_BLANKS, line)
    while pos < n:
        m = _SHELL_WORD.match(line, pos)
        if m is None:
            return None  # only a quote that is never closed stops a word here
        words.append(m.group())
        pos = m.end()
        if pos < n and line[pos] not in " \t\r\n":
            return None
        pos = _end_of(_SHELL_BLANKS, line, pos)
    return words


def _unquote(word: str, keep_quotes: bool) -> list[str] | None:
    """Shell quote removal of `word` (escapes always processed); None on an unterminated quote.

    Returns the words it splits into (a quoted space keeps one word)."""
    out: list[str] = []
    cur: list[str] = []
    started = False
    i = 0
    n = len(word)
    while i < n:
        c = word[i]
        if c in " \t\r\n":
            if started:
                out.append("".join(cur))
                cur, started = [], False
            i += 1
            continue
        started = True
        if c == "\\":
            if i + 1 < n:
                cur.append(word[i + 1])
            i += 2
        elif c == "'":
            end = word.find("'", i + 1)
            if end < 0:
                return None
            cur.append(word[i : end + 1] if keep_quotes else word[i + 1 : end])
            i = end + 1
        elif c == '"':
            body: list[str] = ['"'] if keep_quotes else []
            j = i + 1
            while j < n and word[j] != '"':
                if word[j] == "\\" and j + 1 < n and word[j + 1] in '"$\\`':
                    j += 1
                body.append(word[j])
                j += 1
            if j >= n:
                return None
            if keep_quotes:
                body.append('"')
            cur.append("".join(body))
            i = j + 1
        else:
            cur.append(c)
            i += 1
    if started:
        out.append("".join(cur))
    return out


def parse_heredoc_word(word: str) -> Heredoc | None:
    """A heredoc opener (`<<EOF`, `<<-"EOF"`, `3<<EOF`) without its body, or None when `word` is not one."""
    m = _HEREDOC.match(word)
    if m is None or not m.group(3):
        return None
    plain = _unquote(m.group(3), keep_quotes=False)
    raw = _unquote(m.group(3), keep_quotes=True)
    if plain is None or raw is None:
        raise DockerfileError(f"invalid heredoc: {word}")
    if len(plain) != 1 or len(raw) != 1:
        return None
    quotes = sum(plain[0].count(q) for q in "'\"")
    raw_quotes = sum(raw[0].count(q) for q in "'\"")
    return Heredoc(
        name=plain[0],
        content="",
        expand=quotes == raw_quotes,
        chomp=m.group(2) == "-",
        fd=int(m.group(1)) if m.group(1) else None,
    )


def heredocs_in_line(line: str) -> list[Heredoc]:
    if "<<" not in line:
        return []  # every heredoc opener has one: skip scanning the words of a long line
    words = _shell_words_raw(line) or []
    return [h for h in (parse_heredoc_word(w) for w in words) if h is not None]


def _can_contain_heredoc(node: Node) -> bool:
    target = node.sub if node.keyword == "onbuild" and node.sub is not None else node
    return target.keyword in HEREDOC_KEYWORDS and not target.json


# ----------------------------------------------------------------------------------------- lexing


def _split_on_newline(text: str) -> list[str]:
    # str.splitlines also splits on a lone \r and other separators; Go splits on \n only.
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


_SURROGATES = re.compile("[\ud800-\udfff]")


def go_text(text: str | bytes) -> str:
    """A Dockerfile's text as kiln handles it: bytes (or text decoded with errors="surrogateescape") with every
    byte that is not valid UTF-8 replaced by one U+FFFD.

    BuildKit reads the Dockerfile as bytes and never refuses invalid UTF-8. Where it decodes runes (words of
    ENV/LABEL/ARG, JSON arrays, variable expansion) each invalid byte becomes U+FFFD, and Go's JSON encoder
    writes U+FFFD for each invalid byte of every string it puts in the image config (CMD, ENTRYPOINT, ENV,
    LABEL, history, ONBUILD), so replacing them up front gives the same config. The one difference: BuildKit
    hands a shell-form RUN and heredoc bodies to the container byte for byte; kiln gives U+FFFD there too,
    because its engine writes text as UTF-8 (a lone surrogate from surrogateescape would not encode).
    Lone surrogates in a str (from surrogateescape or a "\udce9" JSON escape) are replaced the same way."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    if text.isascii():
        return text
    return _SURROGATES.sub("\ufffd", text)


def _go_lines(text: str) -> list[str]:
    if text.startswith("\ufeff"):
        text = text[1:]
    return _split_on_newline(text)


def lex(text: str | bytes, path: str = "Dockerfile") -> tuple[Directives, list[Node], list[DockerfileWarning]]:
    """Split a Dockerfile (text, or bytes in any encoding: see go_text) into directives and instruction nodes.

    Raises DockerfileError (with the line) on a bad directive, a non-string JSON array, a legacy ENV/LABEL
    without a value, an unterminated heredoc, or a file without instructions.
    """
    lines = _go_lines(go_text(text))
    state = _DirectiveState()
    nodes: list[Node] = []
    warnings: list[DockerfileWarning] = []
    i = 0
    while i < len(lines):
        raw = lines[i]
        i += 1
        start = i
        token = _trim_left(raw.rstrip("\r\n"))
        if not state.done:
            try:
                state.see(token)
            except DockerfileError as e:
                raise DockerfileError(e.msg, path, start) from None
        first = "" if token.startswith("#") else token
        line, done = state.trim_continuation(first)
        if done and line == "":
            continue
        empty_continuation = False
        if not done:
            parts = [line]
            while not done and i < len(lines):
                raw = lines[i]
                i += 1
                cont = raw.rstrip("\r\n")
                state.see(cont)
                if _is_comment(raw):
                    continue
                if not _trim_left(cont):
                    empty_continuation = True
                    continue
                cont, done = state.trim_continuation(cont)
                parts.append(cont)
            line = "".join(parts)
        if empty_continuation:
            warnings.append(
                DockerfileWarning(start, f"Empty continuation line found in: {line}", "NoEmptyContinuation")
            )
        try:
            node = node_from_line(line, state.escape, start, i)
        except DockerfileError as e:
            raise DockerfileError(e.msg, path, start) from None
        if _can_contain_heredoc(node):
            try:
                openers = heredocs_in_line(line)
            except DockerfileError as e:
                raise DockerfileError(e.msg, path, start) from None
            docs: list[Heredoc] = []
            for opener in openers:
                body: list[str] = []
                terminated = False
                while i < len(lines):
                    raw = lines[i]
                    i += 1
                    candidate = raw.rstrip("\r\n")
                    if opener.chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == opener.name:
                        terminated = True
                        break
                    body.append(raw)
                if not terminated:
                    raise DockerfileError("unterminated heredoc", path, start)
                content = "".join(body)
                chomped = _LEADING_TABS.sub("", content) if opener.chomp else content
                docs.append(Heredoc(opener.name, chomped, opener.expand, opener.chomp, opener.fd, raw_content=content))
            node = _with_heredocs(node, tuple(docs), i)
        nodes.append(node)
    if not nodes:
        raise DockerfileError("file with no instructions", path, len(lines) or None)
    skip: tuple[str, ...] = ()
    error = False
    if "check" in state.values:
        try:
            skip, error = _check_options(state.values["check"])
        except DockerfileError as e:
            raise DockerfileError(e.msg, path, 1) from None
    directives = Directives(syntax=state.values.get("syntax"), escape=state.escape, check_skip=skip, check_error=error)
    return directives, nodes, warnings


def _heredoc_suffix(docs: tuple[Heredoc, ...]) -> str:
    return "".join(d.raw_content + d.name + "\n" for d in docs)


def _with_heredocs(node: Node, docs: tuple[Heredoc, ...], end: int) -> Node:
    if not docs:
        return Node(node.keyword, node.args, node.flags, node.json, node.original, node.start_line, end, sub=node.sub)
    if node.sub is not None:
        sub = node.sub
        sub = Node(
            sub.keyword,
            sub.args,
            sub.flags,
            sub.json,
            sub.original + "\n" + _heredoc_suffix(docs),
            node.start_line,
            end,
            docs,
            sub.sub,
        )
        return Node(node.keyword, node.args, node.flags, node.json, node.original, node.start_line, end, sub=sub)
    return Node(
        node.keyword,
        node.args,
        node.flags,
        node.json,
        node.original + "\n" + _heredoc_suffix(docs),
        node.start_line,
        end,
        docs,
    )
