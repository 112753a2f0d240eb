// LlmLinkManager against the real llm-link binary and two keyed mock upstreams.
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { afterEach, beforeEach, describe, test } from 'node:test';

import {
  ApiError,
  LlmLinkManager,
  RestartError,
  StartError,
  ValidationError,
  VerificationError,
  findFreePort,
} from '../dist/index.js';
import { KEY_A, KEY_B, KIND, binary, makeWrapper } from './support/env.mjs';
import { KeyedUpstream, gatewayChat } from './support/keyed-upstream.mjs';

/** @type {KeyedUpstream} */ let upA;
/** @type {KeyedUpstream} */ let upB;
/** @type {LlmLinkManager[]} */ let managers = [];

function track(mgr) {
  managers.push(mgr);
  return mgr;
}

async function startedOnA(opts = {}) {
  const mgr = track(new LlmLinkManager({ binary: binary(), startTimeoutMs: 20_000, ...opts }));
  await mgr.start(KIND, { model: 'model-a', apiKey: KEY_A, baseUrl: upA.baseUrl });
  return mgr;
}

async function assertOnA(mgr) {
  const h = await mgr.health();
  assert.equal(h.status, 'ok');
  assert.equal(h.provider, KIND);
  assert.equal(h.model, 'model-a');
  assert.equal(h.pid, mgr.pid);
  const before = upA.calls('POST', '/v1/chat/completions').length;
  const answer = await gatewayChat(mgr.baseUrl, 'model-a');
  assert.equal(answer.choices[0].message.content, 'hello from a');
  const calls = upA.calls('POST', '/v1/chat/completions');
  assert.equal(calls.length, before + 1);
  assert.equal(calls.at(-1).auth, `Bearer ${KEY_A}`);
  return h;
}

