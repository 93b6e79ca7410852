#!/usr/bin/env bash
# Set up, then run every check CI runs: lint, types, layering, tests.
# With CI=true the PostgreSQL and Redis tests are mandatory (a missing service fails).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
echo "== ruff";          .venv/bin/ruff check .
echo "== mypy";          .venv/bin/mypy
echo "== import layers"; .venv/bin/lint-imports
echo "== pytest"
PYTHONASYNCIODEBUG=${PYTHONASYNCIODEBUG:-0} .venv/bin/pytest "$@"
