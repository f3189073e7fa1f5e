"""The lexer: directives, continuations, comments, JSON vs shell form, flags, heredocs.

Expected values come from the Dockerfile reference and BuildKit's parser rules (cited per test), not from
kiln's output.
"""

from __future__ import annotations

import pytest

from kiln.dockerfile.lexer import Heredoc, lex, parse_words, split_line, syntax_supported
from kiln.errors import DockerfileError


def nodes(text: str):  # type: ignore[no-untyped-def]
    return lex(text)[1]


# ------------------------------------------------------------------------------------------ directives


def test_directives_at_top_are_read() -> None:
    d, ns, _ = lex(
        "# syntax=docker/dockerfile:1.7\n# escape=`\n"
        "# check=skip=JSONArgsRecommended,StageNameCasing;error=true\nFROM a\n"
    )
    assert d.syntax == "docker/dockerfile:1.7"
    assert d.escape == "`"
    assert d.check_skip == ("JSONArgsRecommended", "StageNameCasing")
    assert d.check_error is True
    assert [n.keyword for n in ns] == ["from"]


def test_directive_keys_are_case_insensitive_and_spaced() -> None:
    d, _, _ = lex("#   ESCAPE   =   `   \nFROM a\n")
    assert d.escape == "`"


@pytest.mark.parametrize(
    "prefix",
    [
        "FROM a\n",  # after an instruction
        "# just a comment\n",  # after a comment
        "\n",  # after an empty line
        "# unknown=1\n",  # an unknown directive is a comment
    ],
)
def test_directive_not_at_top_is_a_comment(prefix: str) -> None:
    d, ns, _ = lex(prefix + "# escape=`\nFROM b\nRUN a \\\n b\n")
    assert d.escape == "\\"
    assert ns[-1].args == ("a  b",)


def test_duplicate_directive_is_an_error() -> None:
    with pytest.raises(DockerfileError, match="only one escape parser directive") as e:
        lex("# escape=\\\n# escape=`\nFROM a\n")
    assert e.value.line == 2


def test_bad_escape_token_is_an_error() -> None:
    with pytest.raises(DockerfileError, match="invalid escape token"):
        lex("# escape=x\nFROM a\n")


def test_bad_check_option_is_an_error() -> None:
    with pytest.raises(DockerfileError, match="check option"):
        lex("# check=whatever=1\nFROM a\n")


@pytest.mark.parametrize(
    ("syntax", "ok"),
    [
        ("docker/dockerfile:1", True),
        ("docker/dockerfile:1.7", True),
        ("docker/dockerfile:1.7.1", True),
        ("docker/dockerfile:1-labs", True),
        ("docker/dockerfile:1.7-labs", True),
        ("docker.io/docker/dockerfile:1", True),
        ("docker/dockerfile", True),
        ("docker/dockerfile:1@sha256:" + "a" * 64, True),
        ("docker/dockerfile:2", False),
        ("example.com/my/frontend:1", False),
        ("tonistiigi/dockerfile:runmount", False),
    ],
)
def test_syntax_support(syntax: str, ok: bool) -> None:
    assert syntax_supported(syntax) is ok


# ------------------------------------------------------------------------------------------ lines


def test_continuation_keeps_leading_space_of_next_line_and_drops_comments_and_blanks() -> None:
    (n,) = nodes("RUN a \\\n# comment\n\n   b \\\n  # indented comment\n\tc\n")
    assert n.args == ("a    b \tc",)
    assert (n.start_line, n.end_line) == (1, 6)


def test_empty_continuation_line_warns() -> None:
    _, _, warnings = lex("FROM a\nRUN a \\\n\n b\n")
    assert len(warnings) == 1 and warnings[0].line == 2


def test_escaped_escape_at_end_does_not_continue() -> None:
    ns = nodes("RUN echo \\\\\nRUN b\n")
    assert [n.args for n in ns] == [("echo \\\\",), ("b",)]


def test_continuation_allows_trailing_blanks() -> None:
    (n,) = nodes("RUN a \\ \t\nb\n")
    assert n.args == ("a b",)


def test_backtick_escape() -> None:
    ns = nodes("# escape=`\nFROM a\nRUN dir c:\\ `\n  /s\n")
    assert ns[1].args == ("dir c:\\   /s",)


def test_keywords_are_case_insensitive_and_lines_indented() -> None:
    ns = nodes("  from a AS b\n\tRuN echo\n")
    assert [n.keyword for n in ns] == ["from", "run"]
    assert ns[0].args == ("a", "AS", "b")