function portClosed(port) {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

/** Occupies the manager's port while `model` starts (the real llm-link then exits 2), frees it for the rollback. */
function squatPort(mgr, model) {
  const statuses = [];
  let server = null;
  mgr.onStatus = (status, detail) => {
    statuses.push(status);
    if (status === 'starting' && detail.model === model && !detail.rollback) {
      server = createServer();
      // without a host, listen() binds [::]:port (dual-stack, so 127.0.0.1 too)
      // synchronously, i.e. before the manager spawns the child
      server.listen({ port: mgr.port, exclusive: true });
      assert.ok(server.address(), 'squatter did not bind synchronously');
    } else if (status === 'rolling_back' && server) {
      server.close();
      server = null;
    }
  };
  return statuses;
}

beforeEach(async () => {
  upA = await new KeyedUpstream('a', KEY_A, ['model-a', 'model-a-large']).start();
  upB = await new KeyedUpstream('b', KEY_B, ['model-b']).start();
  managers = [];
});

afterEach(async () => {
  for (const m of managers) await m.close().catch(() => undefined);
  await upA.stop();
  await upB.stop();
});

describe('start and info', () => {
  test('start reports health, config and pid', async () => {
    const mgr = await startedOnA();
    const h = await mgr.health();
    assert.equal(h.status, 'ok');
    assert.equal(h.provider, KIND);
    assert.equal(h.model, 'model-a');
    assert.equal(h.pid, mgr.pid);
    assert.ok(Number.isSafeInteger(h.instance_id) && h.instance_id > 0);
    const cfg = await mgr.currentConfig();
    assert.deepEqual(
      { provider: cfg.provider, model: cfg.model, has_api_key: cfg.has_api_key, has_base_url: cfg.has_base_url },
      { provider: KIND, model: 'model-a', has_api_key: true, has_base_url: true },
    );
    const raw = await (await fetch(`${mgr.baseUrl}/api/config/current`)).text();
    assert.ok(!raw.includes(KEY_A));
    assert.equal(await mgr.getPid(), mgr.pid);
    assert.equal(mgr.launchConfig?.model, 'model-a');
  });

  test('a second start is refused', async () => {
    const mgr = await startedOnA();
    await assert.rejects(mgr.start(KIND, { model: 'model-a', apiKey: KEY_A, baseUrl: upA.baseUrl }), /already running/);
  });

  test('a start that exits is a StartError with the exit code and output', async () => {
    const port = await findFreePort();
    const mgr = track(new LlmLinkManager({ binary: binary(), port }));
    // llm-link refuses an upstream at its own listen address: exit 2
    const err = await mgr.start(KIND, { model: 'model-x', apiKey: 'k', baseUrl: `http://127.0.0.1:${port}/v1` }).then(
      () => null,
      (e) => e,
    );
    assert.ok(err instanceof StartError, String(err));
    assert.equal(err.exitCode, 2);
    assert.ok(err.output.some((l) => l.includes('own listen address')), err.output.join('\n'));
    assert.equal(mgr.isRunning(), false);
  });

  test('a missing binary is a StartError', async () => {
    const mgr = track(new LlmLinkManager({ binary: '/nonexistent/llm-link' }));
    await assert.rejects(mgr.start('ollama'), (e) => e instanceof StartError && /cannot run/.test(e.message));
  });
});

describe('validate', () => {
  test('good and bad keys', async () => {
    const mgr = await startedOnA();
    const good = await mgr.validateKey(KIND, KEY_B, upB.baseUrl);
    assert.equal(good.status, 'valid', JSON.stringify(good));
    assert.ok(good.models.includes('model-b'));
    assert.equal(upB.calls('GET', '/v1/models').at(-1).auth, `Bearer ${KEY_B}`);
    const bad = await mgr.validateKey(KIND, 'sk-wrong', upB.baseUrl);
    assert.equal(bad.status, 'invalid', JSON.stringify(bad));
    assert.ok(bad.message);
  });
});

describe('restart flow (updateConfig)', () => {
  test('restarts onto B: new instance_id, model-b, traffic reaches B', async () => {
    const mgr = await startedOnA();
    const before = await assertOnA(mgr);
    const port = mgr.port;
    const h = await mgr.updateConfig(KIND, { apiKey: KEY_B, model: 'model-b', baseUrl: upB.baseUrl });
    assert.notEqual(h.instance_id, before.instance_id);
    assert.notEqual(h.pid, before.pid);
    assert.equal(h.pid, mgr.pid);
    assert.equal(h.provider, KIND);
    assert.equal(h.model, 'model-b');
    assert.equal(mgr.port, port);
    assert.equal((await mgr.health()).model, 'model-b');
    const cfg = await mgr.currentConfig();
    assert.equal(cfg.model, 'model-b');
    assert.equal(cfg.has_api_key, true);
    const aChats = upA.calls('POST', '/v1/chat/completions').length;
    const answer = await gatewayChat(mgr.baseUrl, 'model-b');
    assert.equal(answer.choices[0].message.content, 'hello from b');
    const bCalls = upB.calls('POST', '/v1/chat/completions');
    assert.equal(bCalls.length, 1);
    assert.equal(bCalls[0].auth, `Bearer ${KEY_B}`);
    assert.equal(bCalls[0].body.model, 'model-b');
    assert.equal(upA.calls('POST', '/v1/chat/completions').length, aChats);
    assert.equal(upB.calls('GET', '/v1/models')[0].auth, `Bearer ${KEY_B}`); // validated first
    assert.equal(mgr.launchConfig?.model, 'model-b');
  });

  test('a bad key is a ValidationError and A is untouched', async () => {
    const mgr = await startedOnA();
    const before = await mgr.health();
    await assert.rejects(
      mgr.updateConfig(KIND, { apiKey: 'sk-wrong', model: 'model-b', baseUrl: upB.baseUrl }),
      (e) => e instanceof ValidationError && e.provider === KIND,
    );
    const after = await assertOnA(mgr);
    assert.equal(after.instance_id, before.instance_id);
    assert.equal(after.pid, before.pid);
    assert.deepEqual(upB.calls('POST', '/v1/chat/completions'), []);
  });

  test('B failing to start rolls back to A', async () => {
    const mgr = await startedOnA();
    const before = await mgr.health();
    const statuses = squatPort(mgr, 'model-b');
    const err = await mgr.updateConfig(KIND, { apiKey: KEY_B, model: 'model-b', baseUrl: upB.baseUrl }).then(
      () => assert.fail('update succeeded on an occupied port'),
      (e) => e,
    );
    assert.ok(err instanceof RestartError, String(err));
    assert.equal(err.rolledBack, true);
    assert.equal(err.rollbackError, null);
    assert.equal(err.stage, 'start');
    assert.ok(err.cause instanceof StartError);
    assert.equal(err.cause.exitCode, 2);
    assert.ok(err.cause.output.some((l) => l.includes('Address already in use')), err.cause.output.join('\n'));
    assert.match(err.message, /rolled back/);
    assert.deepEqual(statuses, ['validating', 'preparing', 'stopping', 'starting', 'rolling_back', 'starting', 'verifying', 'failed']);
    const after = await assertOnA(mgr);
    assert.notEqual(after.instance_id, before.instance_id); // A was restarted
    const cfg = await mgr.currentConfig();
    assert.equal(cfg.provider, KIND);
    assert.equal(cfg.model, 'model-a');
    assert.equal(cfg.has_api_key, true);
    assert.equal(mgr.launchConfig?.model, 'model-a');
    assert.deepEqual(upB.calls('POST', '/v1/chat/completions'), []);
  });

  test('an update to its own address is refused (400) before anything stops', async () => {
    const mgr = await startedOnA();
    const before = await mgr.health();
    await assert.rejects(
      mgr.updateConfig(KIND, { apiKey: KEY_B, model: 'model-b', baseUrl: `http://127.0.0.1:${mgr.port}/v1`, validate: false }),
      (e) => e instanceof ApiError && e.status === 400 && /own listen address/.test(e.detail),
    );
    assert.equal((await mgr.health()).instance_id, before.instance_id);
    await assertOnA(mgr);
  });

  test('an unknown provider is a 400 that lists the kinds; A keeps running', async () => {
    const mgr = await startedOnA();
    const before = await mgr.health();
    await assert.rejects(
      mgr.updateConfig('no-such-provider', { apiKey: 'k', model: 'm', validate: false }),
      (e) => e instanceof ApiError && e.status === 400 && /openai/.test(e.detail),
    );
    assert.equal((await mgr.health()).instance_id, before.instance_id);
    await assertOnA(mgr);
  });

  test('a start that hangs times out, is killed, and A comes back', async () => {
    const w = makeWrapper();
    const mgr = track(new LlmLinkManager({ binary: w.binary, env: w.env, startTimeoutMs: 3_000, stopTimeoutMs: 3_000 }));
    await mgr.start(KIND, { model: 'model-a', apiKey: KEY_A, baseUrl: upA.baseUrl });
    const err = await mgr.updateConfig(KIND, { apiKey: KEY_A, model: 'model-hang', baseUrl: upA.baseUrl, validate: false }).then(
      () => assert.fail('hung start accepted'),
      (e) => e,
    );
    assert.ok(err instanceof RestartError, String(err));
    assert.equal(err.rolledBack, true);
    assert.equal(err.stage, 'start');
    assert.ok(err.cause instanceof StartError);
    assert.equal(err.cause.exitCode, null);
    assert.match(err.cause.message, /within/);
    await assertOnA(mgr);
  });

  test('a wrong model after restart fails verification and rolls back', async () => {
    const w = makeWrapper();
    const mgr = track(new LlmLinkManager({ binary: w.binary, env: w.env }));
    await mgr.start(KIND, { model: 'model-a', apiKey: KEY_A, baseUrl: upA.baseUrl });
    const err = await mgr.updateConfig(KIND, { apiKey: KEY_A, model: 'model-lie', baseUrl: upA.baseUrl, validate: false }).then(
      () => assert.fail('mismatch accepted'),
      (e) => e,
    );
    assert.ok(err instanceof RestartError, String(err));
    assert.equal(err.rolledBack, true);
    assert.equal(err.stage, 'verify');
    assert.ok(err.cause instanceof VerificationError);
    assert.equal(err.cause.expected.model, 'model-lie');
    assert.equal(err.cause.actual.model, 'model-other');
    await assertOnA(mgr);
  });

  test('a failed rollback is reported and nothing runs', async () => {
    const w = makeWrapper();
    const mgr = track(new LlmLinkManager({ binary: w.binary, env: w.env }));
    await mgr.start(KIND, { model: 'model-a', apiKey: KEY_A, baseUrl: upA.baseUrl });
    writeFileSync(w.flag, 'fail'); // every start from now on exits 3
    assert.ok(existsSync(w.flag));
    const err = await mgr.updateConfig(KIND, { apiKey: KEY_B, model: 'model-b', baseUrl: upB.baseUrl }).then(
      () => assert.fail('started despite the flag'),
      (e) => e,
    );
    assert.ok(err instanceof RestartError, String(err));
    assert.equal(err.rolledBack, false);
    assert.ok(err.cause instanceof StartError && err.cause.exitCode === 3);
    assert.ok(err.rollbackError instanceof StartError && err.rollbackError.exitCode === 3);
    assert.equal(mgr.isRunning(), false);
    assert.equal(await portClosed(mgr.port), true);
  });
});

describe('in-process switch', () => {
  test('keeps instance_id and changes model; traffic reaches B', async () => {
    const mgr = await startedOnA();
    const before = await assertOnA(mgr);
    const h = await mgr.switch(KIND, { apiKey: KEY_B, model: 'model-b', baseUrl: upB.baseUrl });
    assert.equal(h.instance_id, before.instance_id);
    assert.equal(h.pid, before.pid);
    assert.equal(h.provider, KIND);
    assert.equal(h.model, 'model-b');
    const answer = await gatewayChat(mgr.baseUrl, 'model-b');
    assert.equal(answer.choices[0].message.content, 'hello from b');
    assert.equal(upB.calls('POST', '/v1/chat/completions').at(-1).auth, `Bearer ${KEY_B}`);
    assert.equal(mgr.launchConfig?.model, 'model-b');
    const h2 = await mgr.switch(KIND, { apiKey: KEY_A, model: 'model-a-large', baseUrl: upA.baseUrl });
    assert.equal(h2.instance_id, before.instance_id);
    assert.equal(h2.model, 'model-a-large');
  });

  test('with validate: a bad key is refused and A stays', async () => {
    const mgr = await startedOnA();
    await assert.rejects(
      mgr.switch(KIND, { apiKey: 'sk-wrong', model: 'model-b', baseUrl: upB.baseUrl, validate: true }),
      ValidationError,
    );
    await assertOnA(mgr);
  });

  test('an unknown provider is a 400', async () => {
    const mgr = await startedOnA();
    await assert.rejects(mgr.switch('no-such-provider', { apiKey: 'k', model: 'm' }), (e) => e instanceof ApiError && e.status === 400);
    await assertOnA(mgr);
  });

  test('a restart after a switch rolls back to the switched state', async () => {
    const mgr = await startedOnA();
    await mgr.switch(KIND, { apiKey: KEY_B, model: 'model-b', baseUrl: upB.baseUrl });
    squatPort(mgr, 'model-a-large');
    await assert.rejects(
      mgr.updateConfig(KIND, { apiKey: KEY_A, model: 'model-a-large', baseUrl: upA.baseUrl }),
      (e) => e instanceof RestartError && e.rolledBack,
    );
    assert.equal((await mgr.health()).model, 'model-b');
    const answer = await gatewayChat(mgr.baseUrl, 'model-b');
    assert.equal(answer.choices[0].message.content, 'hello from b');
  });
});

describe('stop', () => {
  test('stop() exits 0 and frees the port', async () => {
    const mgr = await startedOnA();
    const port = mgr.port;
    assert.equal(await mgr.stop(), 0);
    assert.equal(mgr.isRunning(), false);
    assert.equal(await portClosed(port), true);
    await assert.rejects(mgr.health(), (e) => e instanceof ApiError && e.status === null);
    assert.equal(await mgr.stop(), null); // idempotent
  });

  test('close() stops the process; asyncDispose is close()', async () => {
    const mgr = new LlmLinkManager({ binary: binary() });
    let proc;
    try {
      await mgr.start(KIND, { model: 'model-a', apiKey: KEY_A, baseUrl: upA.baseUrl });
      proc = mgr.process;
    } finally {
      await mgr.close();
    }
    assert.equal(proc.exitCode, 0);
    assert.equal(mgr.isRunning(), false);
    // Symbol.asyncDispose (for `await using` in TypeScript) is close()
    await mgr[Symbol.asyncDispose]();
  });
});
