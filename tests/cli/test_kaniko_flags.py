"""kaniko's whole command line: every flag of the table in kiln/kaniko_flags.py is registered, parses (Go-style
booleans included), gives its notice or its refusal, and maps to the setting it names; docs/kaniko-flags.md is
what the table renders."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import click
import pytest

from kiln.cli import build_command, main, options_from_flags, rewrite_go_bools
from kiln.engine.options import BuildOptions
from kiln.errors import UsageError
from kiln.kaniko_flags import ALL, EXECUTOR, WARMER, KanikoFlag, render_markdown
from kiln.oci.platform import Platform
from kiln.warm_cli import dockerfile_images, warm_command

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = "FROM scratch AS base\nLABEL a=b\nFROM base\nLABEL c=d\n"


def test_the_committed_table_is_the_generated_one() -> None:
    committed = (REPO / "docs" / "kaniko-flags.md").read_text()
    assert committed == render_markdown(), "run: .venv/bin/python -m kiln.kaniko_flags > docs/kaniko-flags.md"


def test_the_table_holds_kanikos_flags_once_each() -> None:
    for flags in (EXECUTOR, WARMER):
        names = [f.name for f in flags]
        assert len(names) == len(set(names))
    # A few that pipelines pass every day, and the fork's additions.
    names = {f.name for f in EXECUTOR}
    assert {"--snapshotMode", "--customPlatform", "--tarPath", "--use-new-run", "--compressed-caching",
            "--skip-unused-stages", "--force", "--kaniko-dir", "--image-fs-extract-retry", "--log-timestamp",
            "--push-ignore-immutable-tag-errors", "--skip-push-permission-check", "--context-sub-path", "--git",
            "--annotation", "--materialize", "--preserve-context", "--credential-helpers",
            "--pre-cleanup"} <= names  # fmt: skip
    assert len(EXECUTOR) >= 60
    for f in ALL:
        assert f.alias_of is None or any(g.name == f.alias_of or f.alias_of == "--custom-platform" for g in ALL)


def _command(f: KanikoFlag) -> click.Command:
    return build_command if f.command == "build" else warm_command


@pytest.mark.parametrize("flag", ALL, ids=lambda f: f"{f.command}{f.name}")
def test_every_flag_is_registered(flag: KanikoFlag) -> None:
    spellings = {o for p in _command(flag).params for o in (*p.opts, *p.secondary_opts)}
    assert flag.name in spellings
    if flag.short:
        assert flag.short in spellings
    if flag.takes == "bool" and (flag.default or flag.handling in ("notice", "refused")):
        assert "--no-" + flag.name[2:] in spellings  # so that --flag=false is seen


def _args(flag: KanikoFlag, spelling: str | None = None) -> list[list[str]]:
    """Ways to give a flag, as kaniko users write it."""
    name = spelling or flag.name
    if flag.takes == "bool":
        return [[name], [f"{name}=true"], [f"{name}=false"]]
    return [[name, flag.example], [f"{name}={flag.example}"]]


def _parse(command: click.Command, args: list[str]) -> dict[str, Any]:
    assert command.name is not None
    ctx = command.make_context(command.name, rewrite_go_bools([command.name, *args])[1:])
    return dict(ctx.params)


@pytest.mark.parametrize("flag", ALL, ids=lambda f: f"{f.command}{f.name}")
def test_every_flag_parses_in_every_spelling(flag: KanikoFlag) -> None:
    for args in _args(flag) + ([_args(flag, flag.short)[0]] if flag.short else []):
        _parse(_command(flag), args)


@pytest.mark.parametrize("flag", EXECUTOR, ids=lambda f: f.name)
def test_every_build_flag_runs_a_dry_run(
    flag: KanikoFlag, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    monkeypatch.chdir(tmp_path)
    for args in _args(flag):
        status = main(["build", "--dry-run", "--no-push", *args])
        err = capsys.readouterr().err
        asks = not (args[-1].endswith("=false") or args[-1] in ("", f"{flag.name}="))
        if flag.handling == "refused" and asks:
            assert status == 2, err
            assert err.strip() == f"error: {flag.name}: not supported yet: {flag.kiln}"  # one line, the flag
            continue
        assert status == 0, (args, err)
        notices = [line for line in err.splitlines() if line.startswith(f"WARNING: {flag.name}: ")]
        if flag.handling == "notice":
            assert notices == [f"WARNING: {flag.name}: {flag.kiln}"], err
        else:
            assert not notices, err


@pytest.mark.parametrize("args", [["--credential-helpers="], ["--bucket="], ["--git="]])
def test_a_refused_flag_that_asks_for_nothing_is_accepted(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    monkeypatch.chdir(tmp_path)
    assert main(["build", "--dry-run", *args]) == 0, capsys.readouterr().err


def _options(*args: str) -> BuildOptions:
    return options_from_flags(_parse(build_command, ["--no-push", *args]))


def test_mapped_and_deprecated_spellings_set_what_they_name(tmp_path: Path) -> None:
    assert _options("--snapshotMode=redo").snapshot_mode == "redo"
    assert _options("--customPlatform", "linux/arm64").platforms == (Platform.parse("linux/arm64"),)
    assert _options("--tarPath", "x.tar").tar_path == Path("x.tar")
    assert _options("--whitelist-var-run=false").ignore_var_run is False
    assert _options("--ignore-var-run=false").ignore_var_run is False
    assert _options("--kaniko-dir", str(tmp_path / "k")).kiln_dir == tmp_path / "k"
    assert _options("--compression-level=-1").compression_level is None
    assert _options("--no-push-cache").no_push_cache
    assert _options("--push-ignore-immutable-tag-errors").registry.ignore_immutable_tag_errors
    opts = _options("--cache-dir", str(tmp_path / "images"), "--cache-ttl", "2h")
    assert opts.registry.image_cache_dir == str(tmp_path / "images") and opts.registry.image_cache_ttl == 7200
    assert opts.cache_repo is None  # no layer cache: that is --cache-repo=oci:PATH
    assert _options("--cache-repo", f"oci:{tmp_path}/c").cache_repo == f"oci:{tmp_path}/c"


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--kaniko-dir", "/a", "--kiln-dir", "/b"], "--kaniko-dir"),
        (["--compression-level=-2"], "--compression-level"),
        (["--cache-repo=oci:"], "--cache-repo"),
        (["--materialize", "--cleanup"], "--materialize"),
        (["--context-sub-path", "../elsewhere"], "--context-sub-path"),
        (["--context-sub-path", "missing"], "--context-sub-path"),
    ],
)
def test_bad_combinations_name_the_flag(
    args: list[str], flag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    monkeypatch.chdir(tmp_path)
    assert main(["build", "--dry-run", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {flag}: ") and err.count("\n") == 1, err


def test_context_sub_path_builds_from_the_subdirectory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nLABEL where=top\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM scratch\nLABEL where=app\n")
    monkeypatch.chdir(tmp_path / "app")  # a Dockerfile is also looked for from the working directory: not here
    (tmp_path / "app" / "Dockerfile").rename(tmp_path / "app" / "Dockerfile.real")
    (tmp_path / "app" / "sub").mkdir()
    (tmp_path / "app" / "sub" / "Dockerfile").write_text("FROM scratch\nLABEL where=sub\n")
    assert main(["build", "--dry-run", "--context", f"dir://{tmp_path / 'app'}", "--context-sub-path", "sub"]) == 0
    assert "LABEL where=sub" in capsys.readouterr().out
    tarball = tmp_path / "ctx.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(tmp_path / "app", arcname=".")
    assert main(["build", "--dry-run", "--context", f"tar://{tarball}", "--context-sub-path", "sub"]) == 2
    assert "--context-sub-path: not supported yet" in capsys.readouterr().err


def test_tar_path_camel_case_writes_the_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY a.txt /a.txt\n")
    (ctx / "a.txt").write_text("hello\n")
    out = tmp_path / "out.tar"
    status = main(["build", "--context", str(ctx), "--kaniko-dir", str(tmp_path / "k"), "--no-push=true",
                   "--tarPath", str(out), "--snapshotMode=redo", "--use-new-run=true", "--log-format", "json"])
    err = capsys.readouterr().err
    assert status == 0, err
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert len(manifest[0]["Layers"]) == 1
    assert (tmp_path / "k" / "blobs").is_dir()  # --kaniko-dir is kiln's work directory
    warnings = [json.loads(line)["message"] for line in err.splitlines() if '"warning"' in line]
    assert any(w.startswith("--use-new-run: ") for w in warnings)


def test_warm_reads_every_stage_of_a_dockerfile(tmp_path: Path) -> None:
    df = tmp_path / "Dockerfile"
    df.write_text(
        "ARG BASE=alpine:3.20\n"
        "FROM ${BASE} AS build\n"
        "COPY --from=registry.invalid/tools:1 /t /t\n"
        "FROM build AS test\n"
        "FROM debian:bookworm AS unused\n"
        "FROM scratch\n"
        "COPY --from=build /t /t\n"
    )
    found = dockerfile_images(str(df), {"BASE": "busybox:1.36"}, Platform.host())
    assert found == ["busybox:1.36", "registry.invalid/tools:1", "debian:bookworm"]


def test_kanikos_environment_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KANIKO_REGISTRY_MIRROR", "mirror.invalid")
    monkeypatch.setenv("KANIKO_REGISTRY_MAP", "gcr.io=m1.invalid;quay.io=m2.invalid")
    monkeypatch.setenv("KANIKO_DIR", str(tmp_path / "kd"))
    monkeypatch.delenv("KILN_DIR", raising=False)
    opts = _options("--registry-mirror", "first.invalid")
    assert opts.registry.registry_mirrors == ("first.invalid", "mirror.invalid")
    assert opts.registry.registry_maps == (("gcr.io", "m1.invalid"), ("quay.io", "m2.invalid"))
    assert opts.kiln_dir == tmp_path / "kd"
    assert _options("--kiln-dir", str(tmp_path / "mine")).kiln_dir == tmp_path / "mine"  # a flag wins
    monkeypatch.setenv("KANIKO_NO_PUSH", "false")
    with pytest.raises(UsageError) as e:  # no push and nowhere else to put the image
        options_from_flags(_parse(build_command, ["--no-push"]))
    assert e.value.flag == "--destination"
    monkeypatch.setenv("KANIKO_NO_PUSH", "true")
    assert options_from_flags(_parse(build_command, [])).no_push
    monkeypatch.setenv("KANIKO_NO_PUSH", "maybe")
    with pytest.raises(UsageError) as e:
        options_from_flags(_parse(build_command, []))
    assert e.value.flag == "KANIKO_NO_PUSH"
