"""Big inputs, and the linear scanners against the character-by-character loops they replace.

The lexer and the word expander take runs of ordinary characters with regular expressions instead of one
character at a time, and build words from lists of pieces: parsing is linear in the size of the Dockerfile.
These tests check only that the results are right, on big inputs and against straight transliterations of
BuildKit's loops (the code kiln had before). Speed is measured in bench/, never here.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.dockerfile import expand, lexer
from kiln.dockerfile.expand import Expander
from kiln.dockerfile.graph import waves
from kiln.dockerfile.instructions import Env, Label, Run, ShellCommand
from kiln.dockerfile.lexer import first_word, lex, parse_words
from kiln.dockerfile.parse import parse_dockerfile
from kiln.dockerfile.plan import expand_plan, plan_build
from kiln.errors import DockerfileError
from kiln.oci.platform import Platform

AMD64 = Platform("linux", "amd64")
MB = 1_000_000

# ------------------------------------------------------------------------------------------ big inputs


def test_one_megabyte_label_value() -> None:
    value = "v" * MB
    df = parse_dockerfile("FROM scratch\nLABEL k=" + value + "\n")
    (label,) = expand_plan(plan_build(df, {}, None, AMD64, AMD64))[0]
    assert isinstance(label, Label) and label.pairs == (("k", value),)


def test_one_megabyte_words_that_need_work() -> None:
    quoted = "a b\\\" c " * (MB // 8)
    text = f'FROM scratch\nARG A=x\nENV q="{quoted}" s=\'{quoted}\' d={"$A" * 1000}\n'
    (_, env) = expand_plan(plan_build(parse_dockerfile(text), {}, None, AMD64, AMD64))[0]
    assert isinstance(env, Env)
    assert env.pairs == (("q", quoted.replace('\\"', '"')), ("s", quoted), ("d", "x" * 1000))


def test_hundred_thousand_short_instructions() -> None:
    n = 100_000
    text = "FROM scratch\n" + "".join(f"LABEL k{i}=v{i}\n" if i % 2 else f"RUN echo {i}\n" for i in range(n))
    df = parse_dockerfile(text)
    assert len(df.instructions) == n + 1
    assert [i.line for i in df.instructions] == list(range(1, n + 2))
    out = expand_plan(plan_build(df, {}, None, AMD64, AMD64))[0]
    assert len(out) == n
    last = out[-1]
    assert isinstance(last, Label) and last.pairs == ((f"k{n - 1}", f"v{n - 1}"),) and last.line == n + 1
    assert isinstance(out[-2], Run) and out[-2].command == ShellCommand(f"echo {n - 2}")


def test_long_continuations_heredocs_and_flags() -> None:
    n = 50_000
    text = (
        "FROM scratch\nRUN echo \\\n" + "  a \\\n" * n + "  end\n"
        "RUN <<EOF\n" + "echo hi\n" * n + "EOF\n"
        "COPY --chown=" + "u" * MB + " a b\n"
    )
    _, nodes, _ = lex(text)
    assert nodes[1].args == ("echo " + "  a " * n + "  end",)
    assert (nodes[1].start_line, nodes[1].end_line) == (2, n + 3)
    assert nodes[2].heredocs[0].content == "echo hi\n" * n
    assert nodes[3].flags == ("--chown=" + "u" * MB,)


def test_a_long_chain_of_stages() -> None:
    n = 5_000
    text = "FROM scratch AS s0\n" + "".join(f"FROM s{i - 1} AS s{i}\nLABEL a{i}=b\n" for i in range(1, n))
    plan = plan_build(parse_dockerfile(text), {}, None, AMD64, AMD64)
    assert plan.waves == tuple((i,) for i in range(n))
    assert len(expand_plan(plan)) == n


def test_waves_layers_and_cycles() -> None:
    assert waves([0, 1, 2, 3], {1: [0], 2: [0], 3: [1, 2, 9]}) == [[0], [1, 2], [3]]
    assert waves([3, 1], {3: [1, 1]}) == [[1], [3]]
    with pytest.raises(DockerfileError, match=re.escape("circular dependency between stages [0, 1]")):
        waves([0, 1, 2], {0: [1], 1: [0]})
    with pytest.raises(DockerfileError, match=re.escape("circular dependency between stages [0]")):
        waves([0, 1], {0: [0]})


# ------------------------------------------------------------------------------------------ white space


def test_go_white_space_sets() -> None:
    go = {chr(c) for c in range(0x110000) if chr(c).isspace() and chr(c) not in "\x1c\x1d\x1e\x1f"}
    assert set(lexer._GO_SPACES) == go
    assert {chr(c) for c in range(0x3001) if expand._SPACE_RUN.fullmatch(chr(c))} == go


# ------------------------------------------------------------------------------------------ references


def ref_parse_words(rest: str, escape: str) -> list[str]:
    """BuildKit's parseWords, one character at a time."""
    words: list[str] = []
    word: list[str] = []
    in_word = blank_ok = False
    quote = ""
    i, n = 0, len(rest)
    while i < n:
        c = rest[i]
        if not in_word:
            if c in lexer._GO_SPACES:
                i += 1
                continue
            in_word = True
        if not quote:
            if c in lexer._GO_SPACES:
                if blank_ok or word:
                    words.append("".join(word))
                word, blank_ok, in_word = [], False, False
                i += 1
                continue
            if c in ("'", '"'):
                quote, blank_ok = c, True
            if c == escape:
                if i + 1 == n:
                    i += 1
                    continue
                word.append(c)
                i += 1
                c = rest[i]
            word.append(c)
            i += 1
            continue
        if c == quote:
            quote = ""
        if c == escape and quote != "'":
            if i + 1 == n:
                quote = ""
                i += 1
                continue
            word.append(c)
            i += 1
            c = rest[i]
        word.append(c)
        i += 1
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


