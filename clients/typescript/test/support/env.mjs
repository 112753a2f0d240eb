// Shared test setup: the real llm-link binary and a wrapper for failure cases.
import { accessSync, constants, chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(here, '../../../..');
export const KIND = 'openai-compatible';
export const KEY_A = 'sk-test-aaaa';
export const KEY_B = 'sk-test-bbbb';

export function binary() {
  const path = process.env.LLM_LINK_BIN || join(REPO, 'target', 'debug', 'llm-link');
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`llm-link binary not found at ${path}; run \`cargo build\` or set LLM_LINK_BIN`);
  }
  return path;
}

const WRAPPER = `#!/usr/bin/env bash
# Test wrapper around the real llm-link: fails every start while $FLAG_FILE
# exists, hangs for --model=model-hang, and starts model "model-other" when
# asked for --model=model-lie. Always execs so the pid stays the same.
if [ -n "$FLAG_FILE" ] && [ -e "$FLAG_FILE" ]; then echo "wrapper: forced start failure" >&2; exit 3; fi
args=()
for a in "$@"; do
  case "$a" in
    --model=model-hang) exec sleep 600 ;;
    --model=model-lie) args+=("--model=model-other") ;;
    *) args+=("$a") ;;
  esac
done
exec "$REAL_LLM_LINK" "\${args[@]}"
`;

/** A wrapper script around the real binary plus the env it needs. */
export function makeWrapper() {
  const dir = mkdtempSync(join(tmpdir(), 'llm-link-wrapper-'));
  const script = join(dir, 'llm-link-wrapper');
  writeFileSync(script, WRAPPER);
  chmodSync(script, 0o755);
  const flag = join(dir, 'fail-all');
  return { binary: script, flag, env: { REAL_LLM_LINK: binary(), FLAG_FILE: flag } };
}
