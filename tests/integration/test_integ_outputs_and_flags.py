"""Flags checked before anything is built, and what a RUN writes under /var/run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from integ_helpers import Kiln, write_context


def _error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr
    return errors[0]


def test_files_written_under_var_run_are_in_the_layer(kiln_bb: Kiln, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": (
        "FROM busybox\nRUN mkdir -p /var/run/app && echo 1 > /var/run/app/pid\n")})
    out = kiln_bb.build(ctx).ok()
    names = {name for layer in out.new_layers(1) for name in layer}
    assert "var/run/app/pid" in names, sorted(names)


@pytest.mark.parametrize("flag", ["--platform", "--custom-platform"])
def test_a_list_of_platforms_with_one_nothing_here_runs_is_refused_before_building(
    kiln_bb: Kiln, tmp_path: Path, flag: str
) -> None:
    """Both spellings take a list; a platform whose RUN steps nothing here can execute (no s390x interpreter is
    registered by the tests) stops the build before any step, naming the platform and how to register one."""
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo built\n"})
    out = kiln_bb.build(ctx, flag, "linux/amd64,linux/s390x")
    assert out.returncode == 1, out.describe()
    line = _error_line(out.stderr)
    assert "linux/s390x" in line and "kiln binfmt --install s390x" in line
    assert "built" not in out.stdout + out.stderr


def test_an_oci_layout_path_that_is_a_file_is_refused_before_building(kiln_bb: Kiln, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo built\n"})
    target = tmp_path / "a-file"
    target.write_text("keep me")
    out = kiln_bb.build(ctx, layout=target)
    assert out.returncode == 2, out.describe()
    assert "--oci-layout-path" in _error_line(out.stderr)
    assert "built" not in out.stdout + out.stderr  # refused before any step ran
    assert target.read_text() == "keep me"


def test_a_tar_path_that_is_a_directory_is_refused_before_building(kiln_bb: Kiln, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo built\n"})
    (tmp_path / "adir").mkdir()
    out = kiln_bb.build(ctx, "--tar-path", str(tmp_path / "adir"))
    assert out.returncode == 2, out.describe()
    assert "--tar-path" in _error_line(out.stderr)
    assert "built" not in out.stdout + out.stderr


def test_an_output_under_a_file_is_refused(kiln_bb: Kiln, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\n"})
    (tmp_path / "f").write_text("")
    out = kiln_bb.build(ctx, "--digest-file", str(tmp_path / "f" / "digest"))
    assert out.returncode == 2, out.describe()
    assert "--digest-file" in _error_line(out.stderr)


def test_annotations_are_on_the_manifest_as_skopeo_reads_it(kiln_bb: Kiln, tmp_path: Path) -> None:
    import json
    import subprocess

    context = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nLABEL l=1\n"})
    out = kiln_bb.build(context, "--annotation", "org.example.a=one", "--annotation", "b=two=2", "--format", "oci")
    out.ok()
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{out.layout}:test"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert json.loads(raw)["annotations"] == {"org.example.a": "one", "b": "two=2"}
    # Docker schema 2 has no annotations: said at once, naming the flag.
    bad = kiln_bb.build(context, "--annotation", "a=1", "--format", "docker")
    bad.failed()
    assert "--annotation" in bad.stderr and "--format oci" in bad.stderr and "Traceback" not in bad.stderr
    assert "LABEL" not in bad.stderr  # refused before any step ran


def test_a_digest_file_that_is_a_mount_point_is_written_in_place(kiln_bb: Kiln, tmp_path: Path) -> None:
    """kaniko's recipe --digest-file=/dev/termination-log: the kubelet bind-mounts that file, so a rename over it
    fails (EBUSY); the digest is written into it instead. The mount lives in a namespace that dies with kiln."""
    context = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nENV A=1\n"})
    log, backing = tmp_path / "termination-log", tmp_path / "backing"
    log.write_text("")
    backing.write_text("")
    mount = f'mount --bind {backing} {log} && exec "$@"'
    out = kiln_bb.build(context, "--digest-file", str(log),
                        wrapper=("unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh"))
    out.ok()
    digest = backing.read_text()
    assert digest.startswith("sha256:") and len(digest) == 71, digest
    assert digest == json.loads((out.layout / "index.json").read_text())["manifests"][0]["digest"]
