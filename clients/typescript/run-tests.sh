#!/usr/bin/env bash
# Builds the TypeScript client manager and runs its tests (node --test) against
# the real llm-link binary.
# Env: LLM_LINK_BIN (default <repo>/target/debug/llm-link).
# Extra arguments are passed to `node --test` (e.g. --test-name-pattern=switch).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

export LLM_LINK_BIN="${LLM_LINK_BIN:-$repo/target/debug/llm-link}"
if [ ! -x "$LLM_LINK_BIN" ]; then
  echo "run-tests.sh: llm-link binary not found at $LLM_LINK_BIN (run cargo build or set LLM_LINK_BIN)" >&2
  exit 1
fi

cd "$here"
# Reinstall only when the lockfile changed since the last install.
if [ ! -x node_modules/.bin/tsc ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --prefer-offline --loglevel=error
fi
npm run --silent build
exec node --test "$@" test/*.test.mjs
