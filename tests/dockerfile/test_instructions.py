"""Typed instructions: what each instruction accepts (Dockerfile reference), its warnings, and where
expand() expands. The expander here is a small stand-in ($NAME / ${NAME} and quote removal) so these tests
check *which* fields are expanded, not the expansion rules (those are E's tests)."""

from __future__ import annotations

import re

import pytest

from kiln.dockerfile import (
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    ExecCommand,
    Expose,
    From,
    Healthcheck,
    Instruction,
    Label,
    Maintainer,
    Mount,
    Onbuild,
    PortSpec,
    Run,
    Shell,
    ShellCommand,
    StopSignal,
    User,
    Volume,
    Workdir,
    parse_dockerfile,
    parse_instruction_text,
)
from kiln.dockerfile.flags import Chmod
from kiln.engine.steps.metadata import DEFAULT_SHELL, command_argv
from kiln.errors import DockerfileError


class FakeExpander:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def word(self, s: str) -> str:
        s = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.env.get(m.group(1) or m.group(2), ""), s)
        return s.replace('"', "").replace("'", "")

    def words(self, s: str) -> list[str]:
        return self.word(s).split()


EX = FakeExpander(
    {"V": "val", "PORT": "8080", "PORTS": "80 443/udp", "SIG": "SIGINT", "DIR": "/srv", "MODE": "750", "U": "app"}
)


def one(text: str) -> Instruction:
    return parse_dockerfile("FROM scratch\n" + text + "\n").instructions[1]


def error(text: str) -> DockerfileError:
    with pytest.raises(DockerfileError) as e:
        parse_dockerfile("FROM scratch\n" + text + "\n")
    return e.value


# ------------------------------------------------------------------------------------------ FROM


def test_from() -> None:
    df = parse_dockerfile("FROM --platform=linux/arm64 alpine:3 AS Build\nFROM build\n")
    first, second = df.instructions
    assert first == From(
        line=1,
        end_line=1,
        original="FROM --platform=linux/arm64 alpine:3 AS Build",
        image="alpine:3",
        name="build",
        platform="linux/arm64",
    )
    assert isinstance(second, From) and (second.name, second.platform) == (None, None)
    assert any("should be lowercase" in w.message for w in df.warnings)


def test_from_expand_platform_and_image() -> None:
    f = parse_dockerfile("FROM --platform=$V img:${V}\n").instructions[0]
    assert f.expand(EX) == From(line=1, end_line=1, original=f.original, image="img:val", name=None, platform="val")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM", "either one or three"),
        ("FROM a b", "either one or three"),
        ("FROM a AS 1x", "invalid name"),
        ("FROM a AS b c", "either one or three"),
        ("FROM --pull a", "unknown flag: pull"),
    ],
)
def test_from_errors(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message) as e:
        parse_dockerfile(text + "\n")
    assert e.value.line == 1 and str(e.value).startswith("Dockerfile:1: ")


def test_from_as_casing_warning() -> None:
    df = parse_dockerfile("FROM a as b\n")
    assert any("casing" in w.message for w in df.warnings)
    assert not parse_dockerfile("FROM a AS b\nfrom c as d\n").warnings


# ------------------------------------------------------------------------------------------ RUN


def test_run_forms_and_flags() -> None:
    run = one("RUN --mount=type=cache,target=/c --mount=type=secret,id=s --network=none --security=insecure make")
    assert isinstance(run, Run)
    assert run.command == ShellCommand("make")
    assert run.mount_specs == ("type=cache,target=/c", "type=secret,id=s")
    assert (run.network, run.security, run.mounts) == ("none", "insecure", ())
    assert one('RUN ["a", "b"]') == Run(
        line=2,
        end_line=2,
        original='RUN ["a", "b"]',
        command=ExecCommand(("a", "b")),
        heredocs=(),
        mount_specs=(),
        network=None,
        security=None,
    )


def test_run_expand_parses_mounts_but_not_the_command() -> None:
    run = one("RUN --mount=type=cache,target=$DIR,id=$V echo $V")
    assert isinstance(run, Run)
    expanded = run.expand(EX)
    assert expanded.mounts == (Mount(type="cache", target="/srv", id="val", readonly=False),)
    assert expanded.command == ShellCommand("echo $V")


