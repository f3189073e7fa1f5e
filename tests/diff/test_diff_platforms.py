"""`kiln diff` on indexes: platform by platform, from layouts and the test registry, inputs built by kiln itself
(FROM scratch + COPY: no emulation needed for foreign platforms)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kiln.oci.manifest import Index
from kiln.oci.platform import Platform
from kiln.transports.address import ImageAddress, entry_address, read_index
from kiln.transports.registry.options import RegistryOptions
from support.registry import Registry

pytestmark = pytest.mark.root

DOCKERFILE = "FROM scratch\nARG TARGETARCH\nCOPY hello.txt /hello-$TARGETARCH\nCOPY $TARGETARCH.txt /arch.txt\n"


def build(tmp_path: Path, name: str, platforms: str, *out: str, arm64_text: str = "arm64\n") -> Path:
    """A kiln build of DOCKERFILE for `platforms` into the layout tmp_path/name (and `out`'s other outputs)."""
    ctx = tmp_path / f"ctx-{name}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "hello.txt").write_text("hello\n")
    for arch in ("amd64", "arm"):
        (ctx / f"{arch}.txt").write_text(f"{arch}\n")
    (ctx / "arm64.txt").write_text(arm64_text)
    layout = tmp_path / name
    r = subprocess.run(
        [sys.executable, "-m", "kiln", "build", "--context", str(ctx), "--kiln-dir", str(tmp_path / "kiln"),
         "--log-format", "json", "--platform", platforms, "--oci-layout-path", str(layout), *(out or ("--no-push",))],
        capture_output=True, text=True, env={**os.environ}, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return layout


def kiln_diff(*args: str) -> tuple[int, str, str]:
    r = subprocess.run([sys.executable, "-m", "kiln", "diff", *args], capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout, r.stderr


def by_platform(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["platform"]: p for p in doc["platforms"]}


def test_two_indexes_alike_are_the_same_on_every_platform(tmp_path: Path) -> None:
    a = build(tmp_path, "a", "linux/amd64,linux/arm64")
    b = build(tmp_path, "b", "linux/amd64,linux/arm64")
    code, out, err = kiln_diff(f"oci-layout://{a}", f"oci-layout://{b}")
    assert code == 0, err
    assert "linux/amd64: no differences" in out and "linux/arm64: no differences" in out
    assert "no differences in 2 platforms" in out


def test_one_platform_differs_and_the_report_says_which(tmp_path: Path) -> None:
    a = build(tmp_path, "a", "linux/amd64,linux/arm64")
    b = build(tmp_path, "b", "linux/amd64,linux/arm64", arm64_text="aarch64\n")
    code, out, err = kiln_diff("--format", "json", f"oci-layout://{a}", f"oci-layout://{b}")
    assert code == 1, err
    doc = json.loads(out)
    assert doc["same"] is False
    platforms = by_platform(doc)
    assert sorted(platforms) == ["linux/amd64", "linux/arm64"]
    assert platforms["linux/amd64"]["same"] is True
    arm = platforms["linux/arm64"]
    assert arm["same"] is False
    assert {d["where"] for d in arm["differences"]} == {"/arch.txt"}
    # Each platform names the manifests it compared, by digest in their layouts.
    index_a = json.loads((a / "index.json").read_text())
    top = json.loads((a / "blobs/sha256" / index_a["manifests"][0]["digest"].split(":")[1]).read_text())
    arm_digest = next(m["digest"] for m in top["manifests"] if m["platform"]["architecture"] == "arm64")
    assert arm["a"] == f"oci-layout://{a}@{arm_digest}"
    code, text, _ = kiln_diff(f"oci-layout://{a}", f"oci-layout://{b}")
    assert code == 1
    assert "linux/amd64: no differences" in text
    assert "linux/arm64: 2 differences" in text or "linux/arm64: 1 difference" in text
    assert "  Files (" in text and "~ /arch.txt:" in text
    assert "1 of 2 platforms differ" in text


def test_a_platform_on_one_side_only_is_a_difference(tmp_path: Path) -> None:
    a = build(tmp_path, "a", "linux/amd64,linux/arm64")
    b = build(tmp_path, "b", "linux/amd64,linux/arm/v7")
    code, out, err = kiln_diff("--format", "json", f"oci-layout://{a}", f"oci-layout://{b}")
    assert code == 1, err
    platforms = by_platform(json.loads(out))
    assert platforms["linux/amd64"]["same"] is True
    assert platforms["linux/arm64"] == {"platform": "linux/arm64", "same": False, "only": "a"}
    assert platforms["linux/arm/v7"] == {"platform": "linux/arm/v7", "same": False, "only": "b"}
    _, text, _ = kiln_diff(f"oci-layout://{a}", f"oci-layout://{b}")
    assert "linux/arm64: only in A" in text and "linux/arm/v7: only in B" in text


def test_an_image_against_an_index_uses_the_entry_for_its_platform(tmp_path: Path) -> None:
    index = build(tmp_path, "index", "linux/amd64,linux/arm64")
    arm = build(tmp_path, "arm", "linux/arm64")
    code, out, err = kiln_diff("--format", "json", f"oci-layout://{index}", f"oci-layout://{arm}")
    assert code == 0, err
    doc = json.loads(out)
    assert "B is one image (linux/arm64)" in doc["note"]
    assert [p["platform"] for p in doc["platforms"]] == ["linux/arm64"]
    # The same image against an index whose arm64 entry differs: a difference, in that platform.
    other = build(tmp_path, "other", "linux/amd64,linux/arm64", arm64_text="other\n")
    code, text, _ = kiln_diff(f"oci-layout://{arm}", f"oci-layout://{other}")
    assert code == 1
    assert "note: A is one image (linux/arm64)" in text and "~ /arch.txt:" in text
    # An index without the image's platform: a difference, said as such.
    amd = build(tmp_path, "amd", "linux/amd64,linux/arm/v7")
    code, text, _ = kiln_diff(f"oci-layout://{arm}", f"oci-layout://{amd}")
    assert code == 1
    assert "without an entry for it" in text and "linux/arm64: only in A" in text


def test_with_platform_one_image_of_each_as_before(tmp_path: Path) -> None:
    a = build(tmp_path, "a", "linux/amd64,linux/arm64")
    b = build(tmp_path, "b", "linux/amd64,linux/arm64", arm64_text="aarch64\n")
    code, out, _ = kiln_diff("--format", "json", "--platform", "linux/amd64", f"oci-layout://{a}", f"oci-layout://{b}")
    assert code == 0
    doc = json.loads(out)
    assert "platforms" not in doc and doc["same"] is True
    code, out, _ = kiln_diff("--format", "json", "--platform", "linux/arm64", f"oci-layout://{a}", f"oci-layout://{b}")
    assert code == 1
    assert {d["where"] for d in json.loads(out)["differences"]} == {"/arch.txt"}


def test_a_layout_index_against_its_registry_copy(tmp_path: Path, registry: Registry) -> None:
    ref = registry.ref("diff/multi", "v1")
    layout = build(tmp_path, "a", "linux/amd64,linux/arm64", "--destination", ref, "--insecure")
    other = build(tmp_path, "b", "linux/amd64,linux/arm64", arm64_text="changed\n")
    code, out, err = kiln_diff("--insecure", f"oci-layout://{layout}", ref)
    assert code == 0, err
    assert "no differences in 2 platforms" in out
    code, out, err = kiln_diff("--insecure", "--format", "json", ref, f"oci-layout://{other}")
    assert code == 1, err
    platforms = by_platform(json.loads(out))
    assert platforms["linux/amd64"]["same"] and not platforms["linux/arm64"]["same"]
    assert platforms["linux/arm64"]["a"].startswith(f"{registry.address}/diff/multi@sha256:")
    # A registry image alone against the index in the layout: its platform's entry.
    single = registry.ref("diff/single", "v1")
    build(tmp_path, "c", "linux/arm64", "--destination", single, "--insecure")
    code, out, err = kiln_diff("--insecure", single, f"oci-layout://{other}")
    assert code == 1, err
    assert "note: A is one image (linux/arm64)" in out


def test_read_index_of_each_kind(tmp_path: Path, registry: Registry) -> None:
    ref = registry.ref("diff/readindex", "v1")
    layout = build(tmp_path, "a", "linux/amd64,linux/arm64", "--destination", ref, "--insecure")
    single = build(tmp_path, "b", "linux/arm64")
    opts = RegistryOptions(insecure=True)
    from_layout = read_index(ImageAddress.parse(f"oci-layout://{layout}:v1"), opts)  # the destination's tag
    from_registry = read_index(ImageAddress.parse(ref), opts)
    assert isinstance(from_layout, Index) and from_layout == from_registry
    assert sorted(str(d.platform) for d in from_layout.manifests) == ["linux/amd64", "linux/arm64"]
    assert read_index(ImageAddress.parse(f"oci-layout://{single}"), opts) is None
    # An entry by digest is one image, and opens as one.
    arm = next(d for d in from_layout.manifests if d.platform == Platform("linux", "arm64"))
    at = entry_address(ImageAddress.parse(f"oci-layout://{layout}:v1"), arm.digest)
    assert str(at) == f"oci-layout://{layout}@{arm.digest}"
    assert read_index(at, opts) is None
    assert str(entry_address(ImageAddress.parse(ref), arm.digest)) == f"{registry.address}/diff/readindex@{arm.digest}"
    assert read_index(entry_address(ImageAddress.parse(ref), arm.digest), opts) is None


def test_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    a = build(tmp_path, "a", "linux/amd64,linux/arm64")
    code, out, err = kiln_diff(f"oci-layout://{a}", f"oci-layout://{tmp_path}/missing")
    assert code == 2 and out == ""
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
