"""Running `kiln build` as users do (a subprocess) and checking what it leaves behind.

Nothing here reads images through kiln: layouts are read with tests/support/images.py (tarfile, umoci,
skopeo), so an expected value never comes from the code under test.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from support.base_images import OciImage
from support.images import TarEntry, layer_entries, read_config, read_manifest
from support.mounts import mounts_under

REPO = Path(__file__).resolve().parents[2]
KILN = REPO / ".venv" / "bin" / "kiln"
TAG = "test"
DESTINATION = f"localhost/kiln-integ:{TAG}"


@dataclass
class Outcome:
    """One `kiln build`: its exit status, output, and where its image went."""

    returncode: int
    stdout: str
    stderr: str
    layout: Path
    tar: Path | None
    seconds: float
    argv: list[str] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return TAG

    @property
    def ref(self) -> str:
        return f"oci:{self.layout}:{TAG}"

    def describe(self) -> str:
        return (
            f"kiln exited {self.returncode}: {' '.join(self.argv)}\n"
            f"--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-4000:]}"
        )

    def ok(self) -> Outcome:
        assert self.returncode == 0, self.describe()
        return self

    def failed(self) -> Outcome:
        assert self.returncode != 0, "the build was expected to fail:\n" + self.describe()
        return self

    # --- reading the result (independently of kiln) ---

    def config(self) -> dict:  # type: ignore[type-arg]
        return read_config(self.layout, TAG)

    def manifest(self) -> dict:  # type: ignore[type-arg]
        return read_manifest(self.layout, TAG)

    def layers(self) -> list[list[TarEntry]]:
        return layer_entries(self.layout, TAG)

    def new_layers(self, base_count: int) -> list[dict[str, TarEntry]]:
        """The layers this build added above a base of base_count layers, each as {path: entry}."""
        return [{e.name: e for e in layer} for layer in self.layers()[base_count:]]


def layer_count(image: OciImage) -> int:
    return len(read_manifest(image.layout, image.tag)["layers"])


@dataclass
class Kiln:
    """`kiln build` with a work directory of its own (one per test)."""

    kiln_dir: Path
    out_dir: Path
    contexts: dict[str, OciImage] = field(default_factory=dict)
    _n: int = 0

    def build(
        self,
        context: Path | str,
        *args: str,
        dockerfile: Path | str | None = None,
        tar: bool = False,
        stdin: bytes | None = None,
        layout: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 900,
        wrapper: Sequence[str] = (),
    ) -> Outcome:
        """kiln build CONTEXT ARGS, writing an OCI layout (tag TAG) and, with tar, a docker-archive."""
        self._n += 1
        out = layout or self.out_dir / f"layout-{self._n}"
        tar_path = self.out_dir / f"image-{self._n}.tar" if tar else None
        argv = [str(KILN), "build", "--context", str(context), "--kiln-dir", str(self.kiln_dir),
                "--destination", DESTINATION, "--no-push", "--oci-layout-path", str(out)]  # fmt: skip
        if tar_path is not None:
            argv += ["--tar-path", str(tar_path)]
        if dockerfile is not None:
            argv += ["--dockerfile", str(dockerfile)]
        for name, image in self.contexts.items():
            argv += ["--build-context", f"{name}=oci-layout://{image.layout}:{image.tag}"]
        argv += list(args)
        full_env = dict(os.environ)
        full_env.update(env or {})
        started = time.monotonic()
        proc = subprocess.run([*wrapper, *argv], input=stdin, capture_output=True, timeout=timeout, env=full_env,
                              check=False)
        return Outcome(
            proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"),
            out, tar_path, time.monotonic() - started, argv,
        )  # fmt: skip

    def assert_clean(self) -> None:
        """After any build, successful or not: kiln's tmp/ is empty and nothing is mounted below kiln_dir."""
        mounted = mounts_under(self.kiln_dir)
        assert not mounted, f"still mounted below {self.kiln_dir}: {mounted}"
        tmp = self.kiln_dir / "tmp"
        left = sorted(os.listdir(tmp)) if tmp.is_dir() else []
        assert not left, f"{tmp} is not empty after the build: {left}"


def write_context(root: Path, files: Mapping[str, str | bytes]) -> Path:
    """Create files under root: {relative path: content}; a path ending in '/' makes a directory."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def files_in(layer: Mapping[str, TarEntry]) -> dict[str, str]:
    """{path: type} of one layer, for readable asserts."""
    return {name: e.type for name, e in layer.items()}


def tar_of(directory: Path, out: Path, mode: Literal["w", "w:gz"] = "w") -> Path:
    """A tar of directory's contents (names relative to it), made with tarfile: not kiln."""
    with tarfile.open(out, mode) as tf:
        for name in sorted(os.listdir(directory)):
            tf.add(directory / name, arcname=name)
    return out


def run_tool(argv: Sequence[str | os.PathLike[str]], **kw: object) -> subprocess.CompletedProcess[bytes]:
    from support.procs import run

    return run(argv, **kw)  # type: ignore[arg-type]


# --- fixtures (imported by the conftest files that use them) ---


@pytest.fixture
def kiln(tmp_path: Path) -> Iterator[Kiln]:
    """`kiln.build(context, *flags)`; after the test, kiln's tmp/ must be empty and nothing left mounted."""
    k = Kiln(tmp_path / "kiln", tmp_path / "out")
    k.out_dir.mkdir()
    yield k
    k.assert_clean()


@pytest.fixture
def kiln_bb(kiln: Kiln, busybox_image: OciImage) -> Kiln:
    """kiln with `FROM busybox` naming the busybox test layout."""
    kiln.contexts["busybox"] = busybox_image
    return kiln


@pytest.fixture
def kiln_deb(kiln: Kiln, debian_image: OciImage) -> Kiln:
    """kiln with `FROM debian` naming the Debian test layout (and busybox too)."""
    kiln.contexts["debian"] = debian_image
    return kiln
