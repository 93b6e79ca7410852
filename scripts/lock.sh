#!/usr/bin/env bash
# Re-resolve every Python dependency (pyproject.toml, with the dev extra) in a throw-away venv
# and write the exact versions to requirements.lock, which scripts/setup.sh installs against.
# Run it after changing a dependency in pyproject.toml, and commit both files together.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip
"$tmp/venv/bin/python" -m pip install -q -e '.[dev]'
{
  echo "# Exact versions of every Python dependency, resolved by scripts/lock.sh; scripts/setup.sh"
  echo "# installs with '-c requirements.lock'. Regenerate after changing pyproject.toml."
  "$tmp/venv/bin/python" -m pip freeze --exclude-editable | LC_ALL=C sort -f
} > requirements.lock
echo "requirements.lock: $(grep -vc '^#' requirements.lock) packages"