def test_comment_after_instruction_text_is_not_a_comment() -> None:
    (n,) = nodes("RUN echo a # b\n")
    assert n.args == ("echo a # b",)


def test_crlf_and_bom() -> None:
    ns = nodes("\ufeffFROM a\r\nRUN b \\\r\n c\r\n")
    assert [n.original for n in ns] == ["FROM a", "RUN b  c"]


def test_file_without_instructions() -> None:
    with pytest.raises(DockerfileError, match="no instructions"):
        lex("# only\n\n")


# ------------------------------------------------------------------------------------------ forms


@pytest.mark.parametrize(
    ("text", "args", "is_json"),
    [
        ('CMD ["a", "b c"]', ("a", "b c"), True),
        ('CMD [ "a" ]  ', ("a",), True),
        ("CMD []", (), True),
        ("CMD ['a']", ("['a']",), False),  # single quotes are not JSON
        ('CMD ["a",]', ('["a",]',), False),  # malformed JSON is shell form
        ('CMD ["a"', ('["a"',), False),
        # Text after the array makes the whole rest of the line shell form (BuildKit's json.Unmarshal).
        ('CMD ["a"] trailing', ('["a"] trailing',), False),
        ('ENTRYPOINT ["/bin/echo"] # a comment', ('["/bin/echo"] # a comment',), False),
        ("CMD []random string", ("[]random string",), False),
        ('RUN ["echo","hi"]junk', ('["echo","hi"]junk',), False),
        ('CMD ["a"] []', ('["a"] []',), False),
        ('CMD ["a", 1] x', ('["a", 1] x',), False),  # a syntax error first: shell form, not the string error
        ('CMD ["a", 1e999]', ('["a", 1e999]',), False),  # out of float64 range: Unmarshal fails
        ('CMD ["a"]\t ', ("a",), True),  # trailing blanks are trimmed before
        ('CMD ["\\u00e9\\t"]', ("\u00e9\t",), True),
        ("CMD echo hi", ("echo hi",), False),
        ("CMD", (), False),
    ],
)
def test_json_or_shell_form(text: str, args: tuple[str, ...], is_json: bool) -> None:
    (n,) = nodes(text + "\n")
    assert (n.args, n.json) == (args, is_json)


def test_json_with_non_strings_is_an_error() -> None:
    with pytest.raises(DockerfileError, match="comprised of strings only") as e:
        lex("FROM a\nCMD [1]\n")
    assert e.value.line == 2


def test_text_after_json_makes_list_instructions_words_too() -> None:
    ns = nodes('VOLUME ["/a"] /b\nCOPY ["a", "b"] c\nHEALTHCHECK CMD ["true"] || exit 1\nONBUILD RUN ["a"]b\n')
    assert (ns[0].args, ns[0].json) == (('["/a"]', "/b"), False)
    assert (ns[1].args, ns[1].json) == (('["a",', '"b"]', "c"), False)
    assert (ns[2].args, ns[2].json) == (("CMD", '["true"] || exit 1'), False)
    assert ns[3].sub is not None and (ns[3].sub.args, ns[3].sub.json) == (('["a"]b',), False)


def test_copy_and_volume_words() -> None:
    ns = nodes('COPY a  b\tc\nVOLUME ["/x" "/y"]\nVOLUME ["/x", "/y"]\n')
    assert ns[0].args == ("a", "b", "c")
    assert (ns[1].args, ns[1].json) == (('["/x"', '"/y"]'), False)
    assert (ns[2].args, ns[2].json) == (("/x", "/y"), True)


def test_env_and_label_pairs() -> None:
    ns = nodes('ENV a=1 b="x y" c\\ d=e\nENV k v w\nLABEL "x y"=z\n')
    assert ns[0].args == ("a", "1", "b", '"x y"', "c\\ d", "e")
    assert ns[1].args == ("k", "v w")
    assert ns[2].args == ('"x y"', "z")


@pytest.mark.parametrize(
    ("text", "message"),
    [("ENV a\n", "ENV must have two arguments"), ("LABEL a=1 b\n", 'can\'t find = in "b"')],
)
def test_bad_pairs(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message):
        lex(text)


def test_healthcheck_node() -> None:
    ns = nodes('HEALTHCHECK --interval=5s CMD ["a", "b"]\nHEALTHCHECK NONE\n')
    assert (ns[0].args, ns[0].json, ns[0].flags) == (("CMD", "a", "b"), True, ("--interval=5s",))
    assert ns[1].args == ("NONE",)


