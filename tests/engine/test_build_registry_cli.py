"""kiln build against a real registry, as users run it: FROM a pushed base, push to several tags, digest files,
cross-repository mounts for the base layers, and an image skopeo reads back with the same digest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.images import read_layer_file
from support.registry import Registry


def _kiln(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kiln", *args], capture_output=True, text=True)


def test_build_from_registry_push_and_digest_files(registry: Registry, busybox_ref: str, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {busybox_ref}\nRUN echo built > /built.txt\nCOPY Dockerfile /df\n")
    dest1, dest2 = registry.ref("kiln/out", "one"), registry.ref("kiln/out", "two")
    mark = registry.log_mark()
    r = _kiln(
        "build", "--context", str(ctx), "--kiln-dir", str(tmp_path / "kiln"), "--insecure-pull", "--insecure",
        "-d", dest1, "-d", dest2,
        "--digest-file", str(tmp_path / "digest"),
        "--image-name-with-digest-file", str(tmp_path / "names"),
        "--image-name-tag-with-digest-file", str(tmp_path / "tags"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    digest = (tmp_path / "digest").read_text()
    for ref in (dest1, dest2):
        inspected = json.loads(
            subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
                           capture_output=True, text=True, check=True).stdout
        )
        assert inspected["Digest"] == digest
        assert len(inspected["Layers"]) == 3  # the base layer, RUN, COPY
    repo = dest1.rsplit(":", 1)[0]
    assert (tmp_path / "names").read_text().splitlines() == [f"{repo}@{digest}", f"{repo}@{digest}"]
    assert (tmp_path / "tags").read_text().splitlines() == [f"{dest1}@{digest}", f"{dest2}@{digest}"]
    # The base layer came from another repository of the same registry: mounted, not uploaded again.
    requests = registry.requests_since(mark)
    mounts = [uri for method, uri, status in requests if method == "POST" and "mount=" in uri and status == 201]
    assert len(mounts) >= 1, requests


def test_pull_failure_names_the_reference(registry: Registry, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    missing = registry.ref("kiln/does-not-exist", "nope")
    (ctx / "Dockerfile").write_text(f"FROM {missing}\n")
    r = _kiln("build", "--context", str(ctx), "--kiln-dir", str(tmp_path / "kiln"), "--insecure-pull", "--no-push")
    assert r.returncode != 0
    assert "kiln/does-not-exist" in r.stderr
    assert not list((tmp_path / "kiln" / "tmp").iterdir())


def test_the_base_layers_are_pushed_while_the_steps_run(registry: Registry, tmp_path: Path) -> None:
    """The push overlaps the build: a base layer the registry lacks is uploaded while a slow RUN runs, not after
    it (the registry's own log times both)."""
    from datetime import datetime

    from support.base_images import busybox_image, default_cache_dir
    from support.registry import _logfmt_fields

    base = busybox_image(default_cache_dir(Path(__file__).resolve().parents[2]))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN sleep 3 && echo slow > /slow\n")
    mark = registry.log_mark()
    r = _kiln("build", "--context", str(ctx), "--kiln-dir", str(tmp_path / "kiln"), "--insecure",
              "--build-context", f"busybox=oci-layout://{base.layout}:{base.tag}", "-d", registry.ref("kiln/ahead"))
    assert r.returncode == 0, r.stderr
    [layer] = json.loads((base.layout / "blobs" / "sha256" / json.loads((base.layout / "index.json").read_text())
                          ["manifests"][0]["digest"].split(":")[1]).read_text())["layers"]  # fmt: skip
    times: dict[str, datetime] = {}
    for line in registry.log_since(mark).splitlines():
        fields = _logfmt_fields(line)
        uri, method = fields.get("http.request.uri", ""), fields.get("http.request.method")
        if fields.get("msg") != "response completed" or method != "PUT":
            continue
        what = "layer" if layer["digest"].split(":")[1] in uri else "manifest" if "/manifests/" in uri else None
        if what is not None:
            times.setdefault(what, datetime.fromisoformat(fields["time"].replace("Z", "+00:00")))
    assert set(times) == {"layer", "manifest"}, times
    assert (times["manifest"] - times["layer"]).total_seconds() >= 2, times


def test_a_big_layer_is_streamed_to_the_registry_as_it_is_made(registry: Registry, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    big = os.urandom(40 << 20)  # incompressible: its layer is over two stream chunks
    (ctx / "big.bin").write_bytes(big)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY big.bin /big.bin\n")
    ref = registry.ref("kiln/streamed")
    mark = registry.log_mark()
    r = _kiln("build", "--context", str(ctx), "--kiln-dir", str(tmp_path / "kiln"), "--insecure", "-d", ref)
    assert r.returncode == 0, r.stderr
    requests = registry.requests_since(mark)
    patches = [uri for method, uri, status in requests if method == "PATCH" and status == 202]
    assert len(patches) >= 2, requests
    # skopeo checks every blob's digest on the way; the file is the context's.
    layout = tmp_path / "copied"
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}:t"],
                   capture_output=True, check=True)
    assert read_layer_file(layout, "t", "big.bin") == big
