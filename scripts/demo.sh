#!/usr/bin/env bash
# Set everything up and run the server on the embedded default (SQLite file
# ./var/demo/zzd.db + in-process broker) with demo people who can log in.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
mkdir -p var/demo
export ZZD_DATABASE_URL="${ZZD_DATABASE_URL:-sqlite+aiosqlite:///$(pwd)/var/demo/zzd.db}"
.venv/bin/zzd migrate
.venv/bin/zzd demo seed
exec .venv/bin/zzd serve "$@"
