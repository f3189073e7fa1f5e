"""The two builders, driven the same way: build a case's Dockerfile and push the image to the registry.

Each run is timed from the start of the first command to the end of the last (kiln: one `kiln build` that
pushes; buildah: `buildah build` then `buildah push`), while a sampler follows the RSS of the process tree.
What a run leaves behind (the built image, kiln's new blobs) is removed after it, untimed, so every run starts
from the same state: base images loaded, nothing else.

A case marked in_place runs kiln as kaniko runs: `kiln build --in-place` in a fresh throwaway root of its own
(bench/inplace.py), on the same kiln state; buildah builds it as it builds every case.

A case marked cold starts each run from empty state, as a CI build in a fresh pod: kiln gets a new --kiln-dir,
buildah a new --root/--runroot, and the base is pulled from the suite's base registry (plain HTTP on 127.0.0.1)
inside the timed run. The state is removed after the run, untimed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.cases import Case
from bench.images import BaseImages
from bench.inplace import InPlaceRoot
from bench.memory import TreeSampler
from bench.paths import KILN, use_test_support
from bench.phases import KilnEvents, parse_events

use_test_support()
from support.base_images import OciImage  # noqa: E402
from support.buildah import Buildah  # noqa: E402
from support.procs import describe_failure  # noqa: E402
from support.rootless import kiln_command  # noqa: E402

RUN_TIMEOUT = 1800.0


def base_name(base: str) -> str:
    return f"localhost/bench/{base}"


@dataclass
class RunOutcome:
    seconds: float
    peak_rss: int
    ok: bool
    error: str = ""
    events: KilnEvents | None = None
    log_tail: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class _Timed:
    seconds: float
    peak_rss: int
    returncode: int
    stdout: bytes
    stderr: bytes


def timed_commands(commands: list[tuple[list[str], dict[str, str] | None]], sampler_interval: float) -> _Timed:
    """Run the commands one after the other (stopping at a failure); wall time and peak tree RSS of them all."""
    peak = 0
    started = time.perf_counter()
    out = err = b""
    code = 0
    for argv, env in commands:
        sampler = TreeSampler(interval=sampler_interval)
        full_env = {**os.environ, **env} if env else None
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env,
                                stdin=subprocess.DEVNULL)  # fmt: skip
        sampler.start(proc.pid)
        try:
            out, err = proc.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        except BaseException:
            # Interrupted: stop the builder before the tmpfs under it is unmounted.
            proc.kill()
            proc.wait()
            sampler.stop()
            raise
        peak = max(peak, sampler.stop())
        code = proc.returncode
        if code != 0:
            out, err = out, describe_failure(argv, code, out, err).encode()
            break
    return _Timed(time.perf_counter() - started, peak, code, out, err)


class KilnBuilder:
    name = "kiln"

    def __init__(self, state: Path, registry_address: str, sampler_interval: float = 0.02) -> None:
        self.kiln_dir = state / "kiln"
        self.cold_kiln_dir = state / "kiln-cold"
        self.cache_dir = state / "kiln-cache"
        self.roots = state / "in-place-roots"
        self.registry_address = registry_address
        self.sampler_interval = sampler_interval
        self.bases: dict[str, OciImage] = {}

    def load_bases(self, bases: BaseImages, names: tuple[str, ...], scratch: Path) -> None:
        """Give kiln its bases and build once on each, untimed, so layers are in its stores before timing."""
        for name in names:
            self.bases[base_name(name)] = bases[name]
            ctx = scratch / f"kiln-preload-{name}"
            ctx.mkdir(parents=True, exist_ok=True)
            (ctx / "Dockerfile").write_text(f"FROM {base_name(name)}\nRUN true\n")
            result = timed_commands([(self._argv(ctx, ctx / "Dockerfile", None, ()), None)], self.sampler_interval)
            if result.returncode != 0:
                raise RuntimeError(f"kiln could not load base {name}:\n{result.stderr.decode(errors='replace')}")

    def _argv(self, context: Path, dockerfile: Path, dest: str | None, flags: tuple[str, ...],
              where: Callable[[Path], str] = str, kiln_dir: Path | None = None) -> list[str]:  # fmt: skip
        """kiln's command line; `where` says how a host path is named where kiln runs (in place: in its root)."""
        argv = [where(KILN), "build", "--context", where(context), "--dockerfile", where(dockerfile),
                "--kiln-dir", where(kiln_dir or self.kiln_dir), "--log-format", "json"]  # fmt: skip
        text = dockerfile.read_text()
        for ref, image in self.bases.items():
            if ref in text:
                argv += ["--build-context", f"{ref}=oci-layout://{where(image.layout)}:{image.tag}"]
        if dest is None:
            argv.append("--no-push")
        else:
            argv += ["--destination", dest, "--insecure", "--insecure-registry", self.registry_address]
        if "--cache" in flags:
            argv += [f"--cache-repo=oci:{where(self.cache_dir)}"]  # kiln's local layer cache (kaniko's spelling)
        return [*argv, *flags]

    def run(self, case: Case, context: Path, dockerfile: Path, dest: str) -> RunOutcome:
        return self._run_case(case, context, dockerfile, dest if case.push else None)

    def _run_case(self, case: Case, context: Path, dockerfile: Path, dest: str | None) -> RunOutcome:
        before = self._blobs()
        if case.cold:
            t = self._run_cold(case, context, dockerfile, dest)
        elif case.rootless:
            t = self._run_rootless(case, context, dockerfile, dest)
        elif case.in_place:
            t = self._run_in_place(case, context, dockerfile, dest)
        else:
            argv = self._argv(context, dockerfile, dest, case.kiln_args)
            t = timed_commands([(argv, None)], self.sampler_interval)
        lines = t.stderr.decode(errors="replace").splitlines()
        events = parse_events(lines)
        self._remove_new_blobs(before)
        error = "" if t.returncode == 0 else _last_error(t.stderr)
        return RunOutcome(t.seconds, t.peak_rss, t.returncode == 0, error, events, "\n".join(lines[-30:]))

    def _run_cold(self, case: Case, context: Path, dockerfile: Path, dest: str | None) -> _Timed:
        """One build on an empty --kiln-dir, its base pulled (the Dockerfile names the base registry)."""
        shutil.rmtree(self.cold_kiln_dir, ignore_errors=True)
        try:
            argv = self._argv(context, dockerfile, dest, (*case.kiln_args, "--insecure-pull"),
                              kiln_dir=self.cold_kiln_dir)  # fmt: skip
            return timed_commands([(argv, None)], self.sampler_interval)
        finally:
            shutil.rmtree(self.cold_kiln_dir, ignore_errors=True)

    def _run_rootless(self, case: Case, context: Path, dockerfile: Path, dest: str | None) -> _Timed:
        """One build by the user kiln-rootless, on its own --kiln-dir (loaded by an untimed first build)."""
        kiln_dir = self.kiln_dir.parent / "kiln-rootless"
        as_user = kiln_command("kiln-rootless")
        if not kiln_dir.exists():
            kiln_dir.mkdir()
            shutil.chown(kiln_dir, "kiln-rootless", "kiln-rootless")
            load = self._argv(context, dockerfile, None, case.kiln_args, kiln_dir=kiln_dir)
            timed_commands([([*as_user, *load[1:]], None)], self.sampler_interval)
        argv = self._argv(context, dockerfile, dest, case.kiln_args, kiln_dir=kiln_dir)
        return timed_commands([([*as_user, *argv[1:]], None)], self.sampler_interval)

    def _run_in_place(self, case: Case, context: Path, dockerfile: Path, dest: str | None) -> _Timed:
        """One `kiln build --in-place` in a fresh root on the tmpfs (untimed: making it and removing it)."""
        self.roots.mkdir(parents=True, exist_ok=True)
        layouts = {ref.rpartition("/")[2]: image.layout for ref, image in self.bases.items()}
        # A directory of mkdtemp's for a unique name; the root inside it gets its own mode (mkdtemp's is 0700).
        root = InPlaceRoot.for_build(Path(tempfile.mkdtemp(prefix=f"{case.name}-", dir=self.roots)) / "root",
                                     context, self.kiln_dir, layouts, image_usr=case.image_usr)  # fmt: skip
        root.prepare()
        try:
            argv = self._argv(context, dockerfile, dest, ("--in-place", *case.kiln_args), where=root.inside)
            return timed_commands([(root.command(argv), None)], self.sampler_interval)
        finally:
            root.remove()
            root.root.parent.rmdir()

    def _blobs(self) -> set[Path]:
        root = self.kiln_dir / "blobs"
        return {Path(d) / f for d, _, files in os.walk(root) for f in files} if root.is_dir() else set()

    def _remove_new_blobs(self, before: set[Path]) -> None:
        # The pushed image's blobs would pile up run after run (GiBs in the big-file case) on the tmpfs.
        for path in self._blobs() - before:
            path.unlink(missing_ok=True)


