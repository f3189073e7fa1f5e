"""The dry-run rendering of a plan, text and JSON."""

from __future__ import annotations

import json

from kiln.dockerfile.parse import parse_dockerfile
from kiln.dockerfile.plan import plan_build
from kiln.dockerfile.render import plan_to_json, render_text
from kiln.oci.platform import Platform

AMD64 = Platform("linux", "amd64")

DOCKERFILE = """\
ARG GO=1.22
FROM golang:${GO} AS build
ARG GO
ENV OUT="/out/app $GO"
WORKDIR /src
COPY --chmod=755 . .
RUN go build -o "$OUT" ./...

FROM alpine:3.20 AS unused
RUN false

FROM alpine:3.20
COPY --from=build /out/ /usr/local/bin/
CMD ["app"]
"""


def _plan():  # type: ignore[no-untyped-def]
    return plan_build(parse_dockerfile(DOCKERFILE), {"GO": "1.23"}, None, AMD64, AMD64)


def test_render_text() -> None:
    text = render_text(_plan())
    lines = text.splitlines()
    assert lines[0] == 'Dockerfile: target stage 2 "stage-2" for linux/amd64 (building on linux/amd64)'
    assert lines[1] == "waves: [0] [2]"
    assert lines[2] == '[stage 0 "build" FROM golang:1.23] linux/amd64'
    assert lines[3] == "  Dockerfile:3  ARG GO=1.23"
    assert lines[4] == '  Dockerfile:4  ENV OUT="/out/app 1.23"'
    assert lines[5] == "  Dockerfile:5  WORKDIR /src"
    assert lines[6] == "  Dockerfile:6  COPY --chmod=755 . ."
    assert lines[7] == '  Dockerfile:7  RUN go build -o "$OUT" ./...'  # RUN bodies are the shell's to expand
    assert lines[8] == "[stage 2 FROM alpine:3.20] linux/amd64; needs 0; target"
    assert lines[9] == "  Dockerfile:13  COPY --from=build /out/ /usr/local/bin/"
    assert lines[10] == '  Dockerfile:14  CMD ["app"]'
    assert "unused" not in text and "false" not in text


def test_render_json_round_trips() -> None:
    data = plan_to_json(_plan())
    again = json.loads(json.dumps(data))
    assert again == data
    assert data["target"] == {"index": 2, "name": None}
    assert data["waves"] == [[0], [2]]
    assert data["global_args"]["GO"] == "1.23" and data["global_args"]["TARGETARCH"] == "amd64"
    build, final = data["stages"]
    assert build["base"] == {"image": "golang:1.23"} and build["name"] == "build"
    env = build["instructions"][1]
    assert env["line"] == 4 and env["keyword"] == "ENV" and env["args"]["pairs"] == [["OUT", "/out/app 1.23"]]
    assert final["deps"] == [0]
    assert final["instructions"][0]["args"]["from_"] == "build"
    assert final["instructions"][1]["text"] == 'CMD ["app"]'


def test_render_onbuild_marker() -> None:
    df = parse_dockerfile("FROM alpine AS base\nONBUILD RUN echo hi\nFROM base\n")
    text = render_text(plan_build(df, {}, None, AMD64, AMD64))
    assert "  Dockerfile:2  ONBUILD RUN echo hi" in text
    assert "  Dockerfile:3  (ONBUILD) RUN echo hi" in text
    assert '[stage 1 FROM stage 0 "base"] linux/amd64; needs 0; target' in text
