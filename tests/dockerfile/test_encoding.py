"""Dockerfiles that are not UTF-8. BuildKit reads the file as bytes and builds it: a Latin-1 comment is
ignored, and every byte that is not valid UTF-8 comes out as one U+FFFD wherever the text ends up (words,
JSON arrays, the image config), as Go's rune decoding and JSON encoder produce it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from kiln.dockerfile import Cmd, Env, ExecCommand, Label, Run, ShellCommand, lex, parse_dockerfile
from kiln.dockerfile.lexer import go_text
from kiln.engine.engine import _dockerfile_text
from kiln.engine.options import BuildOptions
from kiln.errors import DockerfileError

LATIN1 = (
    b"FROM scratch\n# caf\xe9 cr\xe8me\nLABEL a=caf\xe9\nENV k caf\xe9 au lait\nRUN echo caf\xe9\n"
    b'CMD ["caf\xe9"]\n'
)


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, tuple | list):
        return [s for v in value for s in _strings(v)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [s for f in dataclasses.fields(value) for s in _strings(getattr(value, f.name))]
    return []


def test_latin1_comment_is_ignored() -> None:
    df = parse_dockerfile(b"FROM scratch\n# caf\xe9\nRUN true\n")
    assert [(i.keyword, i.line) for i in df.instructions] == [("FROM", 1), ("RUN", 3)]


def test_invalid_bytes_become_one_replacement_character_each() -> None:
    df = parse_dockerfile(LATIN1)
    label, env, run, cmd = df.instructions[1:]
    assert isinstance(label, Label) and label.pairs == (("a", "caf\ufffd"),)
    assert isinstance(env, Env) and env.pairs == (("k", "caf\ufffd au lait"),)
    assert isinstance(run, Run) and run.command == ShellCommand("echo caf\ufffd")
    assert isinstance(cmd, Cmd) and cmd.command == ExecCommand(("caf\ufffd",))
    # A truncated sequence is one U+FFFD per byte (Go's DecodeRune), not one per sequence.
    (label2,) = parse_dockerfile(b"FROM scratch\nLABEL a=\xe2\x82!\n").instructions[1:]
    assert isinstance(label2, Label) and label2.pairs == (("a", "\ufffd\ufffd!"),)


def test_everything_parsed_encodes_as_utf8_for_the_image_config() -> None:
    df = parse_dockerfile(LATIN1)
    for s in _strings(df.instructions):
        s.encode("utf-8")  # a lone surrogate would raise here, as in the config's canonical JSON
    json.dumps(_strings(df.instructions), ensure_ascii=False).encode("utf-8")


def test_surrogateescape_text_is_the_same_as_bytes() -> None:
    text = LATIN1.decode("utf-8", "surrogateescape")
    assert parse_dockerfile(text) == parse_dockerfile(LATIN1)
    assert go_text("a\udce9b") == "a\ufffdb"
    assert go_text("valid caf\u00e9 \U0001f600") == "valid caf\u00e9 \U0001f600"


def test_json_escapes_of_lone_surrogates_become_replacement_characters() -> None:
    (_, n) = lex('FROM a\nCMD ["\\udce9", "\\ud83d\\ude00", "\\ud800x"]\n')[1]
    assert n.json and n.args == ("\ufffd", "\U0001f600", "\ufffdx")


def test_errors_after_invalid_bytes_name_the_line() -> None:
    with pytest.raises(DockerfileError) as e:
        parse_dockerfile(b"FROM scratch\n# caf\xe9\nLABEL caf\xe9\n", "sub/Dockerfile")
    assert (e.value.path, e.value.line) == ("sub/Dockerfile", 3)
    assert "Dockerfile:3" in str(e.value)


def test_crlf_bytes_lex_as_buildkit_does() -> None:
    # Read as bytes, \r\n is not translated: BuildKit keeps the \r of heredoc body lines, drops it elsewhere.
    _, nodes, _ = lex(b"FROM a\r\nRUN <<EOF\r\necho hi\r\nEOF\r\nLABEL a=b\r\n")
    assert nodes[1].heredocs[0].content == "echo hi\r\n"
    assert nodes[2].args == ("a", "b")


def test_engine_reads_the_dockerfile_as_bytes(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_bytes(LATIN1)
    text, name, found = _dockerfile_text(BuildOptions(dockerfile=str(path)), None)
    assert (name, found) == (str(path), path)
    assert parse_dockerfile(text, name) == parse_dockerfile(LATIN1, name)
