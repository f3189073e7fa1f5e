"""The stage graph and the build plan, from hand-built instructions (line N is the N-th instruction)."""

from __future__ import annotations

import pytest
from dockerfile_builders import arg, copy, env, frm, numbered, onbuild, run, workdir

from kiln.dockerfile.instructions import Copy, Instruction, Workdir
from kiln.dockerfile.plan import expand_plan, onbuild_instructions, plan_build, with_onbuild
from kiln.errors import DockerfileError
from kiln.oci.platform import Platform

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")


def plan(df, build_args=None, target=None, target_platform=AMD64, build_platform=AMD64):  # type: ignore[no-untyped-def]
    return plan_build(df, build_args or {}, target, target_platform, build_platform)


def test_single_stage() -> None:
    p = plan(numbered(frm("alpine:3.20"), run("true")))
    assert p.target == 0
    assert [s.index for s in p.stages] == [0]
    st = p.stages[0]
    assert (st.base_image, st.base_stage, st.platform, st.deps) == ("alpine:3.20", None, AMD64, ())
    assert p.waves == ((0,),)
    assert st.label == "stage-0"


def test_default_target_is_last_and_unused_stages_dropped() -> None:
    df = numbered(
        frm("golang", "build"),  # 1
        run("go build"),  # 2
        frm("alpine", "unused"),  # 3
        frm("debian", "final"),  # 4
        copy("/out", "/bin/", from_="build"),  # 5
    )
    p = plan(df)
    assert p.target == 2
    assert [s.index for s in p.stages] == [0, 2]
    assert p.stage(2).deps == (0,)
    assert p.waves == ((0,), (2,))
    assert p.all_stage_names == ("build", "unused", "final")


def test_target_by_name_is_case_insensitive() -> None:
    df = numbered(frm("golang", "Build"), frm("alpine", "final"))
    p = plan(df, target="BUILD")
    assert p.target == 0 and [s.index for s in p.stages] == [0]
    assert p.stages[0].name == "build"


def test_unknown_target_names_the_stages() -> None:
    df = numbered(frm("golang", "build"), frm("alpine", "final"))
    with pytest.raises(DockerfileError, match='target stage "nope" could not be found; stages: build, final'):
        plan(df, target="nope")


def test_independent_stages_share_a_wave() -> None:
    df = numbered(
        frm("golang", "a"),
        frm("node", "b"),
        frm("busybox", "c"),  # independent of a and b but not needed by final
        frm("a", "a2"),
        frm("debian"),
        copy("/x", "/x", from_="a2"),
        copy("/y", "/y", from_="1"),
    )
    p = plan(df)
    assert [s.index for s in p.stages] == [0, 1, 3, 4]
    assert p.stage(3).base_stage == 0 and p.stage(3).deps == (0,)
    assert p.stage(4).deps == (1, 3)
    assert p.waves == ((0, 1), (3,), (4,))


def test_from_stage_inherits_platform_and_triggers() -> None:
    df = numbered(
        frm("golang", "base", platform="$BUILDPLATFORM"),  # 1
        onbuild(copy(".", "/src")),  # 2
        onbuild(copy("/tool", "/tool", from_="tools")),  # 3
        frm("base", "child", platform="linux/s390x"),  # 4
        run("make"),  # 5
        frm("busybox", "tools"),  # 6: defined after the child that (through the trigger) copies from it
    )
    with pytest.raises(DockerfileError) as err:
        plan(df, target_platform=ARM64)
    assert err.value.line == 4  # the trigger runs (and fails) at the child's FROM line

    df_ok = numbered(
        frm("busybox", "tools"),  # 1
        frm("golang", "base", platform="$BUILDPLATFORM"),  # 2
        onbuild(copy(".", "/src")),  # 3
        onbuild(copy("/tool", "/tool", from_="tools")),  # 4
        frm("base", "child"),  # 5
        run("make"),  # 6
    )
    p = plan(df_ok, target_platform=ARM64)
    child = p.stage(2)
    assert child.platform == AMD64  # BUILDPLATFORM of the base stage, not the target platform
    assert child.onbuild_count == 2
    assert [type(i).__name__ for i in child.instructions] == ["Copy", "Copy", "Run"]
    assert [i.line for i in child.instructions] == [5, 5, 6]
    assert child.deps == (0, 1)
    assert p.waves == ((0, 1), (2,))


def test_copy_from_image_and_index() -> None:
    df = numbered(
        frm("golang", "build"),
        frm("alpine"),
        copy("/a", "/a", from_="0"),
        copy("/b", "/b", from_="nginx:1.27"),
        copy("/c", "/c", from_="BUILD"),
    )
    st = plan(df).stage(1)
    assert st.deps == (0,)
    assert st.images == ("nginx:1.27",)


