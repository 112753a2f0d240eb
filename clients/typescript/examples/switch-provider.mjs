#!/usr/bin/env node
// Start llm-link, switch provider by restart (with rollback) and in-process.
//
//   npm run build
//   LLM_LINK_BIN=../../target/debug/llm-link ZHIPU_API_KEY=... DEEPSEEK_API_KEY=... \
//     node examples/switch-provider.mjs
//
// Without real keys, point both providers at OpenAI-compatible servers:
//   node examples/switch-provider.mjs openai-compatible:model-a@http://127.0.0.1:8000/v1 \
//                                     openai-compatible:model-b@http://127.0.0.1:8001/v1
// (keys from OPENAI_COMPATIBLE_API_KEY).
import { LlmLinkError, LlmLinkManager, RestartError, ValidationError, keyEnvFor } from '../dist/index.js';

/** "kind[:model][@baseUrl]" -> { provider, model, baseUrl, apiKey } */
function parse(spec) {
  const [head, baseUrl] = spec.split('@');
  const [provider, model] = head.split(':');
  const v = keyEnvFor(provider);
  return { provider, model: model || undefined, baseUrl: baseUrl || undefined, apiKey: v ? process.env[v] : undefined };
}

const from = parse(process.argv[2] ?? 'zhipu');
const to = parse(process.argv[3] ?? 'deepseek');

const labels = {
  validating: 'validating the API key...',
  preparing: 'preparing the new configuration...',
  stopping: 'stopping llm-link...',
  starting: 'starting llm-link...',
  verifying: 'verifying the new instance...',
  rolling_back: 'failed; restoring the previous configuration...',
  success: 'configuration updated',
  failed: 'configuration update failed',
};

const mgr = new LlmLinkManager({ onStatus: (s) => console.log(`  [${s}] ${labels[s]}`) });
try {
  let h = await mgr.start(from.provider, from);
  console.log(`llm-link on ${mgr.baseUrl}: ${h.provider}/${h.model} (instance ${h.instance_id})`);

  try {
    h = await mgr.updateConfig(to.provider, to);
    console.log(`restarted: ${h.provider}/${h.model} (instance ${h.instance_id})`);
  } catch (e) {
    if (e instanceof ValidationError) console.log(`key rejected, nothing changed: ${e.detail}`);
    else if (e instanceof RestartError) {
      console.log(`restart failed (${e.stage}); rolled back: ${e.rolledBack}\n  ${e.cause.message}`);
      if (!e.rolledBack) process.exitCode = 1;
    } else throw e;
  }

  if (mgr.isRunning()) {
    try {
      h = await mgr.switch(from.provider, from);
      console.log(`switched in-process: ${h.provider}/${h.model} (same instance ${h.instance_id})`);
    } catch (e) {
      if (e instanceof LlmLinkError) console.log(`in-process switch refused: ${e.message}`);
      else throw e;
    }
    console.log('config:', await mgr.currentConfig());
  }
} finally {
  console.log('exit code:', await mgr.stop());
}
