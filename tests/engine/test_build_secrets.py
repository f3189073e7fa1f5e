"""Build secrets (--secret, RUN --mount=type=secret): usable by the step, absent from layers, history, logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from support.base_images import OciImage

SECRET = "s3cr3t-v4lue-do-not-leak"


def _build(tmp_path: Path, dockerfile: str, busybox: OciImage, *extra: str, env: dict[str, str] | None = None
           ) -> tuple[Path, subprocess.CompletedProcess[str]]:  # fmt: skip
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "kiln", "build", "--context", str(ctx), "--kiln-dir", str(tmp_path / "kiln"),
         "--no-push", "--oci-layout-path", str(out), "--log-format", "json",
         "--build-context", f"busybox=oci-layout://{busybox.layout}:{busybox.tag}", *extra],
        capture_output=True, text=True, env={**os.environ, **(env or {})},
    )  # fmt: skip
    return out, r


def _all_layer_bytes_and_config(layout: Path) -> tuple[bytes, bytes]:
    index = json.loads((layout / "index.json").read_text())
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"].split(":")[1]).read_text())
    data = b""
    for layer in manifest["layers"]:
        with tarfile.open(blobs / layer["digest"].split(":")[1]) as tar:
            for m in tar.getmembers():
                data += m.name.encode() + b"\n"
                if m.isfile():
                    data += tar.extractfile(m).read()  # type: ignore[union-attr]
    return data, (blobs / manifest["config"]["digest"].split(":")[1]).read_bytes()


def test_secret_file_and_env_reach_the_step_only(tmp_path: Path, busybox_image: OciImage) -> None:
    secret_file = tmp_path / "token.txt"
    secret_file.write_text(SECRET)
    dockerfile = (
        "FROM busybox\n"
        "RUN --mount=type=secret,id=token cat /run/secrets/token | wc -c > /len-file"
        " && stat -c %a /run/secrets/token > /mode-file\n"
        "RUN --mount=type=secret,id=fromenv,env=TOKEN sh -c 'echo ${#TOKEN}' > /len-env\n"
        "RUN --mount=type=secret,id=absent true\n"
    )
    out, r = _build(tmp_path, dockerfile, busybox_image, "--secret", f"id=token,src={secret_file}",
                    "--secret", "id=fromenv,env=KILN_TEST_SECRET", env={"KILN_TEST_SECRET": SECRET})  # fmt: skip
    assert r.returncode == 0, r.stderr
    layers, config = _all_layer_bytes_and_config(out)
    assert SECRET.encode() not in layers and SECRET.encode() not in config
    assert SECRET not in r.stderr and SECRET not in r.stdout
    assert b"run/secrets" not in layers  # the mount point was a stub: gone with the step
    flat = tmp_path / "flat"
    subprocess.run(["umoci", "raw", "unpack", "--image", f"{out}:latest", str(flat)], check=True, capture_output=True)
    assert (flat / "len-file").read_text().strip() == str(len(SECRET))
    assert (flat / "mode-file").read_text().strip() == "400"
    assert (flat / "len-env").read_text().strip() == str(len(SECRET))
    assert not (flat / "run" / "secrets").exists()


def test_required_secret_missing_fails_with_its_id(tmp_path: Path, busybox_image: OciImage) -> None:
    _, r = _build(tmp_path, "FROM busybox\nRUN --mount=type=secret,id=needed,required=true true\n", busybox_image)
    assert r.returncode != 0
    assert "Dockerfile:2" in r.stderr and "needed" in r.stderr


def test_bad_secret_flag_names_the_flag(tmp_path: Path, busybox_image: OciImage) -> None:
    _, r = _build(tmp_path, "FROM busybox\n", busybox_image, "--secret", f"id=x,src={tmp_path}/missing")
    assert r.returncode == 2
    assert "--secret" in r.stderr