@pytest.mark.parametrize(
    ("instrs", "line", "message"),
    [
        ((frm("alpine"), copy("/a", "/a", from_="5")), 2, "invalid stage index 5"),
        ((frm("alpine"), copy("/a", "/a", from_="1"), frm("busybox")), 2, "defined after"),
        ((frm("alpine"), copy("/a", "/a", from_="later"), frm("busybox", "later")), 2, "defined after"),
        ((frm("alpine", "self"), copy("/a", "/a", from_="self")), 2, "circular dependency"),
        ((frm("alpine", "self"), copy("/a", "/a", from_="0")), 2, "circular dependency"),
        ((frm("alpine"), copy("/a", "/a", from_="$STAGE")), 2, "variable expansion is not supported"),
        ((frm("alpine"), run("ls", ["type=bind,from=later,target=/x"]), frm("busybox", "later")), 2, "defined after"),
        ((frm("alpine", "x"), frm("busybox", "X")), 2, "duplicate stage name"),
        ((arg(("A", "1")), run("true"), frm("alpine")), 2, "no build stage"),
        ((arg(("E", "")), frm("${E}")), 2, "should not be blank"),
        ((frm("alpine", platform="${NOPE}")), 1, "empty platform"),
        ((frm("alpine", platform="linux/amd64/v1/x")), 1, "failed to parse platform"),
        ((frm("${X:?need X}")), 1, "need X"),
    ],
)
def test_graph_errors(instrs: tuple[Instruction, ...] | Instruction, line: int, message: str) -> None:
    if not isinstance(instrs, tuple):
        instrs = (instrs,)
    with pytest.raises(DockerfileError, match=message) as err:
        plan(numbered(*instrs))
    assert err.value.line == line


def test_no_from() -> None:
    with pytest.raises(DockerfileError, match="no stages"):
        plan(numbered(arg(("A", "1"))))


def test_run_mounts() -> None:
    df = numbered(
        frm("golang", "deps"),
        frm("alpine"),
        run("ls", ["type=bind,from=deps,target=/deps", "type=cache,target=/root/.cache",
                   "type=tmpfs,target=/tmp", "type=bind,from=0,target=/zero", "from=busybox,target=/bb"]),
    )
    st = plan(df).stage(1)
    assert st.deps == (0,)
    # A mount's from= is looked up by name only (BuildKit): "0" is an image reference.
    assert st.images == ("0", "busybox")


def test_from_expanded_with_global_args_only() -> None:
    df = numbered(
        arg(("TAG", "1.22"), ("REG", None)),
        frm("golang:${TAG}${REG:+-$REG}", "build"),
        arg(("TAG", "9")),  # a stage ARG: never seen by FROM lines
        frm("alpine:${TAG}"),
        frm("img-$TARGETARCH", platform="$TARGETPLATFORM"),
    )
    p = plan(df, target="build")
    assert p.stage(0).base_image == "golang:1.22"
    p = plan(df, build_args={"TAG": "1.23", "REG": "alpine"}, target="build")
    assert p.stage(0).base_image == "golang:1.23-alpine"
    p = plan(df, target_platform=ARM64)
    assert p.stage(2).base_image == "img-arm64" and p.stage(2).platform == ARM64
    assert p.stage(2).from_.platform == "linux/arm64"


def test_from_own_name_is_an_image() -> None:
    p = plan(numbered(frm("node", "node"), run("npm ci")))
    assert (p.stages[0].base_image, p.stages[0].base_stage) == ("node", None)


def test_unused_build_args() -> None:
    df = numbered(arg(("G", "1")), frm("alpine"), arg(("S", None)))
    p = plan(df, build_args={"G": "x", "S": "y", "NOPE": "z", "HTTP_PROXY": "p"})
    assert p.unused_build_args() == ["NOPE", "S"]
    scopes_used = frozenset({"S"})
    assert p.unused_build_args([scopes_used]) == ["NOPE"]


def test_expand_plan_chains_scopes() -> None:
    df = numbered(
        arg(("VERSION", "1.0")),
        frm("alpine", "base"),
        arg(("VERSION", None)),
        env(("APP", "/opt/app-$VERSION")),
        frm("base", "final"),
        workdir("$APP/bin"),
        copy("app-${VERSION}.tar", "$APP/"),
    )
    expanded = expand_plan(plan(df, build_args={"VERSION": "2.0"}))
    wd, cp = expanded[1]
    assert isinstance(wd, Workdir) and wd.path == "/opt/app-2.0/bin"
    assert isinstance(cp, Copy) and cp.sources == ("app-2.0.tar",) and cp.dest == "/opt/app-2.0/"


def test_expand_plan_with_base_env() -> None:
    df = numbered(frm("golang"), workdir("$GOPATH/src"))
    out = expand_plan(plan(df), base_env=lambda st: {"GOPATH": "/go"} if st.base_image == "golang" else {})
    assert isinstance(out[0][0], Workdir) and out[0][0].path == "/go/src"


def fake_parse(text: str, path: str, line: int) -> Instruction:
    keyword, _, rest = text.partition(" ")
    if keyword == "COPY":
        src, dest = rest.split()
        c = copy(src, dest)
        return c
    if keyword == "FROM":
        return frm(rest)
    raise DockerfileError(f"unknown instruction: {keyword}", path, line)


def test_onbuild_instructions_of_base_image() -> None:
    df = numbered(frm("onbuild-image"), run("make"))
    p = plan(df)
    at = p.stage(0).from_
    triggers = onbuild_instructions(["COPY . /src"], "onbuild-image", at, fake_parse)
    assert [i.line for i in triggers] == [1]
    st = with_onbuild(p, p.stage(0), triggers)
    assert st.onbuild_count == 1
    assert [type(i).__name__ for i in st.instructions] == ["Copy", "Run"]
    with pytest.raises(DockerfileError, match="onbuild-image.*unknown instruction: BOGUS") as err:
        onbuild_instructions(["BOGUS x"], "onbuild-image", at, fake_parse)
    assert err.value.line == 1
    with pytest.raises(DockerfileError, match="FROM is not allowed"):
        onbuild_instructions(["FROM x"], "onbuild-image", at, fake_parse)
