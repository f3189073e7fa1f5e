#!/usr/bin/env bash
# kiln's test command: set up (scripts/install-deps.sh), then ruff, mypy and the whole pytest suite.
#
#   scripts/test.sh                 everything
#   scripts/test.sh -k support      extra arguments go to pytest (ruff and mypy still run)
#   scripts/test.sh -m 'not slow'   skip slow tests (the debian base image, ...)
#
# Environment:
#   KILN_TEST_CACHE   where base image layouts are cached across runs (default .cache/test-images)
#   KILN_TEST_JOBS    pytest-xdist workers (default auto; 0 runs in one process)
#
# All three checks run even when one fails, so one CI run reports everything; the exit status is non-zero if
# any failed. pytest's exit status 5 ("no tests collected") counts as a failure: a run that tests nothing
# (a typo in -k, a collection filter gone wrong) must not look green.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh || exit 1

failed=()
step() {
  local name=$1; shift
  local start=$SECONDS
  echo "=== $name"
  "$@"
  local status=$?
  echo "=== $name: $([[ $status == 0 ]] && echo ok || echo "FAILED (status $status)") in $((SECONDS - start))s"
  ((status == 0)) || failed+=("$name")
  return 0
}

step "ruff" .venv/bin/ruff check src tests
step "mypy" .venv/bin/mypy
# The test helpers are typed too; they live outside src/, so they get their own run.
step "mypy tests/support" env MYPYPATH=tests .venv/bin/mypy --strict --explicit-package-bases \
  tests/support tests/conftest.py

jobs=${KILN_TEST_JOBS:-auto}
xdist=()
[[ $jobs != 0 ]] && xdist=(-n "$jobs" --dist loadgroup)
# --timeout covers a first run that builds the debian base image inside a test's setup.
step "pytest" .venv/bin/pytest "${xdist[@]}" --timeout=1200 "$@"

if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all checks passed"
