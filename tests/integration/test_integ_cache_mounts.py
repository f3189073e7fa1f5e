"""RUN --mount=type=cache sharing modes (shared, locked, private) and seeding with from=/source=, with two
independent stages that kiln runs at the same time."""

from __future__ import annotations

from pathlib import Path

import pytest
from integ_helpers import Kiln, write_context

# Each step marks itself in the cache and waits (up to 5 s) to see the other stage's mark there: seeing it is an
# overlap (both steps in the cache at once). A rendezvous rather than a fixed sleep: the two stages may start
# seconds apart on a loaded machine, and a shared cache must still show them overlapping.
STEP = ("RUN --mount=type=cache,id=shared-c,target=/c,sharing={mode} "
        "sh -c 'touch /c/in-{name}; i=0; "
        "while [ $i -lt 50 ] && ! ls /c | grep -q \"^in-[^{name}]\"; do sleep 0.1; i=$((i+1)); done; "
        "if ls /c | grep -q \"^in-[^{name}]\"; then echo overlap >> /c/log; fi; "
        "echo {name} >> /c/log; rm /c/in-{name}'")


def _two_stages(mode: str) -> str:
    return "\n".join([
        "FROM busybox AS a", STEP.format(mode=mode, name="a"),
        "FROM busybox AS b", STEP.format(mode=mode, name="b"),
        "FROM busybox", "COPY --from=a /etc/passwd /a", "COPY --from=b /etc/passwd /b",
    ]) + "\n"


def _logs(kiln: Kiln) -> dict[str, list[str]]:
    root = kiln.kiln_dir / "cache-mounts"
    return {d.name: sorted((d / "log").read_text().split()) for d in root.iterdir()
            if d.is_dir() and (d / "log").exists()}


def test_shared_lets_two_steps_in_at_once(kiln_bb: Kiln, tmp_path: Path) -> None:
    """The control for the two below: the stages do run at the same time."""
    kiln_bb.build(write_context(tmp_path / "ctx", {"Dockerfile": _two_stages("shared")})).ok()
    (log,) = _logs(kiln_bb).values()
    assert log in (["a", "b", "overlap"], ["a", "b", "overlap", "overlap"]), log


def test_locked_makes_the_second_step_wait(kiln_bb: Kiln, tmp_path: Path) -> None:
    kiln_bb.build(write_context(tmp_path / "ctx", {"Dockerfile": _two_stages("locked")})).ok()
    (log,) = _logs(kiln_bb).values()
    assert log == ["a", "b"]


def test_private_gives_a_busy_cache_a_second_directory(kiln_bb: Kiln, tmp_path: Path) -> None:
    kiln_bb.build(write_context(tmp_path / "ctx", {"Dockerfile": _two_stages("private")})).ok()
    logs = _logs(kiln_bb)
    assert sorted(logs.values()) == [["a"], ["b"]], logs
    assert any(name.endswith(".private1") for name in logs)


@pytest.mark.parametrize("source", ["/seed", "/seed/"])
def test_from_and_source_seed_a_new_cache(kiln_bb: Kiln, tmp_path: Path, source: str) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": (
        "FROM busybox AS tools\nRUN mkdir /seed && echo seeded > /seed/f\n"
        f"FROM busybox\nRUN --mount=type=cache,id=s,target=/c,from=tools,source={source} "
        "echo \"@@$(cat /c/f)\"\n")})
    out = kiln_bb.build(ctx).ok()
    assert "@@seeded" in out.stdout + out.stderr
