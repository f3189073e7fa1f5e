"""Two fixed costs the cases' wall times hide: what kiln imports before it works, and what one RUN step costs.

- imports: `python -X importtime` of `kiln --version` and of a FROM scratch COPY build to an OCI layout (what a
  build imports without a base to pull), medians of the total import time (the sum of the top-level imports'
  cumulative times) and of the wall time, with the slowest top-level imports of the last run;
- per RUN: the `run-true` case's step times as kiln reports them (`step_done` seconds: sandbox start to snapshot
  done of a `RUN true`), the median over every step of every run; buildah reports no steps, so its line is the
  case's median wall time (build + push) over its ten RUNs, an upper bound;
- push of a big layer: big-file (1 GiB of random bytes, pushed; its layer streams to the registry as it is
  made) against big-file-local (the same build left local): what the push adds to the wall time, set against
  the compressor's own time and against the time to make the layer without pushing it (tar + compress phases).
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.paths import KILN
from bench.results import CaseResult

RUN_TRUE_CASE = "run-true"
PUSHED_CASE, LOCAL_CASE = "big-file", "big-file-local"
_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def parse_importtime(stderr: str) -> tuple[float, list[tuple[str, float]]]:
    """Total seconds of the top-level imports, and those imports (name, cumulative seconds), slowest first."""
    top: list[tuple[str, float]] = []
    for line in stderr.splitlines():
        m = _LINE.match(line)
        if m and len(m.group(3)) == 1:  # one space after the bar: imported by the program itself
            top.append((m.group(4), int(m.group(2)) / 1e6))
    return sum(s for _, s in top), sorted(top, key=lambda t: -t[1])


def _python() -> str:
    return str(KILN.parent / "python")


def _measure(argv: list[str], reps: int) -> dict[str, Any]:
    totals, walls = [], []
    slowest: list[tuple[str, float]] = []
    for _ in range(reps):
        started = time.perf_counter()
        proc = subprocess.run([_python(), "-X", "importtime", "-m", "kiln", *argv], capture_output=True, text=True,
                              check=False, stdin=subprocess.DEVNULL)  # fmt: skip
        walls.append(time.perf_counter() - started)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1][:300] if proc.stderr.strip() else "failed"}
        total, slowest = parse_importtime(proc.stderr)
        totals.append(total)
    return {
        "import_seconds_median": round(statistics.median(totals), 4),
        "wall_seconds_median": round(statistics.median(walls), 4),
        "slowest_imports": [[name, round(s, 4)] for name, s in slowest[:6]],
        "runs": reps,
    }


def import_times(work: Path, reps: int) -> dict[str, Any]:
    """`kiln --version` and a FROM scratch COPY build to an OCI layout, under -X importtime."""
    with tempfile.TemporaryDirectory(dir=work, prefix="imports-") as tmp:
        ctx = Path(tmp) / "ctx"
        ctx.mkdir()
        (ctx / "hello.txt").write_text("hello\n")
        (ctx / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
        build = ["build", "--context", str(ctx), "--kiln-dir", f"{tmp}/kiln", "--no-push",
                 "--oci-layout-path", f"{tmp}/out", "--log-format", "json"]  # fmt: skip
        return {"kiln --version": _measure(["--version"], reps), "FROM scratch COPY build": _measure(build, reps)}


def per_run(cases: list[CaseResult]) -> dict[str, Any] | None:
    """The fixed cost of a RUN step, from the run-true case."""
    case = next((c for c in cases if c.name == RUN_TRUE_CASE and c.status == "ok"), None)
    if case is None:
        return None
    steps = [s for r in case.runs if r.builder == "kiln" and r.ok for s in r.step_seconds]
    buildah = case.median_seconds("buildah")
    return {
        "kiln_step_seconds_median": round(statistics.median(steps), 4) if steps else None,
        "kiln_steps": len(steps),
        "buildah_wall_per_run_seconds": round(buildah / 10, 4) if buildah is not None else None,
    }


def push_cost(cases: list[CaseResult]) -> dict[str, Any] | None:
    """What pushing a 1 GiB layer adds, from big-file and big-file-local."""
    pushed, local = (next((c for c in cases if c.name == n and c.status == "ok"), None)
                     for n in (PUSHED_CASE, LOCAL_CASE))  # fmt: skip
    if pushed is None or local is None:
        return None
    with_push, without = pushed.median_seconds("kiln"), local.median_seconds("kiln")
    phases = local.kiln_phases()
    if with_push is None or without is None:
        return None
    layer = phases.get("tar", 0.0) + phases.get("compress", 0.0)
    return {
        "kiln_added_seconds": round(with_push - without, 3),
        "kiln_compress_seconds": phases.get("compress"),
        "kiln_layer_seconds_unpushed": round(layer, 3),
        "kiln_layer_seconds_pushed": round(sum(pushed.kiln_phases().get(k, 0.0) for k in ("tar", "compress")), 3),
        "buildah_added_seconds": round((pushed.median_seconds("buildah") or 0.0)
                                       - (local.median_seconds("buildah") or 0.0), 3),
    }


def overhead_lines(overheads: dict[str, Any]) -> str:
    lines = []
    for what, m in (overheads.get("imports") or {}).items():
        if "error" in m:
            lines.append(f"imports, {what}: failed: {m['error']}")
            continue
        slow = ", ".join(f"{n} {s * 1000:.0f} ms" for n, s in m["slowest_imports"][:4])
        imports, wall = m["import_seconds_median"] * 1000, m["wall_seconds_median"] * 1000
        lines.append(f"imports, {what}: {imports:.0f} ms of imports, {wall:.0f} ms wall "
                     f"(medians of {m['runs']}; slowest: {slow})")  # fmt: skip
    run = overheads.get("per_run")
    if run and run["kiln_step_seconds_median"] is not None:
        step, upper = run["kiln_step_seconds_median"] * 1000, run["buildah_wall_per_run_seconds"]
        buildah = f"; buildah <= {upper * 1000:.0f} ms (its wall time / 10)" if upper is not None else ""
        lines.append(f"per RUN (RUN true, sandbox start to snapshot done): kiln {step:.0f} ms "
                     f"(median of {run['kiln_steps']} steps){buildah}")  # fmt: skip
    push = overheads.get("push")
    if push:
        added = push["kiln_added_seconds"]
        lines.append(f"push of a 1 GiB layer (big-file vs big-file-local): kiln adds {added:.2f} s "
                     f"(layer made in {push['kiln_layer_seconds_unpushed']:.2f} s unpushed, "
                     f"{push['kiln_layer_seconds_pushed']:.2f} s while streaming; compressor "
                     f"{push['kiln_compress_seconds']:.2f} s); buildah adds {push['buildah_added_seconds']:.2f} s")
    return "\n".join(line for line in lines if line)


if __name__ == "__main__":
    print(overhead_lines({"imports": import_times(Path(tempfile.gettempdir()), int(sys.argv[1]) if len(sys.argv) > 1
                                                  else 5)}))  # fmt: skip
