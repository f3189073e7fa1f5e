"""A corpus of Dockerfiles (tests/image/corpus/CASE/) built through kiln's image as a pod runs it, compared with
kiln's namespaced mode on the host.

Each case directory is a build context: its Dockerfile takes the base image as `ARG BASE` (busybox) or
`ARG DEBIAN`, and an optional `flags` file holds more executor flags, one word a line, where `{context}` is
the context's path (/workspace in the pod, the directory on the host). The pod (pod.py: root, Docker's
default capabilities, no CAP_SYS_ADMIN) runs `/kaniko/executor` with kaniko's arguments and pushes to the
test registry; the host builds the same context with `kiln build` (runc, overlay); `kiln diff --layers` must
find the two equal: files, config, and each layer's entries. buildah builds it too (`buildah build
--format docker`, Debian's buildah 1.28), and `kiln diff` must find its image equal to the pod's in files and
config (layers differ by design: buildah makes one per instruction), less what buildah alone adds: its
version label, the empty mount points its RUN leaves behind (as tests/conformance ignores them), and the
directories it creates for RUN --mount targets and leaves in the image (kiln removes the mount points it
made, so that the image holds what the instructions made). A case
buildah cannot build says so, with the reason, in a file `buildah-skip`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from image_helpers import Container, copy_tree, described, executor_argv, host_build, kiln_diff
from pod import Bind

from support.buildah import Buildah
from support.registry import Registry

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

CORPUS = Path(__file__).resolve().parent / "corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "Dockerfile").is_file())
# What buildah 1.28 adds to every image whose RUN ran on a base without them (tests/conformance/harness.py).
BUILDAH_RUN_LEFTOVERS = {
    "/etc/hostname": "file 0755 0:0 size=0",
    "/etc/hosts": "file 0755 0:0 size=0",
    "/etc/resolv.conf": "file 0755 0:0 size=0",
    "/run": "dir 0755 0:0",
}


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
    """The pod's build equals the namespaced build (files, config, layers) and buildah's (files, config)."""
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

    skip = context / "buildah-skip"
    if skip.exists():
        assert skip.read_text().strip(), "buildah-skip must say why"
        return
    buildah = request.getfixturevalue("buildah")
    theirs = _buildah_build(buildah, context, tmp_path / "buildah.tar", build_args, _flags(context, str(context)))
    _assert_same_as_buildah(pushed, theirs, case, dockerfile)


def _buildah_build(buildah: Buildah, context: Path, out: Path, build_args: list[str], flags: list[str]) -> Path:
    iidfile = out.with_suffix(".iid")
    # --network=host: kiln's default too; buildah's own (a bridge) would turn on the host's ip_forward.
    buildah("build", "--layers=false", "--format", "docker", "-f", str(context / "Dockerfile"), "--network=host",
            "--iidfile", str(iidfile), "--tls-verify=false", *build_args, *flags, str(context))  # fmt: skip
    buildah("push", "--quiet", iidfile.read_text().strip().removeprefix("sha256:"), f"docker-archive:{out}")
    return out


def _mount_points(dockerfile: str) -> set[str]:
    """The RUN --mount targets of a Dockerfile and their parents."""
    found = set()
    for target in re.findall(r"--mount=\S*?(?:target|dst|destination)=([^,\s]+)", dockerfile):
        path = "/" + target.strip("/")
        while path != "/":
            found.add(path)
            path = os.path.dirname(path)
    return found


def _buildah_only(d: dict[str, object], mount_points: set[str]) -> bool:
    """A difference that is buildah's alone: a RUN leftover, or a directory it made for a --mount target."""
    if d["section"] != "files" or d["change"] != "only-a":
        return False
    where, what = str(d["where"]), str(d["a"])
    if where in BUILDAH_RUN_LEFTOVERS and what.startswith(BUILDAH_RUN_LEFTOVERS[where]):
        return True
    return where in mount_points and what.startswith("dir ")


def _assert_same_as_buildah(pushed: str, theirs: Path, case: str, dockerfile: str) -> None:
    diff = kiln_diff(f"docker-archive:{theirs}", pushed, "--format", "json",
                     "--ignore-config", "Labels:io.buildah.version")  # fmt: skip
    assert diff.returncode in (0, 1), described(diff)
    mount_points = _mount_points(dockerfile)
    left = [d for d in json.loads(diff.stdout)["differences"] if not _buildah_only(d, mount_points)]
    assert not left, f"{case}: buildah (a) and the pod (b) differ:\n" + json.dumps(left, indent=1)[:6000]
