"""Running the cases: bases loaded, then kiln and buildah alternately, each run pushing to a fresh registry."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.builders import BuildahBuilder, KilnBuilder
from bench.cases import Case
from bench.goals import issue_goals
from bench.images import BaseImages, prepare_bases
from bench.machine import describe_machine
from bench.overheads import import_times, per_run, push_cost
from bench.paths import RESULTS, bench_cache_dir, use_test_support
from bench.pushed import empty_storage, stored_bytes
from bench.report import render, write_json
from bench.results import CaseResult, run_record
from bench.targets import evaluate, measure_gzip, targets_json
from bench.tmpfs import mounted_tmpfs

use_test_support()
from support.base_images import push  # noqa: E402
from support.binfmt import acquire, holder_id, release  # noqa: E402
from support.registry import Registry, start_registry  # noqa: E402


@dataclass(frozen=True)
class Settings:
    repetitions: int = 3
    heavy_repetitions: int = 3
    sampler_interval: float = 0.02
    tmpfs_size: str = "20g"
    results_dir: Path = RESULTS
    measure_gzip: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "repetitions": self.repetitions,
            "heavy_repetitions": self.heavy_repetitions,
            "sampler_interval_ms": round(self.sampler_interval * 1000),
            "order": "alternating: kiln, buildah, kiln, buildah, ...",
            "state": f"tmpfs (size limit {self.tmpfs_size}) for kiln --kiln-dir, buildah --root/--runroot, "
            "contexts and the registry's storage",
            "memory": "sum of /proc/PID/statm resident pages over the process tree, sampled",
            "buildah": "buildah build --layers=false --pull=never --format oci, then buildah push; "
            "--runtime /usr/sbin/runc --storage-driver overlay",
            "kiln": "kiln build --log-format json --destination REGISTRY --insecure",
            "kiln_in_place": "cases marked in place: kiln build --in-place in a fresh root on the tmpfs per run "
            "(bench/inplace.py: unshare --mount --pid, bind mounts, pivot_root, $container, /.kiln-in-place; "
            "the host's /usr at /usr, or bound aside for the -imageusr case), timed from unshare to exit",
            "kiln_rootless": "cases marked rootless: kiln build run by the user kiln-rootless (runuser, Debian's "
            "python3), which enters a user namespace of its own (newuidmap), on a --kiln-dir of its own loaded "
            "by one untimed build",
        }


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Bench:
    """What every case runs against: both builders, the registry, the tmpfs and the base images."""

    kiln: KilnBuilder
    buildah: BuildahBuilder
    registry_storage: Path
    registry_address: str
    work: Path
    bases: BaseImages
    base_registry: Registry | None = None
    """Where cold cases pull their bases from (not the push target, whose storage is emptied before each run)."""
    pushed_bases: set[str] = field(default_factory=set)


def run_case(case: Case, reps: int, bench: Bench) -> CaseResult:
    kiln, buildah, registry_storage = bench.kiln, bench.buildah, bench.registry_storage
    registry_address, work = bench.registry_address, bench.work
    result = CaseResult(case.name, case.description, namespaced_case=case.namespaced)
    context = work / "contexts" / case.name
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    try:
        case.make_context(context)
        dockerfile = context / "Dockerfile"
        dockerfile.write_text(_cold_dockerfile(case, bench) if case.cold else case.dockerfile)
        failed: dict[str, str] = {}
        builders: list[KilnBuilder | BuildahBuilder] = [kiln, buildah]
        # Untimed: the bases, and for the cached case a first build that fills the caches.
        for builder in builders:
            try:
                if not case.cold:
                    builder.load_bases(bench.bases, case.bases, work / "preload")
                if case.needs_cache:
                    out = builder.run(case, context, dockerfile, f"{registry_address}/bench/warmup:{builder.name}")
                    if not out.ok:
                        failed[builder.name] = out.error
            except Exception as e:  # noqa: BLE001 - a builder that cannot even start is reported, not fatal
                failed[builder.name] = f"loading bases: {e}"[:500]
        for i in range(reps):
            for builder in builders:
                if builder.name in failed:
                    continue
                empty_storage(registry_storage)
                dest = f"{registry_address}/bench/{case.name}:{builder.name}-{i}"
                _log(f"  {case.name}: {builder.name} run {i + 1}/{reps}")
                outcome = builder.run(case, context, dockerfile, dest)
                run = run_record(builder.name, i, outcome, stored_bytes(registry_storage) if outcome.ok else 0)
                result.runs.append(run)
                _log(f"    {run.seconds:.2f}s peak {run.peak_rss / 1e6:.0f} MB pushed {run.pushed_bytes / 1e6:.1f} MB"
                     + ("" if outcome.ok else f"  FAILED: {outcome.error}\n{outcome.log_tail}"))  # fmt: skip
                if not outcome.ok:
                    failed[builder.name] = outcome.error
        # Errors name files in the context: the case name already says which.
        failed = {k: v.replace(f"{context}/", "") for k, v in failed.items()}
        if "kiln" in failed:
            result.status = "n/a" if case.needs_cache else "error"
            result.reason = f"kiln: {failed['kiln']}"
        elif case.needs_cache and any(r.cache_hits == 0 for r in result.runs if r.builder == "kiln"):
            # Config-only steps and WORKDIR are never "cached" (they are not looked up, as in kaniko): the rebuild
            # counts as cached when kiln replayed steps from its cache (tests/build/test_build_cache.py checks
            # that every RUN and COPY is replayed).
            result.status = "n/a"
            result.reason = "kiln's rebuild was not served from its cache"
        if "buildah" in failed and result.status == "ok":
            result.status = "error"
            result.reason = f"buildah: {failed['buildah']}"
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return result


class _Arm64Emulation:
    """aarch64 binaries run while the arm64 cases do (the tests' binfmt_misc lease: kiln's qemu entry registered
    unless one is, and removed after, so the host is left as found)."""

    def __init__(self, wanted: bool) -> None:
        self.holder = holder_id() if wanted else None

    def __enter__(self) -> None:
        if self.holder is not None:
            acquire(self.holder)

    def __exit__(self, *exc: object) -> None:
        if self.holder is not None:
            release(self.holder)


def _cold_dockerfile(case: Case, bench: Bench) -> str:
    """The case's Dockerfile with its bases named in the base registry, where both builders pull them from."""
    if bench.base_registry is None:
        bench.base_registry = start_registry(bench.work / "base-registry")
    text = case.dockerfile
    for base in case.bases:
        ref = bench.base_registry.ref(f"bench/{base}")
        if base not in bench.pushed_bases:
            push(bench.bases[base], ref, bench.base_registry.skopeo_flags("dest"))
            bench.pushed_bases.add(base)
        text = text.replace(f"localhost/bench/{base}\n", f"{ref}\n")
    return text


