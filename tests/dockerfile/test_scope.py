"""ARG/ENV scoping, built from instruction objects. Expected values follow the Dockerfile reference's
"Using ARG variables" / "Scope" sections and BuildKit's dispatcher, worked out by hand."""

from __future__ import annotations

import pytest

from kiln.dockerfile.instructions import Arg, Env, Instruction, Workdir
from kiln.dockerfile.scope import (
    DEFAULT_PATH,
    StageScope,
    platform_args,
    proxy_env,
    resolve_global_args,
)
from kiln.errors import DockerfileError
from kiln.oci.platform import Platform


def arg(*pairs: tuple[str, str | None], line: int = 1) -> Arg:
    return Arg(line, line, "ARG ...", tuple(pairs))


def env(*pairs: tuple[str, str], line: int = 1) -> Env:
    return Env(line, line, "ENV ...", tuple(pairs))


def show(scope: StageScope, word: str, line: int = 1) -> str:
    """What a WORKDIR with ``word`` expands to in the scope right now."""
    out = scope.apply(Workdir(line, line, "WORKDIR " + word, word))
    assert isinstance(out, Workdir)
    return out.path


def stage(global_args: dict[str, str] | None = None, build_args: dict[str, str] | None = None,
          base_env: dict[str, str] | None = None, **kw: object) -> StageScope:
    return StageScope(global_args or {}, build_args or {}, base_env=base_env or {}, **kw)  # type: ignore[arg-type]


def test_global_arg_needs_redeclaring_in_stage() -> None:
    g = resolve_global_args([arg(("V", "1"))], {}, {})
    s = stage(dict(g.values))
    assert show(s, "v=${V-unset}") == "v=unset"
    resolved = s.apply(arg(("V", None)))
    assert isinstance(resolved, Arg) and resolved.pairs == (("V", "1"),)
    assert show(s, "v=$V") == "v=1"


def test_build_arg_overrides_global_default_and_stage_redeclaration_takes_it() -> None:
    g = resolve_global_args([arg(("V", "1"))], {"V": "2"}, {})
    assert g.values["V"] == "2"
    assert g.used_build_args == {"V"}
    s = stage(dict(g.values), {"V": "2"})
    s.apply(arg(("V", None)))
    assert show(s, "$V") == "2"


def test_global_defaults_see_earlier_globals_pair_by_pair() -> None:
    g = resolve_global_args([arg(("A", "1"), ("B", "$A-x")), arg(("C", "${B}${NOPE:-y}"))], {}, {})
    assert dict(g.values) == {"A": "1", "B": "1-x", "C": "1-xy"}
    assert g.resolved[0].pairs == (("A", "1"), ("B", "1-x"))


def test_global_arg_without_value_is_not_set() -> None:
    g = resolve_global_args([arg(("A", None))], {}, {})
    assert "A" not in g.values
    s = stage(dict(g.values))
    s.apply(arg(("A", None)))
    assert show(s, "${A-unset}") == "unset"


def test_stage_arg_visible_from_its_line_on() -> None:
    s = stage()
    assert show(s, "/$X") == "/"
    s.apply(arg(("X", "a")))
    assert show(s, "/$X") == "/a"


def test_build_arg_overrides_stage_default_only_where_declared() -> None:
    s = stage(build_args={"X": "b", "OTHER": "o"})
    assert show(s, "$X$OTHER") == ""
    s.apply(arg(("X", "a")))
    assert show(s, "$X$OTHER") == "b"
    assert s.used_build_args == {"X"}


def test_stage_arg_pairs_see_each_other() -> None:
    # Each ARG pair is dispatched on its own in BuildKit: B sees the A of the same line.
    s = stage()
    out = s.apply(arg(("A", "1"), ("B", "${A}2")))
    assert isinstance(out, Arg) and out.pairs == (("A", "1"), ("B", "12"))


def test_env_pairs_see_the_old_values() -> None:
    s = stage(base_env={"a": "0"})
    out = s.apply(env(("a", "1"), ("b", "$a")))
    assert isinstance(out, Env) and out.pairs == (("a", "1"), ("b", "0"))
    assert show(s, "$a$b") == "10"


