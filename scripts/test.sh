#!/usr/bin/env bash
# Set up, then run every check CI runs: lint, types, layering, tests (scripts/test.sh --fast: the quick lane).
# With CI=true the PostgreSQL and Redis tests are mandatory (a missing service fails).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
echo "== ruff";          .venv/bin/ruff check .
echo "== mypy";          .venv/bin/mypy
echo "== import layers"; .venv/bin/lint-imports
# --fast: the quick lane for development: leaves out the multi-process, large-tree and browser
# tests (markers slow and browser) and spreads the rest over ZZD_TEST_WORKERS pytest-xdist workers
# (default 4: the tests mostly wait, and two left the 2 cores half idle; each worker makes its own
# databases and Redis prefixes, tests/services.py unique_name),
# with the Hypothesis profile "fast" (ZZD_TEST_PROFILE, tests/profiles.py: a fifth of the examples).
# CI never passes it: it runs everything with every budget as written (below).
args=()
for a in "$@"; do
  if [ "$a" = "--fast" ]; then
    args+=(-m "not slow and not browser" -n "${ZZD_TEST_WORKERS:-4}" --dist worksteal)
    export ZZD_TEST_PROFILE=${ZZD_TEST_PROFILE:-fast}
  else
    args+=("$a")
  fi
done
export PYTHONASYNCIODEBUG=${PYTHONASYNCIODEBUG:-0}
if [ ${#args[@]} -gt 0 ]; then
  echo "== pytest"
  exec .venv/bin/pytest "${args[@]}"
fi
# No arguments (CI and the README's command): every test, every example budget as written, in two
# lanes one after the other. The in-process tests on ZZD_TEST_WORKERS xdist workers (they mostly
# wait on sockets and databases: ~4 min instead of ~6.5 on the 2-core machine); then the slow and
# browser tests in one process, alone, because they time servers, kills and outages of their own
# and start processes that would otherwise share the cores with three other workers.
rc=0
echo "== pytest: in-process tests on ${ZZD_TEST_WORKERS:-4} workers"
.venv/bin/pytest -m "not slow and not browser" -n "${ZZD_TEST_WORKERS:-4}" --dist worksteal || rc=$?
echo "== pytest: slow and browser tests, one process"
.venv/bin/pytest -m "slow or browser" || rc=$((rc ? rc : $?))
exit "$rc"
