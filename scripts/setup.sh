#!/usr/bin/env bash
# Create .venv and install ZZD with its development tools (idempotent), at the versions pinned
# in requirements.lock (scripts/lock.sh writes it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.zzd-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements.lock -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c requirements.lock -e '.[dev]'
  touch "$stamp"
fi
# The web client's modules (package.json: Preact, htm, uPlot; axe-core for the browser tests),
# at the versions in package-lock.json. Nothing third-party is committed; zzd serves node_modules.
if command -v npm >/dev/null; then
  if [ ! -f node_modules/.zzd-installed ] || [ package-lock.json -nt node_modules/.zzd-installed ]; then
    npm ci --no-audit --no-fund --loglevel=error
    touch node_modules/.zzd-installed
  fi
else
  echo "setup: npm not found: the web client (GET /) needs Node.js and npm (apt-get install nodejs npm)" >&2
fi