def test_env_after_arg_wins_reference_example() -> None:
    # ARG CONT_IMG_VER / ENV CONT_IMG_VER=v1.0.0 / RUN echo $CONT_IMG_VER  -> v1.0.0 even with --build-arg
    s = stage(build_args={"CONT_IMG_VER": "v2.0.1"})
    s.apply(arg(("CONT_IMG_VER", None)))
    s.apply(env(("CONT_IMG_VER", "v1.0.0")))
    assert s.run_env()["CONT_IMG_VER"] == "v1.0.0"
    assert s.env["CONT_IMG_VER"] == "v1.0.0"


@pytest.mark.parametrize(("build_args", "expected"), [({"CONT_IMG_VER": "v2.0.1"}, "v2.0.1"), ({}, "v1.0.0")])
def test_env_from_arg_with_default_reference_example(build_args: dict[str, str], expected: str) -> None:
    s = stage(build_args=build_args)
    s.apply(arg(("CONT_IMG_VER", None)))
    s.apply(env(("CONT_IMG_VER", "${CONT_IMG_VER:-v1.0.0}")))
    assert s.env["CONT_IMG_VER"] == expected


def test_arg_after_env_wins_in_build_but_not_in_image() -> None:
    # BuildKit keeps one environment: a later ARG with a value replaces a base image's (or earlier) ENV there.
    s = stage(build_args={"DEBIAN_FRONTEND": "noninteractive"}, base_env={"DEBIAN_FRONTEND": "teletype"})
    s.apply(arg(("DEBIAN_FRONTEND", None)))
    assert s.run_env()["DEBIAN_FRONTEND"] == "noninteractive"
    assert s.env["DEBIAN_FRONTEND"] == "teletype"
    # Without a value (no default, no build arg) the ARG does not touch the ENV.
    s2 = stage(base_env={"HELLO": "World"})
    s2.apply(arg(("HELLO", None)))
    assert s2.run_env()["HELLO"] == "World"


def test_arg_empty_default_is_set_but_empty() -> None:
    s = stage()
    s.apply(arg(("E", ""), ("U", None)))
    assert show(s, "${E-unset}|${U-unset}|${E:-empty}") == "|unset|empty"
    assert "E" in s.run_env() and "U" not in s.run_env()


def test_child_stage_inherits_args_and_env_unrelated_does_not() -> None:
    parent = stage(build_args={"P": "from-cli"})
    parent.apply(arg(("LOCAL_ARG", "local"), ("P", None)))
    parent.apply(env(("LOCAL_ENV", "true")))
    child = StageScope({}, {"P": "from-cli"}, parent=parent)
    assert show(child, "$LOCAL_ARG $LOCAL_ENV $P") == "local true from-cli"
    assert child.env["LOCAL_ENV"] == "true" and "LOCAL_ARG" not in child.env
    assert child.run_history_args() == ["LOCAL_ARG=local", "P=from-cli"]
    unrelated = stage(build_args={"P": "from-cli"})
    assert show(unrelated, "$LOCAL_ARG$LOCAL_ENV$P") == ""
    # The child is a copy: changing it leaves the parent alone.
    child.apply(env(("LOCAL_ENV", "false")))
    assert parent.env["LOCAL_ENV"] == "true"


def test_platform_args() -> None:
    target = Platform("linux", "arm", "v7")
    build = Platform("linux", "amd64")
    pa = platform_args(target, build)
    assert pa == {
        "TARGETPLATFORM": "linux/arm/v7",
        "TARGETOS": "linux",
        "TARGETARCH": "arm",
        "TARGETVARIANT": "v7",
        "BUILDPLATFORM": "linux/amd64",
        "BUILDOS": "linux",
        "BUILDARCH": "amd64",
        "BUILDVARIANT": "",
    }
    g = resolve_global_args([], {}, pa)
    assert g.values["TARGETARCH"] == "arm"  # automatic in the global scope (FROM lines)
    s = StageScope(dict(g.values), {}, pa, base_env={})
    assert show(s, "${TARGETARCH-unset}") == "unset"  # not in a stage until declared
    s.apply(arg(("TARGETARCH", None), ("BUILDPLATFORM", None)))
    assert show(s, "$TARGETARCH on $BUILDPLATFORM") == "arm on linux/amd64"


def test_platform_arg_declared_in_stage_without_globals_passed() -> None:
    # platform_args alone suffice: a stage scope given only them still resolves `ARG TARGETOS`.
    s = StageScope({}, {}, platform_args(Platform("linux", "amd64"), Platform("linux", "amd64")), base_env={})
    s.apply(arg(("TARGETOS", None)))
    assert show(s, "$TARGETOS") == "linux"


