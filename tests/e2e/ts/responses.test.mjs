// The official `openai` npm package's Responses API against llm-link.
//
// Run by test_responses_sdk.py (`node --test`), which starts the gateway and
// the mock upstreams and installs the pinned SDK outside the repository.
// Env: OPENAI_SDK_DIR (the installed package), LLM_LINK_BASE_URL (ends in
// /v1), LLM_LINK_KEY, LLM_LINK_MODEL, LLM_LINK_FORWARDED ("1": the provider
// serves /v1/responses itself, so nothing is stored by llm-link).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const need = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run this through tests/e2e/test_responses_sdk.py)`);
  return v;
};

const { default: OpenAI } = await import(pathToFileURL(join(need('OPENAI_SDK_DIR'), 'index.mjs')).href);
const client = new OpenAI({ baseURL: need('LLM_LINK_BASE_URL'), apiKey: need('LLM_LINK_KEY'), maxRetries: 0, timeout: 30_000 });
const model = need('LLM_LINK_MODEL');
const forwarded = process.env.LLM_LINK_FORWARDED === '1';

const HELLO = 'Hello from mock';
const TOOL_RESULT = 'sunny, 21 degrees';
const weatherTool = {
  type: 'function',
  name: 'get_weather',
  description: 'Get the current weather for a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};
const TEXT_EVENTS = [
  'response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added',
  'response.output_text.delta', 'response.output_text.done', 'response.content_part.done',
  'response.output_item.done', 'response.completed',
];

// Runs of the same delta event collapsed to one: upstreams split text differently.
const collapse = (types) => types.filter((t, i) => !(t.endsWith('.delta') && types[i - 1] === t));

function checkSequence(events) {
  assert.deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i));
}

test('plain create', async () => {
  const r = await client.responses.create({ model, instructions: 'Be terse.', input: 'hi', max_output_tokens: 64 });
  assert.equal(r.object, 'response');
  assert.match(r.id, /^resp_/);
  assert.equal(r.status, 'completed');
  assert.equal(r.output_text, HELLO);
  assert.ok(r.usage.input_tokens > 0 && r.usage.output_tokens > 0);
  assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
  if (!forwarded) {
    const got = await client.responses.retrieve(r.id);
    assert.equal(got.id, r.id);
    assert.equal(got.output_text, HELLO);
  }
});

test('stream helper', async () => {
  const stream = client.responses.stream({ model, input: 'hi' });
  const events = [];
  for await (const event of stream) events.push(event);
  const final = await stream.finalResponse();
  assert.deepEqual(collapse(events.map((e) => e.type)), TEXT_EVENTS);
  checkSequence(events);
  const text = events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');
  assert.equal(text, HELLO);
  assert.equal(final.status, 'completed');
  assert.equal(final.output_text, HELLO);
  assert.equal(final.id, events[0].response.id);
  assert.ok(final.usage.output_tokens > 0);
});

test('create with stream: true', async () => {
  const events = [];
  for await (const event of await client.responses.create({ model, input: 'hi', stream: true })) events.push(event);
  assert.deepEqual(collapse(events.map((e) => e.type)), TEXT_EVENTS);
  checkSequence(events);
  const done = events.at(-1).response;
  assert.equal(done.status, 'completed');
  assert.equal(done.output[0].content[0].text, HELLO);
});

async function askWeather(store) {
  const r = await client.responses.create({ model, input: 'What is the weather in Paris?', tools: [weatherTool], store });
  const calls = r.output.filter((o) => o.type === 'function_call');
  assert.equal(calls.length, 1, JSON.stringify(r.output));
  assert.equal(calls[0].name, 'get_weather');
  assert.deepEqual(JSON.parse(calls[0].arguments), { city: 'Paris' });
  assert.ok(calls[0].call_id);
  return [r, calls[0]];
}

test('tool round, replayed with store: false', async () => {
  const [r1, call] = await askWeather(false);
  const input = [
    { role: 'user', content: 'What is the weather in Paris?' },
    ...r1.output,
    { type: 'function_call_output', call_id: call.call_id, output: TOOL_RESULT },
  ];
  const r2 = await client.responses.create({ model, input, tools: [weatherTool], store: false });
  assert.equal(r2.output_text, `The weather is: ${TOOL_RESULT}`);
});

test('tool round, continued with previous_response_id', async () => {
  const [r1, call] = await askWeather(true);
  const r2 = await client.responses.create({
    model, previous_response_id: r1.id, tools: [weatherTool],
    input: [{ type: 'function_call_output', call_id: call.call_id, output: TOOL_RESULT }],
  });
  assert.equal(r2.previous_response_id, r1.id);
  assert.equal(r2.output_text, `The weather is: ${TOOL_RESULT}`);
});

test('bad input is a 400 naming the field', async () => {
  await assert.rejects(
    client.responses.create({ model, input: 'hi', temperature: 3 }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && /temperature/.test(e.message),
  );
});