def test_run_bad_mount_is_reported_at_expand_with_the_line() -> None:
    run = one("RUN --mount=type=nope,target=/x true")
    with pytest.raises(DockerfileError, match="unsupported mount type") as e:
        run.expand(EX)
    assert e.value.line == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("RUN --network=bridge x", "unsupported network mode"),
        ("RUN --security=root x", "unsupported security"),
        ("RUN --mount x", "missing a value on flag: mount"),
        ("RUN --from=a x", "unknown flag: from"),
        ("RUN --network=none --network=host x", "duplicate flag"),
    ],
)
def test_run_flag_errors(text: str, message: str) -> None:
    e = error(text)
    assert message in e.msg and e.line == 2


def test_run_heredoc() -> None:
    run = one("RUN <<EOF bash\necho $V\nEOF")
    assert isinstance(run, Run)
    assert run.command == ShellCommand("<<EOF bash")
    assert run.heredocs[0].content == "echo $V\n" and run.end_line == 4


# ------------------------------------------------------------------------------------------ CMD ENTRYPOINT SHELL


def test_cmd_entrypoint_shell() -> None:
    assert one('CMD ["a"]') == Cmd(line=2, end_line=2, original='CMD ["a"]', command=ExecCommand(("a",)))
    assert isinstance(e := one("ENTRYPOINT exec app"), Entrypoint) and e.command == ShellCommand("exec app")
    assert isinstance(e := one("ENTRYPOINT []"), Entrypoint) and e.command == ExecCommand(())
    assert isinstance(s := one('SHELL ["/bin/bash", "-c"]'), Shell) and s.argv == ("/bin/bash", "-c")
    assert one("CMD echo $V").expand(EX) == one("CMD echo $V")  # never expanded by the builder
    assert "JSON form" in error("SHELL /bin/bash -c").msg
    assert "at least one argument" in error("SHELL []").msg


def test_text_after_a_json_array_is_shell_form() -> None:
    # BuildKit takes the JSON form only when the whole rest of the line is the array.
    e = one('ENTRYPOINT ["/bin/echo"] # a comment')
    assert isinstance(e, Entrypoint) and e.command == ShellCommand('["/bin/echo"] # a comment')
    assert command_argv(e.command, DEFAULT_SHELL) == ("/bin/sh", "-c", '["/bin/echo"] # a comment')
    assert isinstance(c := one("CMD []random string"), Cmd) and c.command == ShellCommand("[]random string")
    r = one('RUN ["echo","hi"]junk')
    assert isinstance(r, Run) and r.command == ShellCommand('["echo","hi"]junk')
    assert command_argv(r.command, DEFAULT_SHELL) == ("/bin/sh", "-c", '["echo","hi"]junk')
    assert "JSON form" in error('SHELL ["/bin/bash", "-c"] # comment').msg


# ------------------------------------------------------------------------------------------ COPY ADD


def test_copy_all_flags() -> None:
    c = one("COPY --from=build --chown=app:app --chmod=u+x --link --parents --exclude=*.md --exclude=tmp a b /dst/")
    assert isinstance(c, Copy)
    assert (c.sources, c.dest, c.from_, c.chown, c.chmod) == (("a", "b"), "/dst/", "build", "app:app", "u+x")
    assert (c.link, c.parents, c.excludes, c.heredocs) == (True, True, ("*.md", "tmp"), ())


def test_copy_expand() -> None:
    c = one('COPY --from=$V --chown=$U --chmod=$MODE --exclude=$V "$DIR/a" ${DIR}/b $DIR/')
    assert isinstance(c, Copy)
    x = c.expand(EX)
    assert (x.sources, x.dest, x.from_, x.chown, x.chmod, x.excludes) == (
        ("/srv/a", "/srv/b"),
        "/srv/",
        "val",
        "app",
        "750",
        ("val",),
    )
    assert x.mode == Chmod(octal=0o750, symbolic=None)


def test_copy_bad_chmod_at_expand() -> None:
    c = one("COPY --chmod=8888 a b")
    with pytest.raises(DockerfileError, match="invalid chmod") as e:
        c.expand(EX)
    assert e.value.line == 2