class BuildahBuilder:
    name = "buildah"

    def __init__(self, state: Path, registry_address: str, sampler_interval: float = 0.02) -> None:
        self.state = state
        self.buildah = Buildah(state / "buildah")
        self.registry_address = registry_address
        self.sampler_interval = sampler_interval
        self._loaded: set[str] = set()

    def load_bases(self, bases: BaseImages, names: tuple[str, ...], scratch: Path) -> None:
        for name in names:
            if name in self._loaded:
                continue
            image_id = self.buildah("pull", "--quiet", self.buildah.oci_ref(bases[name])).stdout.decode().split()[-1]
            self.buildah("tag", image_id, base_name(name))
            self._loaded.add(name)

    def run(self, case: Case, context: Path, dockerfile: Path, dest: str) -> RunOutcome:
        if not case.cold:
            return self._run(self.buildah, case, context, dockerfile, dest, ["--pull=never"])
        cold = Buildah(self.state / "buildah-cold")  # empty storage: the base is pulled inside the timed run
        try:
            return self._run(cold, case, context, dockerfile, dest, ["--pull=always", "--tls-verify=false"])
        finally:
            cold.cleanup()

    def _run(self, buildah: Buildah, case: Case, context: Path, dockerfile: Path, dest: str,
             pull: list[str]) -> RunOutcome:  # fmt: skip
        tag = "localhost/bench/output:latest"
        layers = [] if any(f.startswith("--layers") for f in case.buildah_flags) else ["--layers=false"]
        # Several platforms: buildah's way is a manifest list, pushed with every image.
        several = case.platforms is not None and "," in case.platforms
        target = ["--manifest", tag] if several else ["-t", tag]
        platform = ["--platform", case.platforms] if case.platforms else []
        # --network=host, as kiln's RUN steps have: the same work, and no bridge set up on the host per step.
        build = buildah.argv("build", *layers, *pull, "--format", "oci", "--quiet", "--network=host",
                             "-f", str(dockerfile), *target, *platform, *case.buildah_flags, str(context))  # fmt: skip
        push = buildah.argv(*(("manifest", "push", "--all") if several else ("push",)), "--quiet",
                            "--tls-verify=false", tag, f"docker://{dest}")  # fmt: skip
        commands = [(build, buildah.env), *([(push, buildah.env)] if case.push else [])]
        t = timed_commands(commands, self.sampler_interval)
        if several:
            buildah("manifest", "rm", tag, check=False)
        if not any(f.startswith("--layers=true") for f in case.buildah_flags):
            buildah("rmi", "--force", tag, check=False)
        buildah("rm", "--all", check=False)
        error = "" if t.returncode == 0 else _last_error(t.stderr)
        return RunOutcome(t.seconds, t.peak_rss, t.returncode == 0, error,
                          log_tail=t.stderr.decode(errors="replace")[-3000:])  # fmt: skip

    def cleanup(self) -> None:
        self.buildah.cleanup()


def _last_error(stderr: bytes) -> str:
    lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if '"event": "error"' in line or "rror" in line:
            return line.strip()[:300]
    return (lines[-1] if lines else "failed")[:300]
