"""Helpers of the tests of kiln's image: running it (pod.py), building on the host, comparing (kiln diff).

The image is built once per session. Each test unpacks it afresh (a build in place rewrites the container's
root). Results are compared with `kiln diff` against the same Dockerfile built by kiln's namespaced mode on
the host; layouts and bundles are read by umoci and skopeo, not by the code under test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from pod import Bind, image_env, run_in_pod

from support.base_images import OciImage
from support.mounts import remove_tree
from support.registry import Registry

REPO = Path(__file__).resolve().parents[2]
KILN = REPO / ".venv" / "bin" / "kiln"


def only_tag(layout: Path) -> str:
    index = json.loads((layout / "index.json").read_text())
    names = [m.get("annotations", {}).get("org.opencontainers.image.ref.name") for m in index["manifests"]]
    assert len(names) == 1 and names[0], names
    return str(names[0])


@dataclass(frozen=True)
class KilnImage:
    image: OciImage
    log: str
    tar: Path | None = None  # the docker-archive, when asked for (tar=True)


@dataclass
class Container:
    """An unpacked copy of kiln's image: bundle/rootfs, and the runtime config umoci wrote for it."""

    bundle: Path

    @property
    def rootfs(self) -> Path:
        return self.bundle / "rootfs"

    @property
    def config(self) -> dict[str, object]:
        return json.loads((self.bundle / "config.json").read_text())

    @property
    def env(self) -> dict[str, str]:
        return image_env(self.config)

    def run(
        self, argv: Sequence[str], binds: Sequence[Bind] = (), timeout: float = 900,
        termination_log: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        process = self.config["process"]
        assert isinstance(process, dict)
        return run_in_pod(self.rootfs, argv, self.env, binds, cwd=str(process["cwd"]), timeout=timeout,
                          termination_log=termination_log)  # fmt: skip


def described(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"


def executor_argv(registry: Registry, context: str, destination: str, *extra: str) -> list[str]:
    """kaniko's arguments, as a pipeline passes them (plain-HTTP test registry: --insecure-registry)."""
    return ["/kaniko/executor", "--context", f"dir://{context}", "--dockerfile", "Dockerfile",
            "--destination", destination, "--insecure-registry", registry.address, *extra]  # fmt: skip


def host_build(registry: Registry, context: Path, out: Path, kiln_dir: Path, *extra: str) -> Path:
    """The same Dockerfile built by kiln's namespaced mode on the host, into an OCI layout."""
    layout = out / "layout"
    proc = subprocess.run(
        [str(KILN), "build", "--context", str(context), "--no-push", "--destination", "localhost/host:built",
         "--oci-layout-path", str(layout), "--kiln-dir", str(kiln_dir), "--insecure-registry", registry.address,
         *extra],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, "namespaced build on the host failed: " + described(proc)
    remove_tree(kiln_dir)
    return layout


def kiln_diff(a: str, b: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KILN), "diff", "--insecure", *extra, a, b],
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip


def write_context(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def build_kiln_image(tmp_path_factory: pytest.TempPathFactory, *flags: str, tar: bool = False) -> KilnImage:
    """kiln's image built by scripts/image.sh (flags: more of its flags), into a new OCI layout (and a
    docker-archive with tar=True)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts, chroot, namespaces)")
    work = tmp_path_factory.mktemp("kiln-image")
    layout = work / "layout"
    archive = work / "kiln.tar" if tar else None
    proc = subprocess.run(
        ["bash", str(REPO / "scripts/image.sh"), "--oci-layout-path", str(layout), "--kiln-dir", str(work / "kd"),
         *(["--tar", str(archive)] if archive else []), *flags],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, (
        f"scripts/image.sh failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    remove_tree(work / "kd")
    return KilnImage(OciImage(layout, only_tag(layout)), proc.stdout + proc.stderr, archive)
