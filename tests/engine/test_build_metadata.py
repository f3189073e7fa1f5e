"""Config-only instructions, checked against the Dockerfile reference's rules."""

from __future__ import annotations

from kiln.dockerfile.expand import Expander
from kiln.dockerfile.parse import parse_dockerfile
from kiln.engine.steps.metadata import MetaState, apply_metadata, created_by
from kiln.oci.config import ContainerConfig


def _apply(text: str, state: MetaState) -> MetaState:
    for raw in parse_dockerfile("FROM scratch\n" + text).instructions[1:]:
        instr = raw.expand(Expander({}))
        new = apply_metadata(instr, state)
        assert new is not None, instr
        state = new
    return state


def test_entrypoint_resets_inherited_cmd() -> None:
    base = MetaState(ContainerConfig(cmd=("bash",)))
    out = _apply('ENTRYPOINT ["/app"]\n', base)
    assert out.config.entrypoint == ("/app",)
    assert out.config.cmd is None


def test_entrypoint_keeps_cmd_set_in_this_stage() -> None:
    out = _apply('CMD ["--help"]\nENTRYPOINT ["/app"]\n', MetaState(ContainerConfig(cmd=("bash",))))
    assert out.config.cmd == ("--help",)


def test_shell_form_uses_current_shell() -> None:
    out = _apply('SHELL ["/bin/bash", "-eu", "-c"]\nCMD echo hi\n', MetaState(ContainerConfig()))
    assert out.config.cmd == ("/bin/bash", "-eu", "-c", "echo hi")


def test_expose_ranges_and_protocols() -> None:
    out = _apply("EXPOSE 80 53/udp 8000-8002/tcp\n", MetaState(ContainerConfig()))
    assert out.config.exposed_ports == ("53/udp", "80/tcp", "8000/tcp", "8001/tcp", "8002/tcp")


def test_healthcheck_durations_in_nanoseconds_and_none() -> None:
    out = _apply("HEALTHCHECK --interval=1m30s --timeout=5s --retries=4 CMD curl -f http://x/\n",
                 MetaState(ContainerConfig()))
    hc = out.config.healthcheck
    assert hc is not None
    assert hc.test == ("CMD-SHELL", "curl -f http://x/")
    assert (hc.interval, hc.timeout, hc.retries) == (90_000_000_000, 5_000_000_000, 4)
    assert _apply("HEALTHCHECK NONE\n", out).config.healthcheck.test == ("NONE",)  # type: ignore[union-attr]


def test_labels_volumes_user_stopsignal_onbuild_maintainer() -> None:
    out = _apply(
        'LABEL a=1 "b c"=2\nVOLUME ["/data", "/logs"]\nUSER app:grp\nSTOPSIGNAL SIGKILL\n'
        "ONBUILD RUN echo child\nMAINTAINER someone\n",
        MetaState(ContainerConfig(labels={"a": "0", "z": "9"})),
    )
    assert out.config.labels == {"a": "1", "b c": "2", "z": "9"}
    assert out.config.volumes == ("/data", "/logs")
    assert out.config.user == "app:grp"
    assert out.config.stop_signal == "SIGKILL"
    assert out.config.on_build == ("RUN echo child",)
    assert out.author == "someone"


def test_created_by_spelling() -> None:
    df = parse_dockerfile('FROM scratch\nRUN echo  hi\nCMD ["a", "b"]\nENV A=1\n')
    run, cmd, env = df.instructions[1:]
    assert created_by(run, ("/bin/sh", "-c"), ["V=1"]) == "|1 V=1 RUN echo  hi"
    assert created_by(cmd, ("/bin/sh", "-c")) == 'CMD ["a", "b"]'
    assert created_by(env, ("/bin/sh", "-c")) == "ENV A=1"
