#!/usr/bin/env bash
# Runs the Python client manager's tests against the real llm-link binary.
# Creates/reuses a venv at ${XDG_CACHE_HOME:-$HOME/.cache}/llm-link/clients-venv,
# installs this package (editable) and pytest, then runs pytest.
# Env: LLM_LINK_BIN (default <repo>/target/debug/llm-link), PYTHON (default python3).
# Extra arguments are passed to pytest.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/llm-link/clients-venv"
python="${PYTHON:-python3}"

export LLM_LINK_BIN="${LLM_LINK_BIN:-$repo/target/debug/llm-link}"
if [ ! -x "$LLM_LINK_BIN" ]; then
  echo "run-tests.sh: llm-link binary not found at $LLM_LINK_BIN (run cargo build or set LLM_LINK_BIN)" >&2
  exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$here" pytest

cd "$here"
exec "$venv/bin/python" -m pytest -q "$@"