def test_copy_heredoc_sources_are_heredocs_not_paths() -> None:
    c = one("COPY <<one <<two a /dst/\n1\none\n2\ntwo")
    assert isinstance(c, Copy)
    assert c.sources == ("a",) and [h.name for h in c.heredocs] == ["one", "two"]
    assert [h.content for h in c.heredocs] == ["1\n", "2\n"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("COPY a", "requires at least two arguments"),
        ("COPY --checksum=x a b", "unknown flag: checksum"),
        ("COPY a <<EOF\nx\nEOF", "heredoc as a destination"),
        ("ADD --from=x a b", "unknown flag: from"),
        ("ADD --parents a b", "unknown flag: parents"),
        ("COPY --link=maybe a b", "expecting boolean"),
    ],
)
def test_copy_add_errors(text: str, message: str) -> None:
    assert message in error(text).msg


def test_add_all_flags() -> None:
    a = one(
        "ADD --chown=1:2 --chmod=644 --link --checksum=sha256:abc --keep-git-dir --unpack=false "
        "--exclude=x https://e.com/a.tgz /opt/"
    )
    assert a == Add(
        line=2,
        end_line=2,
        original=a.original,
        sources=("https://e.com/a.tgz",),
        dest="/opt/",
        chown="1:2",
        chmod="644",
        link=True,
        excludes=("x",),
        heredocs=(),
        checksum="sha256:abc",
        keep_git_dir=True,
        unpack=False,
    )
    assert isinstance(d := one("ADD a b"), Add) and d.unpack is None and d.keep_git_dir is False


def test_add_checksum_checked_at_expand() -> None:
    assert isinstance(a := one("ADD --checksum=sha256:$V u /"), Add)
    assert a.expand(FakeExpander({"V": "ab" * 32})).checksum == "sha256:" + "ab" * 32
    with pytest.raises(DockerfileError, match="checksum"):
        a.expand(FakeExpander({"V": "not hex!"}))


# ------------------------------------------------------------------------------------------ ENV LABEL ARG


def test_env_forms_and_legacy_warning() -> None:
    df = parse_dockerfile('FROM a\nENV A=1 B="two words"\nENV C three words\n')
    new, legacy = df.instructions[1:]
    assert isinstance(new, Env) and new.pairs == (("A", "1"), ("B", '"two words"'))
    assert isinstance(legacy, Env) and legacy.pairs == (("C", "three words"),)
    assert [w.line for w in df.warnings if "legacy" in w.message] == [3]


def test_env_expand_uses_one_scope_for_all_pairs() -> None:
    env = one("ENV $V=${V}x OTHER=$V")
    assert isinstance(env, Env)
    assert env.expand(EX).pairs == (("val", "valx"), ("OTHER", "val"))


def test_label() -> None:
    df = parse_dockerfile("FROM a\nLABEL \"a b\"=c d='e f'\nLABEL legacy value\n")
    label = df.instructions[1]
    assert isinstance(label, Label) and label.expand(EX).pairs == (("a b", "c"), ("d", "e f"))
    assert any(w.line == 3 and "legacy" in w.message for w in df.warnings)
    assert "at least one argument" in error("LABEL").msg


def test_arg() -> None:
    arg = one('ARG A B=2 C="x y" D=')
    assert isinstance(arg, Arg)
    assert arg.pairs == (("A", None), ("B", "2"), ("C", '"x y"'), ("D", ""))
    assert arg.expand(EX).pairs == (("A", None), ("B", "2"), ("C", "x y"), ("D", ""))
    assert "ARG names can not be blank" in error("ARG =x").msg
    assert "at least one argument" in error("ARG").msg


def test_global_args_before_from() -> None:
    df = parse_dockerfile("ARG BASE=alpine\nFROM $BASE\n")
    assert isinstance(df.instructions[0], Arg) and isinstance(df.instructions[1], From)


# ------------------------------------------------------------------------------------------ small ones


