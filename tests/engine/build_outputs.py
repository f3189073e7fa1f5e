"""Reading what a `kiln build` run reported (its --log-format json events) and what its OCI layout holds."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

Events = list[dict[str, object]]


def json_events(stderr: str) -> Events:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def cached_steps(events: Events) -> list[bool]:
    """For each step of the build, whether it was replayed from the layer cache."""
    return [bool(e["cached"]) for e in events if e["event"] == "step_done"]


def image_digest(events: Events) -> str:
    return str(next(e["digest"] for e in events if e["event"] == "summary"))


def layout_file(layout: Path, name: str) -> str:
    """A file's content in the image of an OCI layout: the topmost layer that has it."""
    index = json.loads((layout / "index.json").read_text())
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"].split(":")[1]).read_text())
    found = None
    for layer in manifest["layers"]:
        with tarfile.open(blobs / layer["digest"].split(":")[1]) as tar:
            member = next((m for m in tar.getmembers() if m.name == name), None)
            if member is not None:
                f = tar.extractfile(member)
                assert f is not None
                found = f.read().decode()
    assert found is not None, f"{name} not in the image"
    return found


def write_context(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (ctx / name).write_text(text)
