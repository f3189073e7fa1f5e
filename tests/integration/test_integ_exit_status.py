"""What `kiln build` exits with: the failing RUN's own status (kaniko's rule), 2 for what kiln does not support
yet, and one message line that names the Dockerfile line."""

from __future__ import annotations

from pathlib import Path

import pytest
from integ_helpers import Kiln, write_context


@pytest.mark.parametrize("status", [42, 1, 255])
def test_a_failing_run_is_kilns_exit_status(kiln_bb: Kiln, tmp_path: Path, status: int) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": f"FROM busybox\nRUN true\nRUN exit {status}\n"})
    out = kiln_bb.build(ctx)
    assert out.returncode == status, out.describe()
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and errors[0].startswith("error: Dockerfile:3: "), out.stderr


def test_a_run_killed_by_a_signal_exits_128_plus_it(kiln_bb: Kiln, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN sh -c 'kill -9 $$'; exit $?\n"})
    assert kiln_bb.build(ctx).returncode == 137


def test_a_missing_required_ssh_agent_is_one_error_at_its_line(kiln_bb: Kiln, tmp_path: Path) -> None:
    # No target, as users write it: the message names ssh, not the missing target.
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN true\n"
                                                         "RUN --mount=type=ssh,required=true true\n"})
    out = kiln_bb.build(ctx, env={"SSH_AUTH_SOCK": ""})
    assert out.returncode == 1, out.describe()
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: Dockerfile:3: ") and "type=ssh" in errors[0], out.stderr
    assert "Traceback" not in out.stderr


def test_without_the_privilege_to_make_containers_run_says_to_build_in_place(kiln_bb: Kiln, tmp_path: Path) -> None:
    """kaniko's setting: root in a container without CAP_SYS_ADMIN. kiln cannot make a container for RUN there,
    and says what to do in one line rather than passing on runc's puzzle."""
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo hi\n"})
    out = kiln_bb.build(ctx, wrapper=["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin"])
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Dockerfile:2" in errors[0] and "--in-place" in errors[0], out.stderr
    assert "CAP_SYS_ADMIN" in errors[0]