def test_proxy_args_reach_run_without_declaration_nor_history() -> None:
    s = stage(build_args={"http_proxy": "http://p:3128", "NO_PROXY": "localhost", "OTHER": "x"})
    s.apply(arg(("A", "1")))
    run_env = s.run_env()
    assert run_env["HTTP_PROXY"] == run_env["http_proxy"] == "http://p:3128"
    assert run_env["NO_PROXY"] == run_env["no_proxy"] == "localhost"
    assert "OTHER" not in run_env
    assert show(s, "${http_proxy-unset}") == "unset"  # not for expansion
    assert s.run_history_args() == ["A=1"]
    assert "http_proxy" not in s.env


def test_declared_proxy_arg_is_recorded() -> None:
    s = stage(build_args={"HTTP_PROXY": "http://p"})
    s.apply(arg(("HTTP_PROXY", None)))
    assert s.run_history_args() == ["HTTP_PROXY=http://p"]


def test_proxy_env_case_and_empty() -> None:
    assert proxy_env({"Https_Proxy": "h", "ftp_proxy": ""}) == {"HTTPS_PROXY": "h", "https_proxy": "h"}


def test_run_history_args_follow_env() -> None:
    s = stage()
    s.apply(arg(("A", "1"), ("B", None)))
    s.apply(env(("A", "2")))
    assert s.run_history_args() == ["A=2", "B="]


def test_default_path() -> None:
    assert stage().env == {"PATH": DEFAULT_PATH}
    assert stage(base_env={"PATH": "/bin"}).env == {"PATH": "/bin"}
    assert StageScope({}, {}, base_env={}, default_path=None).env == {}


def test_expansion_errors_are_located() -> None:
    s = stage(path="sub/Dockerfile")
    with pytest.raises(DockerfileError) as err:
        show(s, "${X:?X is required}", line=7)
    assert err.value.line == 7 and err.value.path == "sub/Dockerfile"
    assert "X: X is required" in str(err.value)
    with pytest.raises(DockerfileError) as err2:
        s.apply(arg(("Y", "${Z?}"), line=9))
    assert err2.value.line == 9


def test_stage_arg_name_is_expanded_in_the_scope_at_that_point() -> None:
    # ENV name=foo then ARG ${name}=default declares foo (BuildKit's ArgCommand.Expand, kaniko, buildah).
    s = stage(build_args={"foo": "x"})
    s.apply(env(("name", "foo")))
    out = s.apply(arg(("${name}", "default")))
    assert isinstance(out, Arg) and out.pairs == (("foo", "x"),)
    assert s.used_build_args == {"foo"}
    assert show(s, "$foo") == "x"
    assert "${name}" not in s.run_env()


def test_stage_arg_name_and_default_use_earlier_pairs() -> None:
    s = stage()
    s.apply(env(("name", "foo")))
    out = s.apply(arg(("${name}", "d-$name"), ("n2", "bar"), ("${n2}_x", "${foo}"), ('"q"', None)))
    assert isinstance(out, Arg)
    assert out.pairs == (("foo", "d-foo"), ("n2", "bar"), ("bar_x", "d-foo"), ("q", None))
    assert s.run_history_args() == ["foo=d-foo", "n2=bar", "bar_x=d-foo", "q="]


def test_stage_arg_bare_name_is_expanded_before_the_global_lookup() -> None:
    s = stage({"G": "global"})
    s.apply(env(("which", "G")))
    out = s.apply(arg(("$which", None)))
    assert isinstance(out, Arg) and out.pairs == (("G", "global"),)


def test_stage_arg_name_expanding_to_nothing_is_an_error() -> None:
    s = stage()
    with pytest.raises(DockerfileError, match="ARG names can not be blank") as err:
        s.apply(arg(("${unset}", "x"), line=4))
    assert err.value.line == 4


def test_global_arg_errors_are_located() -> None:
    with pytest.raises(DockerfileError) as err:
        resolve_global_args([arg(("A", "${B:?}"), line=3)], {}, {})
    assert err.value.line == 3


def test_other_instructions_pass_through_apply_all() -> None:
    s = stage()
    instrs: list[Instruction] = [arg(("D", "/srv")), Workdir(2, 2, "WORKDIR $D/app", "$D/app")]
    out = s.apply_all(instrs)
    assert isinstance(out[1], Workdir) and out[1].path == "/srv/app"