def test_workdir_user_volume_stopsignal_expose() -> None:
    assert isinstance(w := one("WORKDIR $DIR/x"), Workdir) and w.expand(EX).path == "/srv/x"
    assert isinstance(u := one("USER $U:$U"), User) and u.expand(EX).user == "app:app"
    assert isinstance(v := one("VOLUME $DIR /b"), Volume) and v.expand(EX).paths == ("/srv", "/b")
    assert isinstance(v := one('VOLUME ["/a", "/b c"]'), Volume) and v.paths == ("/a", "/b c")
    assert isinstance(s := one("STOPSIGNAL $SIG"), StopSignal) and s.expand(EX).signal == "SIGINT"
    assert isinstance(e := one("EXPOSE $PORTS ${PORT}/tcp 9000-9001"), Expose)
    x = e.expand(EX)
    assert x.ports == ("80", "443/udp", "8080/tcp", "9000-9001")
    assert x.parsed == (
        PortSpec(80, 80, "tcp"),
        PortSpec(443, 443, "udp"),
        PortSpec(8080, 8080, "tcp"),
        PortSpec(9000, 9001, "tcp"),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("WORKDIR", "exactly one argument"),
        ("USER", "exactly one argument"),
        ("VOLUME", "at least one"),
        ('VOLUME [""]', "can not be an empty string"),
        ("EXPOSE", "at least one"),
        ("STOPSIGNAL", "exactly one"),
        ("ENV --x=1 a=b", "unknown flag: x"),
        ("BOGUS x", "unknown instruction: BOGUS"),
    ],
)
def test_small_errors(text: str, message: str) -> None:
    assert message in error(text).msg


def test_bad_values_at_expand() -> None:
    with pytest.raises(DockerfileError, match="Invalid signal"):
        one("STOPSIGNAL SIGNOPE").expand(EX)
    with pytest.raises(DockerfileError, match="invalid proto"):
        one("EXPOSE 80/icmp").expand(EX)
    with pytest.raises(DockerfileError, match="empty string"):
        one("VOLUME $EMPTY").expand(EX)


def test_maintainer_is_deprecated() -> None:
    df = parse_dockerfile("FROM a\nMAINTAINER Jane Doe <j@example.com>\n")
    assert isinstance(m := df.instructions[1], Maintainer) and m.name == "Jane Doe <j@example.com>"
    assert any("deprecated" in w.message for w in df.warnings)


# ------------------------------------------------------------------------------------------ HEALTHCHECK


def test_healthcheck_forms() -> None:
    h = one(
        "HEALTHCHECK --interval=1m30s --timeout=10s --start-period=5s --start-interval=500ms --retries=3 "
        "CMD curl -f http://x/ || exit 1"
    )
    assert isinstance(h, Healthcheck)
    assert h.test == ("CMD-SHELL", "curl -f http://x/ || exit 1")
    assert (h.interval, h.timeout, h.start_period, h.start_interval, h.retries) == (90.0, 10.0, 5.0, 0.5, 3)
    assert isinstance(j := one('HEALTHCHECK CMD ["/check", "-v"]'), Healthcheck) and j.test == ("CMD", "/check", "-v")
    assert isinstance(n := one("HEALTHCHECK NONE"), Healthcheck) and n.test is None
    assert isinstance(d := one("healthcheck cmd true"), Healthcheck) and d.interval is None and d.retries is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("HEALTHCHECK", "at least one"),
        ("HEALTHCHECK NONE x", "takes no arguments"),
        ("HEALTHCHECK CMD", "Missing command"),
        ("HEALTHCHECK RUN x", "Unknown type"),
        ("HEALTHCHECK --interval=5 CMD x", "missing unit"),
        ("HEALTHCHECK --retries=-1 CMD x", "cannot be negative"),
        ("HEALTHCHECK --retries=x CMD x", "invalid syntax"),
        ("HEALTHCHECK --timeout=10us CMD x", "less than 1ms"),
        ("HEALTHCHECK --period=1s CMD x", "unknown flag: period"),
    ],
)
def test_healthcheck_errors(text: str, message: str) -> None:
    assert message in error(text).msg


# ------------------------------------------------------------------------------------------ ONBUILD


def test_onbuild() -> None:
    o = one("ONBUILD   COPY --from=x a b")
    assert isinstance(o, Onbuild)
    assert isinstance(o.trigger, Copy) and o.trigger.from_ == "x"
    assert o.text == "COPY --from=x a b"


