// A tiny OpenAI-compatible upstream that checks the bearer key.
//
// GET /v1/models and POST /v1/chat/completions answer 401 with an OpenAI error
// body unless `Authorization: Bearer <key>` matches, so /api/config/validate
// can tell a good key from a bad one. Chat answers "hello from <name>"; every
// request is recorded.
import { createServer } from 'node:http';

export class KeyedUpstream {
  /** @param {string} name @param {string} key @param {string[]} [models] */
  constructor(name, key, models) {
    this.name = name;
    this.key = key;
    this.models = models ?? [`model-${name}`];
    /** @type {{method: string, path: string, auth: string | undefined, body: any}[]} */
    this.requests = [];
    this.server = createServer((req, res) => this.#handle(req, res));
  }

  /** @returns {Promise<KeyedUpstream>} */
  start() {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => resolve(this));
    });
  }

  stop() {
    this.server.closeAllConnections?.();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  get port() {
    return /** @type {import('node:net').AddressInfo} */ (this.server.address()).port;
  }

  get baseUrl() {
    return `http://127.0.0.1:${this.port}/v1`;
  }

  calls(method, path) {
    return this.requests.filter((r) => r.method === method && r.path === path);
  }

  #send(res, status, obj) {
    const data = JSON.stringify(obj);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
    res.end(data);
  }

  async #handle(req, res) {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const raw = Buffer.concat(chunks).toString('utf8');
    let body = null;
    try {
      body = raw ? JSON.parse(raw) : null;
    } catch {
      body = null;
    }
    const path = (req.url ?? '/').split('?')[0];
    this.requests.push({ method: req.method ?? '', path, auth: req.headers.authorization, body });
    if (req.headers.authorization !== `Bearer ${this.key}`) {
      return this.#send(res, 401, {
        error: { message: 'Incorrect API key provided.', type: 'invalid_request_error', param: null, code: 'invalid_api_key' },
      });
    }
    if (req.method === 'GET' && path === '/v1/models') {
      return this.#send(res, 200, {
        object: 'list',
        data: this.models.map((id) => ({ id, object: 'model', created: 1700000000, owned_by: this.name })),
      });
    }
    if (req.method === 'POST' && path === '/v1/chat/completions') {
      return this.#send(res, 200, {
        id: `chatcmpl-${this.name}-${this.requests.length}`,
        object: 'chat.completion',
        created: Math.floor(Date.now() / 1000),
        model: body?.model ?? '',
        choices: [{ index: 0, message: { role: 'assistant', content: `hello from ${this.name}` }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 },
      });
    }
    return this.#send(res, 404, { error: { message: `no route ${path}`, type: 'invalid_request_error', param: null, code: null } });
  }
}

/** One non-streaming OpenAI chat request through the gateway at `baseUrl`. */
export async function gatewayChat(baseUrl, model, text = 'hi') {
  const res = await fetch(`${baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: text }] }),
  });
  const body = await res.json();
  if (!res.ok) throw new Error(`chat -> HTTP ${res.status}: ${JSON.stringify(body)}`);
  return body;
}
