"""The command line: kaniko's flag spellings, Go-style booleans, and errors that name the flag."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kiln.cli import main, rewrite_go_bools
from kiln.errors import UsageError


def test_go_style_booleans_are_rewritten() -> None:
    assert rewrite_go_bools(["--no-push=true", "--cache=false", "--ignore-var-run=false", "--reproducible"]) == [
        "--no-push",
        "--no-ignore-var-run",
        "--reproducible",
    ]


def test_bad_go_boolean_names_the_flag() -> None:
    with pytest.raises(UsageError) as e:
        rewrite_go_bools(["--cleanup=yes"])
    assert "--cleanup" in str(e.value)


def _kiln(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kiln", *args], capture_output=True, text=True, cwd=cwd)


def test_unimplemented_flag_value_is_refused_loudly() -> None:
    r = _kiln("build", "--no-push", "--context", "s3://bucket/context.tar.gz")
    assert r.returncode == 2
    assert "--context: not supported yet" in r.stderr


def test_bad_secret_field_names_the_flag() -> None:
    r = _kiln("build", "--no-push", "--secret", "id=x,bogus=1")
    assert r.returncode == 2
    assert "--secret: unknown field 'bogus'" in r.stderr


def test_nothing_to_do_is_an_error_naming_destination() -> None:
    r = _kiln("build", "--context", ".")
    assert r.returncode == 2
    assert "--destination" in r.stderr


def test_bad_platform_names_the_flag() -> None:
    r = _kiln("build", "--no-push", "--custom-platform", "linux/")
    assert r.returncode == 2
    assert "--custom-platform" in r.stderr


def test_bad_label_names_the_flag() -> None:
    r = _kiln("build", "--no-push", "--label", "novalue")
    assert r.returncode == 2
    assert "--label" in r.stderr


def test_dry_run_prints_plan_with_lines(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "ARG V=3\nFROM scratch AS base\nARG V\nLABEL v=$V\n\nFROM base\nENV X=${V:-none}\n"
    )
    r = _kiln("build", "--context", str(tmp_path), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "Dockerfile:4" in r.stdout and "LABEL v=3" in r.stdout
    # The second stage does not re-declare V: it inherits the stage ARG from "base" (FROM base), so V=3.
    assert "ENV X=3" in r.stdout


def test_dry_run_finds_the_dockerfile_in_a_dir_scheme_context(tmp_path: Path) -> None:
    """kaniko's dir:// spelling: the Dockerfile is looked up in the context, not in the working directory."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\nLABEL where=context\n")
    r = _kiln("build", "--context", f"dir://{tmp_path}", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "LABEL where=context" in r.stdout


def test_dockerfile_error_has_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY --bogus=1 a b\n")
    r = _kiln("build", "--context", str(tmp_path), "--dry-run")
    assert r.returncode == 1
    assert "Dockerfile:2:" in r.stderr


def test_build_arg_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nARG FROMENV\nLABEL v=$FROMENV\n")
    monkeypatch.setenv("FROMENV", "from-the-env")
    monkeypatch.chdir(tmp_path)
    assert main(["build", "--dry-run", "--build-arg", "FROMENV", "--build-arg", "UNSET_ONE"]) == 0
    assert "LABEL v=from-the-env" in capsys.readouterr().out


def test_registry_map_takes_kanikos_pairs() -> None:
    from kiln.cli_flags import _registry_maps

    # kaniko: ";" separates ORIGINAL=MIRROR pairs, a repeated original adds a mirror.
    assert _registry_maps(["index.docker.io=mirror.a;quay.io=mirror.q", "index.docker.io=mirror.b", ""]) == (
        ("index.docker.io", "mirror.a"), ("quay.io", "mirror.q"), ("index.docker.io", "mirror.b"))
    assert _registry_maps(["gcr.io=m1;m2"]) == (("gcr.io", "m1"), ("gcr.io", "m2"))  # kiln's earlier spelling
    for bad in ("nomirror", "=m", "gcr.io=", ";m"):
        with pytest.raises(UsageError) as e:
            _registry_maps([bad])
        assert e.value.flag == "--registry-map"
