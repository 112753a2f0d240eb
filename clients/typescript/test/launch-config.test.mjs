// Pure helpers: no llm-link process needed.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { LaunchConfig, LlmLinkError, RestartError, StartError, canonicalProvider, findFreePort, keyEnvFor } from '../dist/index.js';

test('LaunchConfig builds --flag=value argv, puts the key in the env and never prints it', () => {
  const lc = LaunchConfig.forProvider('zhipu', { model: 'glm-4-flash', apiKey: 'secret-key' });
  assert.deepEqual(lc.argv(), ['--provider=zhipu', '--model=glm-4-flash']);
  assert.deepEqual({ ...lc.envVars }, { ZHIPU_API_KEY: 'secret-key' });
  assert.ok(!String(lc).includes('secret-key'));
  assert.ok(!JSON.stringify(lc).includes('secret-key'));
  const lc2 = new LaunchConfig({ provider: 'openai-compatible', model: 'm', base_url: 'http://x/v1', verbose: true, quiet: false });
  assert.deepEqual(lc2.argv(), ['--provider=openai-compatible', '--model=m', '--base-url=http://x/v1', '--verbose']);
  assert.equal(lc2.baseUrl, 'http://x/v1');
  assert.deepEqual({ ...LaunchConfig.forProvider('ollama', { apiKey: 'x' }).envVars }, {});
});

test('key env table and aliases match the server', () => {
  assert.equal(keyEnvFor('openai-compatible'), 'OPENAI_COMPATIBLE_API_KEY');
  assert.equal(keyEnvFor('kimi'), 'MOONSHOT_API_KEY');
  assert.equal(keyEnvFor('ZHIPU'), 'ZHIPU_API_KEY');
  assert.equal(keyEnvFor('ollama'), null);
  assert.equal(canonicalProvider('openai_compatible'), 'openai-compatible');
});

test('findFreePort returns a bindable port', async () => {
  const port = await findFreePort();
  assert.ok(Number.isInteger(port) && port > 0 && port < 65536);
});

test('errors are typed and chain their cause', () => {
  const cause = new StartError('exited', { exitCode: 2, output: ['error: --port: busy'] });
  const err = new RestartError('start', cause, true);
  assert.ok(err instanceof LlmLinkError && err instanceof Error);
  assert.equal(err.name, 'RestartError');
  assert.equal(err.cause, cause);
  assert.equal(err.rolledBack, true);
  assert.match(err.message, /rolled back/);
  assert.match(cause.message, /--port: busy/);
});
