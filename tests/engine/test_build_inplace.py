"""Build in place: when it is allowed (container evidence plus kiln's marker), what it leaves alone, and
the options it refuses. The whole build is in tests/integration/test_integ_inplace.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import kiln
from kiln.engine.inplace import (
    MARKER,
    container_evidence,
    in_place_ignore,
    in_place_refusal,
    kiln_installation,
)
from kiln.engine.options import BuildOptions
from kiln.errors import UsageError


def _fake_proc(tmp_path: Path, init_root: Path) -> Path:
    proc = tmp_path / "proc"
    (proc / "1").mkdir(parents=True)
    os.symlink(init_root, proc / "1" / "root")
    return proc


def test_no_evidence_when_root_is_pid1s_and_nothing_is_marked(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    proc = _fake_proc(tmp_path, root)
    assert container_evidence(root, {}, proc) is None
    assert "not inside a container" in str(in_place_refusal(root, {}, proc))


@pytest.mark.parametrize(
    ("files", "environ", "expected"),
    [
        ([".dockerenv"], {}, "/.dockerenv exists"),
        (["run/.containerenv"], {}, "/run/.containerenv exists"),
        ([], {"container": "podman"}, "$container is set"),
        ([], {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "$KUBERNETES_SERVICE_HOST is set"),
    ],
)
def test_each_kind_of_evidence(tmp_path: Path, files: list[str], environ: dict[str, str], expected: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).touch()
    proc = _fake_proc(tmp_path, root)
    assert container_evidence(root, environ, proc) == expected


def test_a_root_that_is_not_pid1s_is_evidence(tmp_path: Path) -> None:
    root, other = tmp_path / "root", tmp_path / "other"
    root.mkdir()
    other.mkdir()
    assert container_evidence(root, {}, _fake_proc(tmp_path, other)) == "kiln's / is not PID 1's root"


def test_evidence_alone_is_not_enough_the_marker_is_needed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / ".dockerenv").touch()
    proc = _fake_proc(tmp_path, root)
    assert f"/{MARKER} is missing" in str(in_place_refusal(root, {}, proc))
    (root / MARKER).touch()
    assert in_place_refusal(root, {}, proc) is None
    # The marker without evidence of a container is not enough either.
    (root / ".dockerenv").unlink()
    assert "not inside a container" in str(in_place_refusal(root, {}, proc))


def test_this_machine_is_refused() -> None:
    if os.path.exists("/" + MARKER):
        pytest.skip("this machine's / is marked as disposable for kiln")
    assert in_place_refusal() is not None


def test_kiln_installation_holds_its_python_and_package() -> None:
    install = kiln_installation()
    assert os.path.realpath(sys.prefix) in install
    assert os.path.realpath(sys.base_prefix) in install
    assert os.path.dirname(os.path.realpath(kiln.__file__)) in install


def test_ignored_paths(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        "30 22 0:5 / /workspace rw - tmpfs tmpfs rw\n"
        "31 22 0:6 / /etc/resolv\\040conf rw - tmpfs tmpfs rw\n"
    )
    opts = BuildOptions(kiln_dir=Path("/kiln/work"), ignore_paths=("/cache",), no_push=True)
    rules = in_place_ignore(opts, Path("/srv/ctx"), install=["/opt/kiln"], mountinfo=mountinfo)
    for path in ("opt/kiln/bin/python", "kiln/work/tmp/x", "srv/ctx/Dockerfile", "workspace/a", "proc/1",
                 "sys/x", "dev/null", "var/run/x", "cache/y", "etc/resolv conf", MARKER):  # fmt: skip
        assert rules.is_ignored(path), path
    for path in ("usr/bin/x", "etc/passwd", "opt/other", "srv/other", "kiln/other", "var/lib/x"):
        assert not rules.is_ignored(path), path


@pytest.mark.parametrize("shared", ["/usr", "/usr/local", "/", "/opt", "/usr/lib"])
def test_kiln_installed_in_a_shared_directory_is_refused(tmp_path: Path, shared: str) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("")
    with pytest.raises(UsageError, match="directory of its own") as e:
        in_place_ignore(BuildOptions(no_push=True), None, install=[shared], mountinfo=mountinfo)
    assert e.value.flag == "--in-place"


def test_context_at_the_root_is_refused(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("")
    with pytest.raises(UsageError, match="build context"):
        in_place_ignore(BuildOptions(no_push=True), Path("/"), install=["/opt/kiln"], mountinfo=mountinfo)


def test_options_in_place_is_accepted_but_not_with_overlay_snapshots() -> None:
    BuildOptions(in_place=True, no_push=True).validate()
    with pytest.raises(UsageError, match="walking"):
        BuildOptions(in_place=True, no_push=True, snapshot_mode="overlay").validate()
