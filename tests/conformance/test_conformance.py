"""Each case under cases/: kiln's image against buildah's (or against expected.txt where buildah cannot judge).

A kiln bug shows as a failing case, never an xfail: docs/conformance.md lists the differences that are known
and explained (buildah's bugs, unspecified behaviour), and only those are ignored, per case, in case.toml.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from harness import (
    GLOBAL_IGNORE_CONFIG,
    GLOBAL_IGNORE_PATHS,
    Bases,
    Case,
    ServedFiles,
    buildah_build,
    check_expected_config,
    check_expected_files,
    drop_buildah_leftovers,
    image_layer_count,
    kiln_build,
    layer_count,
    load_cases,
    prepare,
)

from kiln.diff import DiffOptions, diff_images
from kiln.diff.api import flattened_tree
from kiln.diff.render import render_text
from kiln.transports.layout import read_image


def _params() -> list[Any]:
    out = []
    for case in load_cases():
        marks = [pytest.mark.conformance, pytest.mark.root]
        if case.meta.get("slow") or case.debian:
            marks.append(pytest.mark.slow)
        if case.expect not in ("kiln-only", "kiln-fails"):
            marks.append(pytest.mark.buildah)
        out.append(pytest.param(case, id=case.name, marks=marks))
    return out


@pytest.mark.timeout(900)
@pytest.mark.parametrize("case", _params())
def test_case(
    case: Case,
    bases: Bases,
    served: ServedFiles,
    kiln_dir: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    record_property: Any,
) -> None:
    ctx = prepare(case, tmp_path, bases, served)
    kiln = kiln_build(case, ctx, tmp_path / "kiln", kiln_dir)
    record_property("kiln_seconds", round(kiln.seconds, 2))

    if "kiln_layers" in case.meta and kiln.ok:
        count = layer_count(tmp_path / "kiln")
        assert count == case.meta["kiln_layers"], f"kiln made {count} layers, expected {case.meta['kiln_layers']}"

    if case.expect == "kiln-fails":
        assert not kiln.ok, "kiln built a Dockerfile the reference says must fail"
        return

    if case.expect == "kiln-only":
        assert kiln.ok, f"kiln build failed:\n{kiln.output[-4000:]}"
        image = read_image(tmp_path / "kiln", None, None)
        scratch = tmp_path / "flat"
        scratch.mkdir()
        problems = (
            check_expected_files(case, flattened_tree(image, scratch, "kiln"))
            if (case.path / "expected.txt").exists()
            else []
        )
        problems += check_expected_config(case, image.config)
        assert not problems, "kiln's image differs from the Dockerfile reference:\n" + "\n".join(problems)
        return

    buildah = request.getfixturevalue("buildah")
    theirs = buildah_build(case, ctx, tmp_path / "buildah.tar", buildah)
    record_property("buildah_seconds", round(theirs.seconds, 2))

    if case.expect == "both-fail":
        assert not theirs.ok, "buildah built a Dockerfile this case expects every builder to refuse"
        assert not kiln.ok, f"kiln built a Dockerfile buildah refuses:\n{kiln.output[-2000:]}"
        return

    assert theirs.ok, f"buildah failed (the case is wrong, or buildah needs an entry in case.toml):\n{theirs.output}"
    assert kiln.ok, f"kiln build failed where buildah succeeded:\n{kiln.output[-4000:]}"
    options = DiffOptions(
        ignore_paths=GLOBAL_IGNORE_PATHS + tuple(case.meta.get("ignore_paths", ())),
        ignore_config=GLOBAL_IGNORE_CONFIG + tuple(case.meta.get("ignore_config", ())),
        workdir=tmp_path / "diff",
    )
    report = diff_images(f"docker-archive:{tmp_path / 'buildah.tar'}", f"oci-layout:{tmp_path / 'kiln'}", options)
    report = dataclasses.replace(report, differences=drop_buildah_leftovers(report.differences))
    record_property("layers", json.dumps(report.layer_counts))
    assert report.same, "kiln (B) differs from buildah (A):\n" + render_text(report, limit=60)

    if case.meta.get("layers"):
        layered = buildah_build(case, ctx, tmp_path / "buildah-layers.tar", buildah, layers=True)
        assert layered.ok, layered.output
        counts = (
            image_layer_count(f"docker-archive:{tmp_path / 'buildah-layers.tar'}"),
            layer_count(tmp_path / "kiln"),
        )
        record_property("layer_counts_buildah_kiln", json.dumps(counts))
        assert counts[0] == counts[1], f"layer count: buildah --layers {counts[0]}, kiln {counts[1]}"