def run_suite(cases: list[Case], settings: Settings) -> tuple[list[CaseResult], Path, str]:
    """Run the cases; returns the results, the JSON file written and the printed report."""
    machine = describe_machine()
    gzip = measure_gzip() if settings.measure_gzip else None
    _log("preparing base images (built once, cached in .cache/)")
    bases = prepare_bases({b for c in cases for b in c.bases}, bench_cache_dir())
    results: list[CaseResult] = []
    with mounted_tmpfs(settings.tmpfs_size) as tmp:
        registry = start_registry(tmp / "registry")
        kiln = KilnBuilder(tmp / "state", registry.address, settings.sampler_interval)
        buildah = BuildahBuilder(tmp / "state", registry.address, settings.sampler_interval)
        bench = Bench(kiln, buildah, registry.storage, registry.address, tmp, bases)
        emulation = _Arm64Emulation(any(c.platforms and "arm64" in c.platforms for c in cases))
        try:
            _log("import times (python -X importtime)")
            imports = import_times(tmp, settings.repetitions)
            with emulation:
                for case in cases:
                    reps = settings.heavy_repetitions if case.heavy else settings.repetitions
                    _log(f"case {case.name}: {case.description}")
                    results.append(run_case(case, reps, bench))
        finally:
            registry.stop()
            if bench.base_registry is not None:
                bench.base_registry.stop()
            buildah.cleanup()
    overheads = {"imports": imports, "per_run": per_run(results), "push": push_cost(results)}
    targets = evaluate(results, gzip) + issue_goals(results, overheads)
    report = render(results, targets, settings.to_json(), overheads)
    path = write_json(settings.results_dir, machine, settings.to_json(), gzip, results, targets_json(targets),
                      overheads)  # fmt: skip
    return results, path, report
