"""Long run of the hostile-archive property: many more cases than the test suite runs.

    .venv/bin/python tests/security/fuzz_archives.py --cases 10000 [--seed N] [--bombs K] [--out FILE]

Needs root (device nodes, ownership, trusted xattrs), like tests/security/test_hostile_archives.py. Each case is
extracted in both modes (flat apply, overlay layer directory) onto a fresh sandbox; a finding is a case that
raised anything but a one-line KilnError, hung, or changed something outside the root. Findings do not stop the
run: they are counted, grouped by what went wrong, and written with the spec of their first case to ``--out``.
The last line is ``cases=N findings=M seconds=S``; the exit status is 1 when there were findings.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from hostile_tars import (  # noqa: E402
    Bomb,
    HostileTar,
    Sandbox,
    bomb_case,
    bombs,
    hostile_case,
    hostile_tars,
    remove_tree,
    sentinel_dir,
)


def signature(finding: str) -> str:
    """What a finding is about, without the details that vary between cases (numbers, quoted values)."""
    finding = re.sub(r"'[^']*'|\"[^\"]*\"", "…", finding)
    return re.sub(r"\d+", "N", finding.split(": ", 2)[0] if "outside changed" in finding else finding)[:160]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000, help="hostile archives to try (default 10000)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random)")
    parser.add_argument("--bombs", type=int, default=10, help="compression bombs to try besides (default 10)")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds before a case counts as a hang")
    parser.add_argument("--out", type=Path, default=None, help="write each kind of finding and its case here")
    args = parser.parse_args(argv)

    base = Path(tempfile.mkdtemp(prefix="kiln-fuzz-"))
    sentinel = sentinel_dir()
    sandbox = Sandbox(base, sentinel)
    counts: Counter[str] = Counter()
    first: dict[str, str] = {}
    cases = 0
    finding_cases = 0
    slowest = (0.0, "")

    def record(case: HostileTar | Bomb, findings: list[str], seconds: float) -> None:
        nonlocal cases, finding_cases, slowest
        cases += 1
        if seconds > slowest[0]:
            slowest = (seconds, repr(case)[:2000])
        if findings:
            finding_cases += 1
        for f in findings:
            sig = signature(f)
            counts[sig] += 1
            if sig not in first:
                first[sig] = f"{f}\n  case: {repr(case)[:4000]}"
                print(f"finding: {f[:300]}", flush=True)
        if cases % 500 == 0:
            print(f"... {cases} cases, {finding_cases} with findings", flush=True)

    common = settings(
        database=None,
        deadline=None,
        derandomize=False,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )

    @settings(common, max_examples=args.cases)
    @given(spec=hostile_tars())
    def run_archives(spec: HostileTar) -> None:
        started = time.monotonic()
        findings = hostile_case(spec, sandbox, timeout=args.timeout)
        record(spec, findings, time.monotonic() - started)

    @settings(common, max_examples=max(args.bombs, 1))
    @given(bomb=bombs)
    def run_bombs(bomb: Bomb) -> None:
        started = time.monotonic()
        findings = bomb_case(bomb, sandbox, timeout=max(args.timeout, 60.0))
        record(bomb, findings, time.monotonic() - started)

    if args.seed is not None:
        run_archives = seed(args.seed)(run_archives)
        run_bombs = seed(args.seed)(run_bombs)
    started = time.monotonic()
    try:
        run_archives()
        if args.bombs:
            run_bombs()
    finally:
        remove_tree(str(sentinel))
        remove_tree(str(base))
    seconds = time.monotonic() - started
    for sig, n in counts.most_common():
        print(f"{n:6d}  {sig}")
    print(f"slowest case: {slowest[0]:.1f} s: {slowest[1][:300]}")
    if args.out is not None:
        args.out.write_text("\n\n".join(first.values()) + "\n")
    print(f"cases={cases} findings={finding_cases} seconds={seconds:.0f}")
    return 1 if finding_cases else 0


if __name__ == "__main__":
    sys.exit(main())