def ref_extract_flags(line: str) -> tuple[str, tuple[str, ...]]:
    """BuildKit's extractBuilderFlags (on characters), one character at a time."""
    words: list[str] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in lexer._GO_SPACES:
            i += 1
        if i >= n:
            return "", tuple(words)
        if not line.startswith("--", i):
            return line[i:], tuple(words)
        word: list[str] = []
        blank_ok = False
        quote = ""
        while i < n:
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
            if c in lexer._GO_SPACES:
                break
            if c in ("'", '"'):
                quote, blank_ok = c, True
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


def ref_shell_words_raw(line: str) -> list[str] | None:
    words: list[str] = []
    word: list[str] = []
    in_word = False
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in " \t\r\n":
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
            i += 1
            continue
        in_word = True
        if c == "\\":
            word.append(line[i : i + 2])
            i += 2
            continue
        if c in ("'", '"'):
            end = i + 1
            while end < n and line[end] != c:
                end += 2 if c == '"' and line[end] == "\\" else 1
            if end >= n:
                return None
            word.append(line[i : end + 1])
            i = end + 1
            continue
        word.append(c)
        i += 1
    if in_word:
        words.append("".join(word))
    return words


_OLD_DIRECTIVE = re.compile(r"^#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*$", re.S)


def ref_continuation(line: str, escape: str) -> tuple[str, bool]:
    e = re.escape(escape)
    m = re.search(rf"([^{e}]){e}[ \t]*$|^{e}[ \t]*$", line)
    if m is None:
        return line, True
    return line[: m.start()] + (m.group(1) or ""), False


TRICKY = st.text(alphabet=" \t\u3000\u2003\\`\"'=-#$abc\n", max_size=30)


@settings(max_examples=500)
@given(text=TRICKY, escape=st.sampled_from(["\\", "`"]))
def test_parse_words_as_buildkit(text: str, escape: str) -> None:
    words = ref_parse_words(text, escape)
    assert parse_words(text, escape) == words
    assert first_word(text, escape) == (words[0] if words else None)


@settings(max_examples=500)
@given(text=st.text(alphabet=" \t\u3000\\\"'=-ab", max_size=30))
def test_extract_flags_as_buildkit(text: str) -> None:
    assert lexer._extract_flags(text) == ref_extract_flags(text)


@settings(max_examples=500)
@given(text=st.text(alphabet=" \t\r\n\\\"'<-ab", max_size=30))
def test_shell_words_as_before(text: str) -> None:
    assert lexer._shell_words_raw(text) == ref_shell_words_raw(text)


@settings(max_examples=500)
@given(text=st.text(alphabet="# \t\r\f\n=aZ9_x", max_size=20))
def test_directives_as_buildkit(text: str) -> None:
    m = _OLD_DIRECTIVE.match(text)
    assert lexer._directive(text) == (None if m is None else (m.group(1), m.group(2)))


@settings(max_examples=500)
@given(text=st.text(alphabet=" \t\\`a", max_size=12), escape=st.sampled_from(["\\", "`"]))
def test_continuation_as_buildkit(text: str, escape: str) -> None:
    state = lexer._DirectiveState()
    state.escape = escape
    assert state.trim_continuation(text) == ref_continuation(text, escape)


@settings(max_examples=300)
@given(text=st.text(alphabet=" \t\u3000\u2003ab_{}:-`", max_size=25))
def test_plain_word_shortcut_matches_the_lexer(text: str) -> None:
    ex = Expander({"a": "1 2", "ab": "x"})
    assert ex.word(text) == ex._run(text)[0]
    assert ex.words(text) == ex._run(text)[1]
