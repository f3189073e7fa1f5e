"""The long run of the differential fuzzer: `--cases` generated cases from `--seed`, each built by kiln (overlay and
full snapshot modes) and by buildah, compared with kiln diff; prints every case with differences and a summary.

    .venv/bin/python tests/fuzz/long_run.py --seed 1 --cases 500 [--out fuzz-report.txt] [--modes overlay,full]

Needs root, buildah and runc (as the tests do). Exit status 1 when a difference was found.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import fuzzlib  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from support.base_images import busybox_image, default_cache_dir  # noqa: E402
from support.buildah import Buildah  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--modes", default=",".join(fuzzlib.MODES), help="kiln snapshot modes, comma-separated")
    parser.add_argument("--out", type=Path, help="also write the cases with differences here")
    parser.add_argument("--work", type=Path, help="work directory (default: a new temporary one)")
    args = parser.parse_args(argv)

    cache = default_cache_dir(fuzzlib.REPO)
    cache.mkdir(parents=True, exist_ok=True)
    busybox = busybox_image(cache)
    # Lower-case letters and digits only: buildah names the base image after a path below it.
    parent = Path(args.work or tempfile.gettempdir())
    work = parent / f"kilnfuzz{args.seed}p{os.getpid()}"
    work.mkdir(parents=True)
    buildah = Buildah(work / "buildah")
    builders = fuzzlib.Builders(work, busybox, buildah, tuple(args.modes.split(",")))
    outcomes: list[fuzzlib.Outcome] = []
    started = time.monotonic()

    @seed(args.seed)
    @settings(max_examples=args.cases, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=fuzzlib.cases())
    def explore(case: fuzzlib.Case) -> None:
        outcome = builders.run(case)
        outcomes.append(outcome)
        if not outcome.same:
            text = f"=== case {len(outcomes)}\n{fuzzlib.report(outcome)}\n"
            print(text, flush=True)
            if args.out:
                with args.out.open("a") as f:
                    f.write(text)
        elif len(outcomes) % 25 == 0:
            print(f"... {fuzzlib.summarize(outcomes)}, {time.monotonic() - started:.0f} s", flush=True)

    try:
        explore()
    finally:
        buildah.cleanup()
        import shutil

        from support.mounts import unmount_under

        unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    bad = sum(not o.same for o in outcomes)
    bugs: dict[str, int] = {}
    for o in outcomes:
        for name in o.open_bugs:
            bugs[name] = bugs.get(name, 0) + 1
    ok = {k: sum(o.status.get(k, False) for o in outcomes) for k in ("buildah", *(f"kiln-{m}" for m in builders.modes))}
    print(
        f"seed {args.seed}: {len(outcomes)} cases, {bad} with differences, {elapsed:.0f} s; "
        f"open kiln bugs hit: {bugs or 'none'}; buildah built where BuildKit fails: "
        f"{sum(o.buildah_wrong for o in outcomes)}; builds that succeeded: {ok}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
