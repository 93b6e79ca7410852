#!/usr/bin/env bash
# Set everything up and run the server on the embedded default (SQLite file
# ./var/demo/zzd.db + in-process broker) with demo data: the real divisions of
# Zhejiang with grids, synthetic holders for every position, and three demo
# people who can log in (printed below).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
mkdir -p var/demo
export ZZD_DATABASE_URL="${ZZD_DATABASE_URL:-sqlite+aiosqlite:///$(pwd)/var/demo/zzd.db}"
.venv/bin/zzd migrate
.venv/bin/zzd org import --if-empty >/dev/null
.venv/bin/zzd demo seed
persons=$(.venv/bin/zzd org stats --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["persons"])')
if [ "$persons" -lt 100 ]; then
  echo "generating synthetic holders for every position (once)…"
  .venv/bin/zzd org people >/dev/null
fi
exec .venv/bin/zzd serve "$@"
