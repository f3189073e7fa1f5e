"""kiln build against a real registry, as users run it: FROM a pushed base, push to several tags, digest files,
cross-repository mounts for the base layers, and an image skopeo reads back with the same digest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
