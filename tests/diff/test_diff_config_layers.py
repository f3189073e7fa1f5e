"""Config and layer comparisons, docker-archive input, and the command line's output and exit status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from handmade import BASE, d, f, write_archive, write_layout

from kiln.diff import DiffOptions, diff_images
from kiln.diff.model import Difference
from kiln.diff_cli import diff_command
from kiln.errors import UsageError

pytestmark = pytest.mark.root

FULL = {
    "Env": ["PATH=/bin", "A=1"],
    "Cmd": ["sh"],
    "Entrypoint": ["/bin/tool"],
    "WorkingDir": "/w",
    "User": "app",
    "ExposedPorts": {"80/tcp": {}},
    "Volumes": {"/data": {}},
    "Labels": {"k": "v", "io.buildah.version": "1.28.2"},
    "StopSignal": "SIGTERM",
    "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 30000000000},
    "Shell": ["/bin/sh", "-c"],
    "OnBuild": ["RUN echo hi"],
}


def config_diffs(tmp_path: Path, a: dict[str, object], b: dict[str, object], **opts: object) -> list[Difference]:
    spec_a = write_layout(tmp_path / "a", [BASE], a)
    spec_b = write_layout(tmp_path / "b", [BASE], b)
    return list(diff_images(spec_a, spec_b, DiffOptions(workdir=tmp_path, **opts)).differences)  # type: ignore[arg-type]


def test_every_config_field_compared(tmp_path: Path) -> None:
    other = {
        "Env": ["PATH=/bin", "A=2", "B=3"],
        "Cmd": ["bash"],
        "Entrypoint": None,
        "WorkingDir": "/",
        "User": "root",
        "ExposedPorts": {"443/tcp": {}},
        "Volumes": {},
        "Labels": {"k": "w"},
        "StopSignal": "SIGKILL",
        "Healthcheck": {"Test": ["NONE"]},
        "Shell": ["/bin/bash", "-c"],
        "OnBuild": [],
    }
    got = {(x.where, x.change) for x in config_diffs(tmp_path, FULL, other)}
    assert got == {
        ("Env:A", "changed"), ("Env:B", "only-b"), ("Cmd", "changed"), ("Entrypoint", "changed"),
        ("WorkingDir", "changed"), ("User", "changed"), ("ExposedPorts:80/tcp", "only-a"),
        ("ExposedPorts:443/tcp", "only-b"), ("Volumes:/data", "only-a"), ("Labels:k", "changed"),
        ("Labels:io.buildah.version", "only-a"), ("StopSignal", "changed"), ("Healthcheck", "changed"),
        ("Shell", "changed"), ("OnBuild", "changed"),
    }  # fmt: skip


def test_env_values_reported(tmp_path: Path) -> None:
    got = config_diffs(tmp_path, {"Env": ["A=1"]}, {"Env": ["A=2"]})
    assert got == [Difference("config", "Env:A", "changed", a="1", b="2")]


def test_architecture_and_os(tmp_path: Path) -> None:
    spec_a = write_layout(tmp_path / "a", [BASE], {})
    spec_b = write_layout(tmp_path / "b", [BASE], {}, architecture="arm64")
    report = diff_images(spec_a, spec_b, DiffOptions(workdir=tmp_path))
    assert report.differences == (Difference("config", "architecture", "changed", a="amd64", b="arm64"),)


def test_ignore_config_field_and_item(tmp_path: Path) -> None:
    b = dict(FULL, Labels={"k": "v"}, Cmd=["other"])
    assert config_diffs(tmp_path, FULL, b, ignore_config=("cmd", "Labels:io.buildah.version")) == []
    assert config_diffs(tmp_path / "2", FULL, b, ignore_config=("Labels", "Cmd")) == []
    assert [x.where for x in config_diffs(tmp_path / "3", FULL, b, ignore_config=("Cmd",))] == [
        "Labels:io.buildah.version"
    ]


def test_ignore_config_unknown_field_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown config field"):
        config_diffs(tmp_path, {}, {}, ignore_config=("Nope",))
    with pytest.raises(UsageError, match="no items"):
        config_diffs(tmp_path, {}, {}, ignore_config=("Cmd:x",))


def test_layers_same_tree_different_split(tmp_path: Path) -> None:
    one = [[d("a"), f("a/x", b"1"), f("a/y", b"2")]]
    two = [[d("a"), f("a/x", b"1")], [d("a"), f("a/y", b"2")]]
    spec_a, spec_b = write_layout(tmp_path / "a", one), write_layout(tmp_path / "b", two)
    assert diff_images(spec_a, spec_b, DiffOptions(workdir=tmp_path)).same
    report = diff_images(spec_a, spec_b, DiffOptions(workdir=tmp_path, layers=True))
    assert report.layer_counts == (1, 2)
    assert report.differences == (Difference("layers", "count", "changed", a=1, b=2),)


def test_layers_file_sets_include_whiteouts(tmp_path: Path) -> None:
    a = [[d("a"), f("a/x", b"1")], [d("a"), f("a/.wh.x")]]
    b = [[d("a"), f("a/x", b"1")], [d("a")]]
    spec_a, spec_b = write_layout(tmp_path / "a", a), write_layout(tmp_path / "b", b)
    report = diff_images(spec_a, spec_b, DiffOptions(workdir=tmp_path, layers=True))
    assert report.in_section("layers") == [Difference("layers", "layer 2", "changed", "entries", ["/a/.wh.x"], [])]
    assert report.in_section("files") == [Difference("files", "/a/x", "only-b", b=report.differences[0].b)]
    assert report.layer_file_sets is not None
    assert report.layer_file_sets[0] == (("/a", "/a/x"), ("/a", "/a/.wh.x"))


def test_docker_archive_equals_layout(tmp_path: Path) -> None:
    layers = [BASE, [d("etc"), f("etc/.wh.passwd"), f("new", b"n")]]
    config = {"Env": ["A=1"], "Cmd": ["sh"]}
    spec_a = write_layout(tmp_path / "layout", layers, config, gzip_layers=False)
    spec_b = write_archive(tmp_path / "image.tar", layers, config)
    assert diff_images(spec_a, spec_b, DiffOptions(workdir=tmp_path, layers=True)).same
    spec_c = write_archive(tmp_path / "other.tar", layers, {"Env": ["A=1"]})
    report = diff_images(spec_a, spec_c, DiffOptions(workdir=tmp_path))
    assert [x.where for x in report.differences] == ["Cmd"]


def test_layout_with_several_tags(tmp_path: Path) -> None:
    write_layout(tmp_path / "l", [[f("x", b"1")]], tag="one")
    write_layout(tmp_path / "l", [[f("x", b"2")]], tag="two")
    report = diff_images(f"oci-layout:{tmp_path}/l:one", f"oci:{tmp_path}/l:two", DiffOptions(workdir=tmp_path))
    assert [(x.where, x.attribute) for x in report.differences] == [("/x", "sha256")]


# --- the command --------------------------------------------------------------------------------------


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(diff_command, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_cli_same_exit_0(tmp_path: Path) -> None:
    spec = write_layout(tmp_path / "a", [BASE], FULL)
    code, out, _ = run_cli(spec, spec)
    assert code == 0
    assert "no differences" in out


def test_cli_different_exit_1_text(tmp_path: Path) -> None:
    spec_a = write_layout(tmp_path / "a", [BASE], {"Cmd": ["sh"]})
    spec_b = write_layout(tmp_path / "b", [[*BASE, f("extra", b"e")]], {"Cmd": ["bash"]})
    code, out, _ = run_cli(spec_a, spec_b)
    assert code == 1
    assert "+ /extra: file 0644 0:0 size=1" in out
    assert '~ Cmd: ["sh"] != ["bash"]' in out


def test_cli_json(tmp_path: Path) -> None:
    spec_a = write_layout(tmp_path / "a", [BASE], {"User": "a"})
    spec_b = write_layout(tmp_path / "b", [BASE], {"User": "b"})
    code, out, _ = run_cli("--format", "json", "--layers", spec_a, spec_b)
    assert code == 1
    doc = json.loads(out)
    assert doc["same"] is False
    assert doc["layer_counts"] == [1, 1]
    assert doc["differences"] == [{"section": "config", "where": "User", "change": "changed", "a": "a", "b": "b"}]


def test_cli_ignore_flags(tmp_path: Path) -> None:
    spec_a = write_layout(tmp_path / "a", [BASE], {"User": "a"})
    spec_b = write_layout(tmp_path / "b", [[*BASE, f("extra")]], {"User": "b"})
    code, _, _ = run_cli("--ignore", "/extra", "--ignore-config", "User", spec_a, spec_b)
    assert code == 0


def test_cli_errors_exit_2(tmp_path: Path) -> None:
    spec = write_layout(tmp_path / "a", [BASE])
    code, _, err = run_cli(spec, f"oci-layout:{tmp_path}/missing")
    assert code == 2
    assert "not an OCI layout" in err
    code, _, err = run_cli(spec, str(tmp_path / "a"))  # a bare path is ambiguous: refused, not pulled
    assert code == 2
    assert "looks like a path" in err
    code, _, err = run_cli("--ignore-config", "Bogus", spec, spec)
    assert code == 2
    (tmp_path / "bad.tar").write_bytes(b"not a tar")
    code, _, err = run_cli(spec, f"docker-archive:{tmp_path}/bad.tar")
    assert code == 2


def test_cli_corrupt_layer_exit_2(tmp_path: Path) -> None:
    spec = write_layout(tmp_path / "a", [BASE], gzip_layers=False)
    manifest_digest = json.loads((tmp_path / "a/index.json").read_text())["manifests"][0]["digest"]
    manifest = json.loads((tmp_path / "a/blobs/sha256" / manifest_digest.split(":")[1]).read_text())
    layer = tmp_path / "a/blobs/sha256" / manifest["layers"][0]["digest"].split(":")[1]
    layer.write_bytes(layer.read_bytes()[:700])  # truncated mid-entry
    code, _, err = run_cli(spec, spec)
    assert code == 2
    assert "truncated" in err or "corrupt" in err


def test_empty_argv_equals_absent(tmp_path: Path) -> None:
    assert config_diffs(tmp_path, {"Entrypoint": [], "Cmd": None}, {"Cmd": []}) == []
    assert [x.where for x in config_diffs(tmp_path / "2", {"Entrypoint": []}, {"Entrypoint": ["x"]})] == ["Entrypoint"]
