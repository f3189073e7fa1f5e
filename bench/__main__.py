"""`python -m bench`: run the suite and print the table (see bench/README.md)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from bench.cases import CASES, case_by_name
from bench.paths import RESULTS
from bench.suite import Settings, run_suite


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="kiln vs buildah benchmarks")
    parser.add_argument("--cases", default="all", help=f"comma-separated, or all: {','.join(c.name for c in CASES)}")
    parser.add_argument("-n", "--repetitions", type=int, default=3, help="timed runs per builder and case")
    parser.add_argument(
        "--heavy-repetitions",
        type=int,
        default=None,
        help="runs for the heavy cases (big-file); default: --repetitions",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--tmpfs-size", default="20g")
    parser.add_argument("--no-gzip", action="store_true", help="skip the gzip throughput measurement")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the benchmarks mount a tmpfs and run buildah: run them as root", file=sys.stderr)
        return 2
    # SIGTERM (and SIGINT, even when started in the background) unwind through the suite's cleanup: builders
    # stopped, the registry stopped, the tmpfs unmounted.
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, _interrupted)
    cases = CASES if args.cases == "all" else [case_by_name(n.strip()) for n in args.cases.split(",") if n.strip()]
    settings = Settings(
        repetitions=args.repetitions,
        heavy_repetitions=args.heavy_repetitions or args.repetitions,
        tmpfs_size=args.tmpfs_size,
        results_dir=args.results_dir,
        measure_gzip=not args.no_gzip,
    )
    _, path, report = run_suite(cases, settings)
    print(report)
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
