"""SOURCE_DATE_EPOCH as a build argument (what buildx passes): the image's created time and history, and file
times clamped to it (BuildKit's rewrite-timestamp: later times become the epoch, earlier ones stay)."""

from __future__ import annotations

import os
from pathlib import Path

from integ_helpers import Kiln, write_context

EPOCH = 1_700_000_000  # 2023-11-14T22:13:20Z


def test_source_date_epoch_build_arg(kiln_bb: Kiln, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nCOPY old new /\nRUN echo now > /made\n",
                                           "old": "old\n", "new": "new\n"})
    os.utime(ctx / "old", (1_000_000_000, 1_000_000_000))  # 2001: before the epoch
    out = kiln_bb.build(ctx, "--build-arg", f"SOURCE_DATE_EPOCH={EPOCH}").ok()
    assert "not consumed" not in out.stderr
    config = out.config()
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert {h["created"] for h in config["history"][-2:]} == {"2023-11-14T22:13:20Z"}
    copied, ran = out.new_layers(1)
    assert copied["old"].mtime == 1_000_000_000
    assert copied["new"].mtime == EPOCH
    assert ran["made"].mtime == EPOCH


def test_a_bad_source_date_epoch_names_the_flag(kiln_bb: Kiln, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\n"})
    out = kiln_bb.build(ctx, "--build-arg", "SOURCE_DATE_EPOCH=yesterday")
    assert out.returncode == 2 and "--build-arg" in out.stderr and "SOURCE_DATE_EPOCH" in out.stderr, out.describe()
