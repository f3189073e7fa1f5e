"""Shell-word expansion of Dockerfile arguments, as BuildKit's shell lexer does it.

This is not a shell: there is no command substitution, no field splitting on IFS, no globbing. It is the
small dialect Dockerfiles use: ``$v``, ``${v}``, the ``${v:-w}`` family, ``${v#p}``/``${v%p}`` trimming with
``*`` and ``?`` wildcards, ``${v/p/r}`` replacement, single and double quotes (removed from the result) and the
Dockerfile's escape character. Its quirks are BuildKit's (e.g. quotes inside a trim pattern are removed, so
``${v#"*"}`` trims like ``${v#*}``), because a Dockerfile must mean the same thing under kiln as under docker.

``word()`` is BuildKit's ProcessWord (one word back); ``words()`` is ProcessWords (the result split into words
on unquoted, unescaped white space, where white space produced by a variable also splits).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from kiln.errors import DockerfileError

# POSIX special parameters: `$` followed by one of these names a one-character variable (never set in a build).
_SPECIAL_PARAMS = frozenset("@*#?-$!0")
# Go's unicode.IsSpace: Python's str.isspace() also counts the ASCII separators 0x1c-0x1f, Go does not.
_NOT_GO_SPACE = frozenset("\x1c\x1d\x1e\x1f")
_REGEX_SPECIAL = frozenset("[]{}.+()|^$")
# Go's unicode.IsSpace (str.isspace() without 0x1c-0x1f) as a character class; test_linear checks the set.
_GO_SPACE_CLASS = "\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_SPACE_RUN = re.compile(f"[{_GO_SPACE_CLASS}]+")
_ASCII_NAME_RUN = re.compile("[A-Za-z0-9_]+")  # the ASCII characters of _is_name_char

# The lexer below takes runs of characters with no special meaning in one step (a regular expression, a
# str.find), and the word being built is a list of pieces joined once: expansion is linear in the text.


class _ExpandError(Exception):
    """An expansion failure before the word it happened in is known; turned into a DockerfileError."""


def _is_space(ch: str) -> bool:
    return ch.isspace() and ch not in _NOT_GO_SPACE


def _is_digit(ch: str) -> bool:
    return unicodedata.category(ch) == "Nd"


def _is_name_char(ch: str) -> bool:
    return ch.isalpha() or _is_digit(ch) or ch == "_"


@dataclass
class _Words:
    """Collects the words of ProcessWords: splits on white space unless the character was quoted/escaped."""

    parts: list[str] = field(default_factory=list)  # the word so far, never holding an empty piece
    words: list[str] = field(default_factory=list)
    in_word: bool = False

    def _end_word(self) -> None:
        # BuildKit only ends a word when it has text: an empty quoted "" never becomes a word.
        if self.in_word and self.parts:
            self.words.append("".join(self.parts))
            self.parts = []
            self.in_word = False

    def add_char(self, ch: str) -> None:
        if _is_space(ch):
            self._end_word()
        else:
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.parts.append(ch)
        self.in_word = True

    def add_string(self, text: str) -> None:
        """add_char for each character of `text`."""
        pieces = _SPACE_RUN.split(text)
        for i, piece in enumerate(pieces):
            if i:
                self._end_word()  # white space between this piece and the one before
            if piece:
                self.add_raw_string(piece)

    def add_raw_string(self, text: str) -> None:
        if text:
            self.parts.append(text)
        self.in_word = True

    def finish(self) -> list[str]:
        if self.parts:
            self.words.append("".join(self.parts))
            self.parts = []
            self.in_word = False
        return self.words


@functools.lru_cache(maxsize=64)
def _plain_run(specials: str) -> re.Pattern[str]:
    """A run of characters none of which is in `specials`."""
    return re.compile("[^" + "".join(re.escape(c) for c in specials) + "]+")


class _Lexer:
    """One pass over one word. Mirrors the structure of BuildKit's shellWord so its corner cases carry over."""

    def __init__(
        self,
        text: str,
        env: Mapping[str, str],
        escape: str,
        *,
        skip_quotes: bool,
        raw_quotes: bool,
        skip_unset: bool,
        matched: set[str],
        unmatched: set[str],
    ) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape
        self.skip_quotes = skip_quotes
        self.raw_quotes = raw_quotes
        self.skip_unset = skip_unset
        self.raw_escapes = False
        self.matched = matched
        self.unmatched = unmatched

    # -- scanner ---------------------------------------------------------------------------------------------
    def peek(self) -> str | None:
        return self.text[self.pos] if self.pos < len(self.text) else None

    def next(self) -> str | None:
        if self.pos >= len(self.text):
            return None
        ch = self.text[self.pos]
        self.pos += 1
        return ch

    # -- the grammar -----------------------------------------------------------------------------------------
    def process_stop_on(self, stop: str | None, raw_escapes: bool) -> tuple[str, list[str]]:
        saved = self.raw_escapes
        self.raw_escapes = raw_escapes
        try:
            return self._process_stop_on(stop)
        finally:
            self.raw_escapes = saved

    def _process_stop_on(self, stop: str | None) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        specials = "$" + self.escape + ("" if self.skip_quotes else "'\"") + (stop or "")
        plain = _plain_run(specials).match
        text = self.text
        while (ch := self.peek()) is not None:
            if ch not in specials:
                m = plain(text, self.pos)
                assert m is not None
                self.pos = m.end()
                result.append(m.group())
                words.add_string(m.group())
                continue
            if stop is not None and ch == stop:
                self.next()
                return "".join(result), words.finish()
            if ch == "$":
                tmp = self.process_dollar()
                result.append(tmp)
                words.add_string(tmp)  # white space a variable produces splits words
            elif ch in "'\"" and not self.skip_quotes:
                tmp = self.process_single_quote() if ch == "'" else self.process_double_quote()
                result.append(tmp)
                words.add_raw_string(tmp)
            else:
                self.next()
                if ch == self.escape:
                    if self.raw_escapes:
                        words.add_raw_char(ch)
                        result.append(ch)
                    escaped = self.next()
                    if escaped is None:
                        break  # a trailing escape character is dropped
                    ch = escaped
                    words.add_raw_char(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        if stop is not None:
            raise _ExpandError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.finish()

    def process_single_quote(self) -> str:
        # Everything up to the next ' is literal; a ' cannot be escaped inside.
        start = self.pos  # at the opening quote
        end = self.text.find("'", start + 1)
        if end < 0:
            self.pos = len(self.text)
            raise _ExpandError("unexpected end of statement while looking for matching single-quote")
        self.pos = end + 1
        return self.text[start : end + 1] if self.raw_quotes else self.text[start + 1 : end]

    def process_double_quote(self) -> str:
        # Literal except $ (expanded) and the escape character, which escapes only " $ and itself.
        result: list[str] = []
        quote = self.next()
        if self.raw_quotes and quote:
            result.append(quote)
        specials = '"$' + self.escape
        plain = _plain_run(specials).match
        while True:
            ch = self.peek()
            if ch is None:
                raise _ExpandError("unexpected end of statement while looking for matching double-quote")
            if ch not in specials:
                m = plain(self.text, self.pos)
                assert m is not None
                self.pos = m.end()
                result.append(m.group())
                continue
            if ch == '"':
                self.next()
                if self.raw_quotes:
                    result.append(ch)
                return "".join(result)
            if ch == "$":
                result.append(self.process_dollar())
                continue
            self.next()
            if ch == self.escape:
                if self.raw_escapes:
                    result.append(ch)
                following = self.peek()
                if following is None:
                    continue  # the unterminated quote is reported on the next turn
                if following in ('"', "$", self.escape):
                    self.next()
                    ch = following
            result.append(ch)

    def process_name(self) -> str:
        name: list[str] = []
        while (ch := self.peek()) is not None:
            if not name and _is_digit(ch):
                while (d := self.peek()) is not None and _is_digit(d):
                    self.next()
                    name.append(d)
                return "".join(name)
            if not name and ch in _SPECIAL_PARAMS:
                self.next()
                return ch
            if ch.isascii():
                m = _ASCII_NAME_RUN.match(self.text, self.pos)  # the ASCII name characters, at once
                if m is None:
                    break
                name.append(m.group())
                self.pos = m.end()
                continue
            if not _is_name_char(ch):
                break
            self.next()
            name.append(ch)
        return "".join(name)

    def get_env(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            self.matched.add(name)
            return self.env[name], True
        self.unmatched.add(name)
        return "", False

    def process_dollar(self) -> str:
        self.next()  # the $
        if self.peek() != "{":
            name = self.process_name()
            if not name:
                return "$"
            value, found = self.get_env(name)
            if not found and self.skip_unset:
                return "$" + name
            return value

        self.next()  # the {
        first = self.peek()
        if first is None:
            raise _ExpandError("syntax error: missing '}'")
        if first in "{}:":
            raise _ExpandError("syntax error: bad substitution")
        name = self.process_name()
        ch = self.next()
        if ch is None:
            raise _ExpandError("syntax error: missing '}'")
        if ch == "}":
            value, found = self.get_env(name)
            if not found and self.skip_unset:
                return "${" + name + "}"
            return value
        if ch == "/":
            return self._substitute(name)

        modifier = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            nxt = self.next()
            modifier += nxt or ""
            ch = nxt or ""
        elif ch not in "+-?#%":
            raise _ExpandError(f"unsupported modifier ({modifier}) in substitution")

        word = self._read_until_brace(raw_escapes=ch in ("#", "%"))
        value, found = self.get_env(name)
        if self.skip_unset and not found:
            return "${" + name + modifier + word + "}"
        empty = not found or (null_is_unset and value == "")
        if ch == "-":
            return word if empty else value
        if ch == "+":
            return "" if empty else word
        if ch == "?":
            if not found:
                raise _ExpandError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise _ExpandError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if ch in ("#", "%"):
            # one # or % trims the shortest match, two trim the longest
            greedy = word.startswith(ch)
            if greedy:
                word = word[1:]
            return _trim_suffix(word, value, greedy) if ch == "%" else _trim_prefix(word, value, greedy)
        raise _ExpandError(f"unsupported modifier ({modifier}) in substitution")

    def _read_until_brace(self, raw_escapes: bool) -> str:
        try:
            word, _ = self.process_stop_on("}", raw_escapes)
        except _ExpandError:
            if self.peek() is None:
                raise _ExpandError("syntax error: missing '}'") from None
            raise
        return word

    def _substitute(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        try:
            pattern, _ = self.process_stop_on("/", True)
        except _ExpandError:
            if self.peek() is None:
                raise _ExpandError("syntax error: missing '/' in ${}") from None
            raise
        replacement = self._read_until_brace(raw_escapes=True)
        value, found = self.get_env(name)
        if self.skip_unset and not found:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        rx = _pattern_regex(pattern, greedy=True, anchored=False)
        if replace_all:
            return _replace_all(rx, value, replacement)
        m = rx.search(value)
        if m is None:
            return value
        return value[: m.start()] + replacement + value[m.end() :]


# -- patterns ------------------------------------------------------------------------------------------------
def _pattern_regex(pattern: str, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell wildcard pattern (``*``, ``?``, backslash escapes; no brackets) as a regular expression."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        tok = pattern[i]
        i += 1
        if tok == "*":
            out.append(star)
        elif tok == "?":
            out.append(".")
        elif tok == "\\":
            nxt = pattern[i] if i < len(pattern) else None
            if nxt in ("}", "/"):
                continue  # the escape only kept } or / from ending the ${...}; it is not part of the pattern
            if nxt not in ("*", "?", "\\"):
                shown = nxt if nxt is not None else ""
                raise _ExpandError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{shown}'")
            out.append("\\" + nxt)
            i += 1
        elif tok in _REGEX_SPECIAL:
            out.append("\\" + tok)
        else:
            out.append(re.escape(tok))
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _pattern_regex(pattern, greedy, anchored=True).search(value)
    return value[m.end() :] if m else value


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern keeping each escape before the character it escapes (a\\*c -> c\\*a)."""
    out = [""] * len(pattern)
    last = len(pattern) - 1
    i = 0
    while i <= last:
        tok = pattern[i]
        idx = last - i
        if tok == "\\" and i != last:
            out[idx - 1] = tok
            out[idx] = pattern[i + 1]
            i += 2
        else:
            out[idx] = tok
            i += 1
    return "".join(out)


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # The shortest rightmost match is the shortest leftmost match of the reversed pattern in the reversed value.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


def _replace_all(rx: re.Pattern[str], value: str, template: str) -> str:
    """Go's Regexp.ReplaceAllString: an empty match right after a match is skipped (Python's re.sub differs)."""
    out: list[str] = []
    last_end = 0
    search = 0
    while search <= len(value):
        m = rx.search(value, search)
        if m is None:
            break
        out.append(value[last_end : m.start()])
        if m.end() > last_end or m.start() == 0:
            out.append(_go_template(template, m.group(0)))
        last_end = m.end()
        search = search + 1 if search + 1 > m.end() else m.end()
    out.append(value[last_end:])
    return "".join(out)


def _go_template(template: str, whole: str) -> str:
    """Go's Regexp.Expand for a pattern without groups: $0/${0} is the match, other $names are empty."""
    out: list[str] = []
    pos = 0
    while (dollar := template.find("$", pos)) >= 0:
        out.append(template[pos:dollar])
        if template.startswith("$", dollar + 1):
            out.append("$")
            pos = dollar + 2
            continue
        parsed = _go_template_name(template, dollar + 1)
        if parsed is None:
            out.append("$")
            pos = dollar + 1
            continue
        name, pos = parsed
        if name == "0":
            out.append(whole)
    out.append(template[pos:])
    return "".join(out)


def _go_template_name(text: str, pos: int) -> tuple[str, int] | None:
    """The name after a $ at `pos` ($name or ${name}) and where the text goes on, or None when there is none."""
    brace = text.startswith("{", pos)
    start = pos + 1 if brace else pos
    i = start
    while i < len(text) and _is_name_char(text[i]):
        i += 1
    if i == start:
        return None
    name = text[start:i]
    if brace:
        if i >= len(text) or text[i] != "}":
            return None
        i += 1
    return name, i


# -- public API ----------------------------------------------------------------------------------------------
class Expander:
    """Expands words against one environment (the WordExpander of kiln.dockerfile.instructions).

    ``matched`` and ``unmatched`` collect the variable names looked up so far, found or not: the planner uses
    them to tell which build arguments a line used. Errors are DockerfileError without a line; the caller,
    which knows the instruction, locates them.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        escape: str = "\\",
        *,
        skip_quotes: bool = False,
        raw_quotes: bool = False,
        skip_unset: bool = False,
    ) -> None:
        if len(escape) != 1:
            raise ValueError(f"escape must be one character, not {escape!r}")
        self.env = env
        self.escape = escape
        self.skip_quotes = skip_quotes
        self.raw_quotes = raw_quotes
        self.skip_unset = skip_unset
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    def _run(self, text: str) -> tuple[str, list[str]]:
        lexer = _Lexer(
            text,
            self.env,
            self.escape,
            skip_quotes=self.skip_quotes,
            raw_quotes=self.raw_quotes,
            skip_unset=self.skip_unset,
            matched=self.matched,
            unmatched=self.unmatched,
        )
        try:
            return lexer.process_stop_on(None, False)
        except _ExpandError as e:
            raise DockerfileError(f'failed to process "{text}": {e}') from None

    def _is_plain(self, s: str) -> bool:
        # Nothing to expand, unquote or unescape: the word is itself (most words of most Dockerfiles).
        return "$" not in s and "'" not in s and '"' not in s and self.escape not in s

    def word(self, s: str) -> str:
        """One word: quotes removed, escapes applied, variables expanded (BuildKit's ProcessWord)."""
        if self._is_plain(s):
            return s
        return self._run(s)[0]

    def words(self, s: str) -> list[str]:
        """The expansion split into words (BuildKit's ProcessWords)."""
        if self._is_plain(s):
            return [w for w in _SPACE_RUN.split(s) if w]
        return self._run(s)[1]


def expand_word(s: str, env: Mapping[str, str], escape: str = "\\") -> str:
    return Expander(env, escape).word(s)


def expand_words(s: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    return Expander(env, escape).words(s)


