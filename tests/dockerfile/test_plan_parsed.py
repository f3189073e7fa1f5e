"""Whole Dockerfiles through the parser, the planner and the scopes (expected values worked out by hand)."""

from __future__ import annotations

import pytest

from kiln.dockerfile.instructions import Arg, Copy, Env, Run, Workdir
from kiln.dockerfile.parse import parse_dockerfile
from kiln.dockerfile.plan import expand_plan, plan_build
from kiln.errors import DockerfileError
from kiln.oci.platform import Platform

AMD64 = Platform("linux", "amd64")
ARM7 = Platform("linux", "arm", "v7")


def test_build_variables_doc_example() -> None:
    # The scoping example of docs.docker.com/build/building/variables.
    text = """\
ARG GLOBAL_ARG="global default value"
ARG VERSION="3.19"
FROM alpine:${VERSION} AS stage-a
ARG GLOBAL_ARG
ARG LOCAL_ARG="local arg in stage-a"
ENV LOCAL_ENV=true
ENV MY_VAR=$LOCAL_ARG
WORKDIR /$GLOBAL_ARG

FROM --platform=$BUILDPLATFORM alpine:${VERSION} AS stage-b
WORKDIR /x${GLOBAL_ARG}${LOCAL_ARG}

FROM stage-a AS stage-c
WORKDIR /$LOCAL_ARG/$LOCAL_ENV/${TARGETPLATFORM:-undeclared}
ARG TARGETPLATFORM
WORKDIR /$TARGETPLATFORM
"""
    p = plan_build(parse_dockerfile(text), {}, "stage-c", ARM7, AMD64)
    assert [s.index for s in p.stages] == [0, 2]
    assert p.stage(0).base_image == "alpine:3.19"
    out = expand_plan(p)
    a = out[0]
    assert isinstance(a[3], Env) and a[3].pairs == (("MY_VAR", "local arg in stage-a"),)
    assert isinstance(a[4], Workdir) and a[4].path == "/global default value"
    c = out[2]
    assert isinstance(c[0], Workdir) and c[0].path == "/local arg in stage-a/true/undeclared"
    assert isinstance(c[2], Workdir) and c[2].path == "/linux/arm/v7"

    p_b = plan_build(parse_dockerfile(text), {}, "stage-b", ARM7, AMD64)
    assert p_b.stage(1).platform == AMD64
    wd = expand_plan(p_b)[1][0]
    assert isinstance(wd, Workdir) and wd.path == "/x"


def test_env_old_values_and_arg_chaining_from_text() -> None:
    text = """\
FROM scratch
ARG A=1 B=${A}2
ENV A=x C=$A
COPY $A$B$C /dst/
"""
    out = expand_plan(plan_build(parse_dockerfile(text), {}, None, AMD64, AMD64))[0]
    cp = out[2]
    assert isinstance(cp, Copy) and cp.sources == ("x121",)


def test_build_arg_override_and_unused() -> None:
    text = """\
ARG BASE=alpine
FROM ${BASE}:3.20
ARG PKG=curl
RUN apk add $PKG
"""
    p = plan_build(parse_dockerfile(text), {"BASE": "debian", "PKG": "wget", "EXTRA": "1"}, None, AMD64, AMD64)
    assert p.stages[0].base_image == "debian:3.20"
    scope = p.scope(p.stages[0])
    steps = scope.apply_all(p.stages[0].instructions)
    run = steps[1]
    assert isinstance(run, Run)
    assert scope.run_env()["PKG"] == "wget"
    assert scope.run_history_args() == ["PKG=wget"]
    assert p.unused_build_args([scope.used_build_args]) == ["EXTRA"]


def test_arg_name_from_env_consumes_the_build_arg() -> None:
    text = "FROM alpine\nENV name=foo\nARG ${name}=default\nRUN echo $foo\n"
    p = plan_build(parse_dockerfile(text), {"foo": "x"}, None, AMD64, AMD64)
    scope = p.scope(p.stages[0])
    steps = scope.apply_all(p.stages[0].instructions)
    assert isinstance(a := steps[1], Arg) and a.pairs == (("foo", "x"),)
    assert scope.run_env()["foo"] == "x"
    assert scope.run_history_args() == ["foo=x"]
    assert p.unused_build_args([scope.used_build_args]) == []

    p = plan_build(parse_dockerfile(text), {}, None, AMD64, AMD64)
    scope = p.scope(p.stages[0])
    scope.apply_all(p.stages[0].instructions)
    assert scope.run_history_args() == ["foo=default"]


def test_copy_from_variable_is_rejected_with_line() -> None:
    text = "FROM alpine AS a\nARG S=a\nFROM alpine\nCOPY --from=$S /x /x\n"
    with pytest.raises(DockerfileError, match="variable expansion is not supported") as err:
        plan_build(parse_dockerfile(text), {}, None, AMD64, AMD64)
    assert err.value.line == 4


def test_onbuild_of_base_stage_runs_in_child() -> None:
    text = """\
FROM alpine AS base
ONBUILD ARG GREETING=hi
ONBUILD RUN echo $GREETING
FROM base
RUN true
"""
    p = plan_build(parse_dockerfile(text), {}, None, AMD64, AMD64)
    child = p.stage(1)
    assert child.onbuild_count == 2
    assert [i.keyword for i in child.instructions] == ["ARG", "RUN", "RUN"]
    assert [i.line for i in child.instructions] == [4, 4, 5]
