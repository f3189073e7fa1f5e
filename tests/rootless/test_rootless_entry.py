"""When `kiln` enters a user namespace of its own: for an ordinary user's build, not for what builds nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln import cli, rootless


@pytest.fixture
def entered(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """As if kiln ran as an ordinary user; records each entry into a namespace instead of making one."""
    calls: list[list[str]] = []
    monkeypatch.setattr(rootless, "needs_own_namespace", lambda: True)
    monkeypatch.setattr(rootless, "run_in_own_namespace", lambda argv: calls.append(list(argv)) or 0)
    return calls


def test_a_build_enters_the_namespace_with_its_own_arguments(entered: list[list[str]], tmp_path: Path) -> None:
    assert cli.main(["build", "--context", str(tmp_path), "--no-push"]) == 0
    assert len(entered) == 1 and entered[0][-4:] == ["build", "--context", str(tmp_path), "--no-push"]
    assert entered[0][1:3] == ["-m", "kiln"]


@pytest.mark.parametrize("flag", ["--dry-run", "--help"])
def test_what_builds_nothing_needs_no_namespace(entered: list[list[str]], tmp_path: Path, flag: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    (tmp_path / "Dockerfile").write_text("FROM scratch\nLABEL a=b\n")
    assert cli.main(["build", "--context", str(tmp_path), flag]) == 0
    assert entered == []
    assert capsys.readouterr().out