def test_onbuild_heredoc_text_keeps_the_body_as_buildkit_stores_it() -> None:
    o = one("ONBUILD RUN <<-EOF\n\techo hi\n\tEOF")
    assert isinstance(o, Onbuild) and isinstance(o.trigger, Run)
    assert o.trigger.heredocs[0].content == "echo hi\n"
    assert o.text == "RUN <<-EOF\n\techo hi\nEOF"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD"),
        ("ONBUILD FROM x", "FROM isn't allowed"),
        ("ONBUILD MAINTAINER me", "MAINTAINER isn't allowed"),
        ("ONBUILD", "at least one argument"),
        ("ONBUILD RUN --bad x", "unknown flag: bad"),
    ],
)
def test_onbuild_errors(text: str, message: str) -> None:
    assert message in error(text).msg


def test_parse_instruction_text_for_stored_triggers() -> None:
    run = parse_instruction_text("RUN <<EOF\necho $V\nEOF", "base-image ONBUILD", 7)
    assert isinstance(run, Run) and run.line == 7 and run.heredocs[0].content == "echo $V\n"
    copy = parse_instruction_text("COPY . /app", "x", 3)
    assert isinstance(copy, Copy) and copy.sources == (".",)
    with pytest.raises(DockerfileError) as e:
        parse_instruction_text("RUN --nope x", "base:ONBUILD", 4)
    assert (e.value.path, e.value.line) == ("base:ONBUILD", 4)


# ------------------------------------------------------------------------------------------ whole files


def test_unsupported_syntax_warns_and_goes_on() -> None:
    df = parse_dockerfile("# syntax=example.com/frontend:2\nFROM a\n")
    assert df.directives.syntax == "example.com/frontend:2"
    assert any("unsupported syntax" in w.message for w in df.warnings)
    assert not parse_dockerfile("# syntax=docker.io/docker/dockerfile:1-labs\nFROM a\n").warnings


def test_error_path_and_line() -> None:
    with pytest.raises(DockerfileError) as e:
        parse_dockerfile("FROM a\n\nRUN a \\\n  b\nCOPY x\n", "build/Dockerfile.dev")
    assert str(e.value) == (
        "build/Dockerfile.dev:5: COPY requires at least two arguments, but only one was provided. "
        "Destination could not be determined"
    )


# ------------------------------------------------------------------------------------------ checks


def test_json_args_recommended_for_shell_form_cmd_and_entrypoint() -> None:
    df = parse_dockerfile('FROM a\nCMD run it\nENTRYPOINT ["x"]\nENTRYPOINT exec x\n')
    assert [(w.line, w.rule) for w in df.warnings] == [(2, "JSONArgsRecommended"), (4, "JSONArgsRecommended")]


def test_check_skip_drops_rule_warnings() -> None:
    text = "FROM a as B\nENV k v\nMAINTAINER me\n"
    rules = {w.rule for w in parse_dockerfile(text).warnings}
    assert rules == {"FromAsCasing", "StageNameCasing", "LegacyKeyValueFormat", "MaintainerDeprecated"}
    df = parse_dockerfile("# check=skip=LegacyKeyValueFormat,FromAsCasing\n" + text)
    assert {w.rule for w in df.warnings} == {"StageNameCasing", "MaintainerDeprecated"}
    assert parse_dockerfile("# check=skip=all\n" + text).warnings == ()


def test_check_error_makes_warnings_fatal() -> None:
    with pytest.raises(DockerfileError, match="LegacyKeyValueFormat") as e:
        parse_dockerfile("# check=error=true\nFROM a\nENV k v\n")
    assert e.value.line == 3
    assert parse_dockerfile("# check=error=true;skip=LegacyKeyValueFormat\nFROM a\nENV k v\n").instructions


def test_json_args_not_recommended_under_a_custom_shell() -> None:
    df = parse_dockerfile('FROM a AS s\nSHELL ["/bin/bash", "-c"]\nCMD x\nFROM s\nCMD y\nFROM b\nCMD z\n')
    assert [w.line for w in df.warnings if w.rule == "JSONArgsRecommended"] == [7]
