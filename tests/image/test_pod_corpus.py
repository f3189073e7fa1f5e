"""A corpus of Dockerfiles (tests/image/corpus/CASE/) built through kiln's image as a pod runs it, compared with
kiln's namespaced mode on the host.

Each case directory is a build context: its Dockerfile takes the base image as `ARG BASE` (busybox) or
`ARG DEBIAN`, and an optional `flags` file holds more executor flags, one word a line, where `{context}` is
the context's path (/workspace in the pod, the directory on the host). The pod (pod.py: root, Docker's
default capabilities, no CAP_SYS_ADMIN) runs `/kaniko/executor` with kaniko's arguments and pushes to the
test registry; the host builds the same context with `kiln build` (runc, overlay); `kiln diff --layers` must
find the two equal: files, config, and each layer's entries.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from image_helpers import Container, copy_tree, described, executor_argv, host_build, kiln_diff
from pod import Bind

from support.registry import Registry

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

CORPUS = Path(__file__).resolve().parent / "corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "Dockerfile").is_file())


def _flags(case: Path, context: str) -> list[str]:
    path = case / "flags"
    if not path.exists():
        return []
    return [line.replace("{context}", context) for line in path.read_text().splitlines() if line.strip()]


def test_corpus_is_there() -> None:
    assert {"multistage-copy-from", "run-mount-cache", "run-mount-bind", "run-mount-secret", "run-mount-tmpfs",
            "links-and-whiteouts"} <= set(CASES), CASES  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_corpus_case_in_pod_equals_namespaced_build(
    case: str, container: Container, registry: Registry, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    context = copy_tree(CORPUS / case, tmp_path / "context")
    dockerfile = (context / "Dockerfile").read_text()
    build_args = []
    if "ARG BASE" in dockerfile:
        build_args += ["--build-arg", f"BASE={request.getfixturevalue('busybox_ref')}"]
    if "ARG DEBIAN" in dockerfile:
        build_args += ["--build-arg", f"DEBIAN={request.getfixturevalue('debian_ref')}"]
    pushed = registry.ref(f"corpus/{case}", "pod")

    argv = executor_argv(registry, "/workspace", pushed, *build_args, *_flags(context, "/workspace"))
    proc = container.run(argv, binds=[Bind(context, "/workspace")])
    assert proc.returncode == 0, f"{case}: the build in the pod failed: " + described(proc)

    host = host_build(registry, context, tmp_path / "host", tmp_path / "host-kiln", *build_args,
                      *_flags(context, str(context)))  # fmt: skip
    diff = kiln_diff(pushed, f"oci-layout://{host}:built", "--layers")
    assert diff.returncode == 0, f"{case}: the pod's image differs from the namespaced build:\n" + described(diff)