def test_onbuild_sub_node() -> None:
    (n,) = nodes("ONBUILD COPY --from=a x y\n")
    assert n.sub is not None and n.sub.keyword == "copy"
    assert n.args == ("x", "y") and n.sub.flags == ("--from=a",) and n.flags == ()


def test_unknown_instruction_keeps_an_empty_argument() -> None:
    (n,) = nodes("FOO bar\n")
    assert (n.keyword, n.args) == ("foo", ("",))


# ------------------------------------------------------------------------------------------ flags


@pytest.mark.parametrize(
    ("line", "flags", "rest"),
    [
        ("COPY --from=a --chown=1:1 x y", ("--from=a", "--chown=1:1"), "x y"),
        ('COPY --from="a b" x y', ("--from=a b",), "x y"),
        ("COPY --chown=1\\ 2 x", ("--chown=1 2",), "x"),
        ("COPY -- --x y", (), "--x y"),
        ("RUN --x --", ("--x",), ""),
        ("COPY -x y", (), "-x y"),
        ("RUN   --network=none    echo", ("--network=none",), "echo"),
    ],
)
def test_flag_words(line: str, flags: tuple[str, ...], rest: str) -> None:
    _, got_flags, got_rest = split_line(line)
    assert (got_flags, got_rest) == (flags, rest)


def test_parse_words_keeps_quotes_and_escapes() -> None:
    assert parse_words('a=\'b c\' d\\ e "f\\"g"', "\\") == ["a='b c'", "d\\ e", '"f\\"g"']
    assert parse_words("a` b", "`") == ["a` b"]


# ------------------------------------------------------------------------------------------ heredocs


def test_heredoc_body_lines_and_original() -> None:
    (n,) = nodes("RUN <<EOF\nline 1\n  line 2\nEOF\n")
    assert n.heredocs == (Heredoc("EOF", "line 1\n  line 2\n", True, False, None),)
    assert (n.start_line, n.end_line) == (1, 4)
    assert n.args == ("<<EOF",)
    assert n.original == "RUN <<EOF\nline 1\n  line 2\nEOF\n"


def test_heredoc_chomp_strips_leading_tabs_of_body_and_terminator() -> None:
    (n,) = nodes("RUN <<-EOF\n\tindented\n\t\tmore\n  spaces stay\n\tEOF\n")
    (h,) = n.heredocs
    assert h.content == "indented\nmore\n  spaces stay\n"
    assert h.chomp is True


def test_heredoc_without_chomp_needs_exact_terminator() -> None:
    (n,) = nodes("RUN <<EOF\n\tEOF\nEOF \nEOF\n")
    assert n.heredocs[0].content == "\tEOF\nEOF \n"


@pytest.mark.parametrize(
    ("opener", "name", "expand"),
    [
        ("<<EOF", "EOF", True),
        ("<<'EOF'", "EOF", False),
        ('<<"EOF"', "EOF", False),
        ('<<E"O"F', "EOF", False),
        ("<<\\EOF", "EOF", True),
    ],  # BuildKit counts quotes only: a backslash does not stop expansion
)
def test_heredoc_quoting(opener: str, name: str, expand: bool) -> None:
    (n,) = nodes(f"RUN {opener} cat\n$HOME\n{name}\n")
    (h,) = n.heredocs
    assert (h.name, h.expand, h.content) == (name, expand, "$HOME\n")


def test_several_heredocs_and_fd() -> None:
    n, _ = nodes("RUN 3<<A cat /dev/fd/3 && cat <<B\na\nA\nb\nB\nRUN x\n")
    assert [(h.name, h.fd, h.content) for h in n.heredocs] == [("A", 3, "a\n"), ("B", None, "b\n")]
    assert n.end_line == 5


@pytest.mark.parametrize(
    "text",
    [
        'RUN echo "<<EOF"\n',  # quoted: not a word of its own
        "RUN cat<<EOF\n",  # not a whole word
        'RUN ["cat", "<<EOF"]\n',  # exec form
        "CMD cat <<EOF\n",  # not RUN/COPY/ADD
    ],
)
def test_no_heredoc(text: str) -> None:
    (n,) = nodes(text)
    assert n.heredocs == () and n.end_line == 1


def test_heredoc_under_onbuild() -> None:
    (n,) = nodes("ONBUILD RUN <<EOF\nx\nEOF\n")
    assert n.sub is not None and n.sub.heredocs[0].content == "x\n"
    assert n.end_line == 3


def test_unterminated_heredoc() -> None:
    with pytest.raises(DockerfileError, match="unterminated heredoc") as e:
        lex("FROM a\nRUN <<EOF\nbody\n")
    assert e.value.line == 2
