/**
 * The host side of llm-link's hot-update protocol.
 *
 * A desktop host owns one llm-link process. {@link LlmLinkManager} starts it,
 * reads its health, validates keys, and changes provider/key/model in one of
 * two ways:
 *
 * - {@link LlmLinkManager.updateConfig} — the restart flow: ask the running
 *   instance for the new `env_vars`/`cli_args`, stop it, start a new process
 *   with them, wait for a *new* `instance_id` on `/api/health` and check
 *   provider and model; if anything fails, restart the previous configuration
 *   and throw {@link RestartError}.
 * - {@link LlmLinkManager.switch} — the in-process switch
 *   (`POST /api/config/switch`): no restart, the `instance_id` stays.
 *
 * No runtime dependencies: global `fetch` and `node:child_process`.
 *
 * @module
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

import { ApiError, LlmLinkError, RestartError, StartError, ValidationError, VerificationError } from './errors.js';

/** `GET /api/health`. */
export interface Health {
  status: string;
  instance_id: number;
  pid: number;
  provider: string;
  model: string;
  version?: string;
  uptime_seconds?: number;
  [extra: string]: unknown;
}

/** `GET /api/config/current` (never contains a key). */
export interface CurrentConfig {
  provider: string;
  model: string;
  has_api_key: boolean;
  has_base_url: boolean;
  [extra: string]: unknown;
}

/** Answer of `POST /api/config/update` and `POST /api/config/switch`. */
export interface ConfigUpdate {
  status: string;
  message: string;
  restart_required: boolean;
  current_instance_id: number;
  env_vars: Record<string, string>;
  cli_args: CliArgs;
  [extra: string]: unknown;
}

/** `cli_args` of a {@link ConfigUpdate}: flag name → value. */
export interface CliArgs {
  provider: string;
  model?: string;
  base_url?: string;
  [flag: string]: string | number | boolean | string[] | undefined | null;
}

/** `POST /api/config/validate`. */
export interface ValidationResult {
  status: 'valid' | 'invalid';
  message: string;
  models: string[];
  [extra: string]: unknown;
}

/** Steps of {@link LlmLinkManager.updateConfig} reported to `onStatus`. */
export type UpdateStatus =
  | 'validating'
  | 'preparing'
  | 'stopping'
  | 'starting'
  | 'verifying'
  | 'rolling_back'
  | 'success'
  | 'failed';

/** Options of {@link LlmLinkManager}. */
export interface ManagerOptions {
  /** Path of the `llm-link` executable; default `$LLM_LINK_BIN` or `llm-link` on `PATH`. */
  binary?: string;
  /** Address llm-link listens on and the manager talks to (default `127.0.0.1`). */
  host?: string;
  /** Listen port; a free one is picked on the first start when omitted. Kept across restarts. */
  port?: number;
  /** More flags for every start, e.g. `['--app', 'zed']`. */
  extraArgs?: string[];
  /** Extra environment for the process (on top of `process.env`). */
  env?: Record<string, string>;
  /** How long a started process has to answer `/api/health` (also the restart-verification timeout). Default 15000. */
  startTimeoutMs?: number;
  /** How long to wait for a graceful exit before SIGKILL. Default 10000. */
  stopTimeoutMs?: number;
  /** Delay between `/api/health` polls. Default 50. */
  pollIntervalMs?: number;
  /** Timeout of each HTTP request to llm-link. Default 10000. */
  requestTimeoutMs?: number;
  /** Require `/api/health`'s `pid` to be the spawned process (turn off for wrappers that do not `exec`). Default true. */
  checkPid?: boolean;
  /** Called with every line llm-link prints (stdout and stderr). */
  onOutput?: (line: string) => void;
  /**
   * Called at each step of {@link LlmLinkManager.updateConfig} (and `starting`/`verifying`
   * on {@link LlmLinkManager.start}), for a host's progress display. For `starting`,
   * `detail` has `provider`, `model` and `rollback`; for `failed`, `error`. Exceptions
   * thrown by the callback are ignored.
   */
  onStatus?: (status: UpdateStatus, detail: Record<string, unknown>) => void;
}

/** Optional parts of a provider change. */
export interface ProviderChange {
  apiKey?: string;
  model?: string;
  baseUrl?: string;
  /** Check the key with `POST /api/config/validate` first (default: true for updateConfig, false for switch). */
  validate?: boolean;
}

/** Provider kind → env var holding its upstream key (the server's table); `null` = no key. */
export const PROVIDER_KEY_ENV: Readonly<Record<string, string | null>> = Object.freeze({
  openai: 'OPENAI_API_KEY',
  anthropic: 'ANTHROPIC_API_KEY',
  zhipu: 'ZHIPU_API_KEY',
  aliyun: 'ALIYUN_API_KEY',
  volcengine: 'VOLCENGINE_API_KEY',
  tencent: 'TENCENT_API_KEY',
  deepseek: 'DEEPSEEK_API_KEY',
  moonshot: 'MOONSHOT_API_KEY',
  minimax: 'MINIMAX_API_KEY',
  'openai-compatible': 'OPENAI_COMPATIBLE_API_KEY',
  ollama: null,
  llamacpp: null,
});

const PROVIDER_ALIASES: Readonly<Record<string, string>> = {
  openai_compatible: 'openai-compatible',
  'openai-compat': 'openai-compatible',
  compatible: 'openai-compatible',
  glm: 'zhipu',
  bigmodel: 'zhipu',
  dashscope: 'aliyun',
  qwen: 'aliyun',
  ark: 'volcengine',
  doubao: 'volcengine',
  hunyuan: 'tencent',
  kimi: 'moonshot',
  claude: 'anthropic',
  'llama.cpp': 'llamacpp',
  'llama-cpp': 'llamacpp',
};

/** Env vars the manager controls through the command line (the server reads `LLM_LINK_<FLAG>`). */
const CONTROLLED_ENV = [
  'LLM_LINK_HOST',
  'LLM_LINK_PORT',
  'LLM_LINK_PROVIDER',
  'LLM_LINK_MODEL',
  'LLM_LINK_API_KEY',
  'LLM_LINK_BASE_URL',
];

/** The server's canonical spelling of a provider kind (`kimi` → `moonshot`). */
export function canonicalProvider(kind: string): string {
  const k = kind.trim().toLowerCase();
  return PROVIDER_ALIASES[k] ?? k;
}

/** The env var carrying the key of `kind`; `null` if it takes none. Unknown kinds get `<KIND>_API_KEY`. */
export function keyEnvFor(kind: string): string | null {
  const k = canonicalProvider(kind);
  if (Object.prototype.hasOwnProperty.call(PROVIDER_KEY_ENV, k)) return PROVIDER_KEY_ENV[k] ?? null;
  return `${k.toUpperCase().replace(/[-.]/g, '_')}_API_KEY`;
}

/** Binds port 0 on `host`, reads the port the OS chose and releases it. */
export function findFreePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('could not read the chosen port'))));
    });
  });
}

/** `$LLM_LINK_BIN` if set, else `llm-link` (looked up on `PATH`). */
export function defaultBinary(): string {
  return process.env.LLM_LINK_BIN || 'llm-link';
}

/**
 * How to start llm-link: `cliArgs` (flag → value, as `/api/config/update`
 * returns them) and `envVars` (the provider key). Each `key: value` becomes
 * `--key=value` (underscores → dashes); `true` a bare flag; `null`,
 * `undefined` and `false` are skipped. `toJSON`/`toString` never show keys.
 */
export class LaunchConfig {
  readonly cliArgs: CliArgs;
  readonly envVars: Readonly<Record<string, string>>;

  constructor(cliArgs: CliArgs, envVars: Record<string, string> = {}) {
    const args: CliArgs = { provider: String(cliArgs.provider ?? '') };
    for (const [k, v] of Object.entries(cliArgs)) if (v !== undefined && v !== null) args[k] = v;
    this.cliArgs = Object.freeze(args);
    this.envVars = Object.freeze({ ...envVars });
  }

  /** A first-start configuration built from the built-in key-variable table. */
  static forProvider(provider: string, opts: { model?: string; apiKey?: string; baseUrl?: string } = {}): LaunchConfig {
    const env: Record<string, string> = {};
    const name = keyEnvFor(provider);
    if (opts.apiKey !== undefined && name) env[name] = opts.apiKey;
    return new LaunchConfig({ provider, model: opts.model, base_url: opts.baseUrl }, env);
  }

  get provider(): string {
    return String(this.cliArgs.provider ?? '');
  }

  get model(): string | undefined {
    const m = this.cliArgs.model;
    return m === undefined || m === null ? undefined : String(m);
  }

  get baseUrl(): string | undefined {
    const u = this.cliArgs.base_url;
    return u === undefined || u === null ? undefined : String(u);
  }

  /** The command-line flags for these `cliArgs`. */
  argv(): string[] {
    const out: string[] = [];
    for (const [key, value] of Object.entries(this.cliArgs)) {
      const flag = `--${key.replace(/_/g, '-')}`;
      if (value === true) out.push(flag);
      else if (value === false || value === null || value === undefined) continue;
      else if (Array.isArray(value)) for (const item of value) out.push(`${flag}=${item}`);
      else out.push(`${flag}=${value}`);
    }
    return out;
  }

  toJSON(): { cliArgs: CliArgs; envVars: Record<string, string> } {
    return { cliArgs: this.cliArgs, envVars: Object.fromEntries(Object.keys(this.envVars).map((k) => [k, '***'])) };
  }

  toString(): string {
    return `LaunchConfig(${JSON.stringify(this.toJSON())})`;
  }
}

/** A spawned child plus what we learn about its exit. */
interface Child {
  proc: ChildProcess;
  output: string[];
  exited: boolean;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  spawnError: Error | null;
  /** Resolves once the process has exited (or failed to spawn) and its output is drained. */
  done: Promise<void>;
}

const OUTPUT_LINES = 200;
const live = new Set<LlmLinkManager>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const m of live) m.killNow();
  });
}

/**
 * Starts, hot-updates, restarts, verifies and stops one llm-link process.
 *
 * ```ts
 * const mgr = new LlmLinkManager();
 * await mgr.start('zhipu', { model: 'glm-4-flash', apiKey: '…' });
 * await mgr.updateConfig('deepseek', { apiKey: '…', model: 'deepseek-chat' });
 * await mgr.close();
 * ```
 */
export class LlmLinkManager {
  readonly binary: string;
  readonly host: string;
  readonly extraArgs: string[];
  readonly env: Record<string, string>;
  startTimeoutMs: number;
  stopTimeoutMs: number;
  pollIntervalMs: number;
  requestTimeoutMs: number;
  checkPid: boolean;
  onOutput: ((line: string) => void) | undefined;
  onStatus: ((status: UpdateStatus, detail: Record<string, unknown>) => void) | undefined;

  #port: number | undefined;
  #child: Child | null = null;
  #launch: LaunchConfig | null = null;
  #lastOutput: string[] = [];
  #busy: Promise<unknown> = Promise.resolve();

  constructor(options: ManagerOptions = {}) {
    this.binary = options.binary ?? defaultBinary();
    this.host = options.host ?? '127.0.0.1';
    this.#port = options.port || undefined;
    this.extraArgs = [...(options.extraArgs ?? [])];
    this.env = { ...(options.env ?? {}) };
    this.startTimeoutMs = options.startTimeoutMs ?? 15_000;
    this.stopTimeoutMs = options.stopTimeoutMs ?? 10_000;
    this.pollIntervalMs = options.pollIntervalMs ?? 50;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.checkPid = options.checkPid ?? true;
    this.onOutput = options.onOutput;
    this.onStatus = options.onStatus;
  }

  // ------------------------------------------------------------------ info

  /** The listen port (picked on the first start when not given). */
  get port(): number | undefined {
    return this.#port;
  }

  /** `http://host:port` of the managed instance. */
  get baseUrl(): string {
    if (this.#port === undefined) throw new LlmLinkError('no port yet: pass `port` or call start() first');
    const host = this.host.includes(':') ? `[${this.host}]` : this.host;
    return `http://${host}:${this.#port}`;
  }

  /** Pid of the running child, if any. */
  get pid(): number | undefined {
    return this.#child && !this.#child.exited ? this.#child.proc.pid : undefined;
  }

  /** The child process, if any. */
  get process(): ChildProcess | undefined {
    return this.#child?.proc;
  }

  /** The configuration that reproduces the running instance (updated by updateConfig and switch). */
  get launchConfig(): LaunchConfig | null {
    return this.#launch;
  }

  /** The last lines llm-link printed. */
  get output(): string[] {
    return [...(this.#child?.output ?? this.#lastOutput)];
  }

  isRunning(): boolean {
    return this.#child !== null && !this.#child.exited;
  }

  // ------------------------------------------------------------------ HTTP

  async #request<T>(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
    const url = this.baseUrl + path;
    const init: RequestInit = {
      method,
      headers: body === undefined ? { accept: 'application/json' } : { accept: 'application/json', 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    };
    let res: Response;
    let text: string;
    for (let attempt = 0; ; attempt++) {
      try {
        res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs ?? this.requestTimeoutMs) });
        text = await res.text();
        break;
      } catch (err) {
        // a kept-alive connection to a process that just exited: retry a GET once
        if (method === 'GET' && attempt === 0 && !isTimeout(err)) continue;
        throw new ApiError(method, path, null, describeFetchError(err), undefined, err);
      }
    }
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      /* keep the text */
    }
    if (!res.ok) {
      throw new ApiError(method, path, res.status, errorMessage(parsed) ?? (res.statusText || 'error'), parsed);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new ApiError(method, path, res.status, 'answer is not a JSON object', parsed);
    }
    return parsed as T;
  }

  /** `GET /api/health`. */
  health(): Promise<Health> {
    return this.#request<Health>('GET', '/api/health');
  }

  /** `GET /api/config/current` (provider, model, has_api_key, has_base_url). */
  currentConfig(): Promise<CurrentConfig> {
    return this.#request<CurrentConfig>('GET', '/api/config/current');
  }

  /** `GET /api/config/pid`. */
  async getPid(): Promise<number> {
    return Number((await this.#request<{ pid: number }>('GET', '/api/config/pid')).pid);
  }

  /**
   * `POST /api/config/validate`: the server lists the upstream's models with
   * that key. Resolves with the answer, also when it says `invalid` (see
   * {@link ensureValidKey}).
   */
  validateKey(provider: string, apiKey: string, baseUrl?: string): Promise<ValidationResult> {
    const body: Record<string, string> = { provider, api_key: apiKey };
    if (baseUrl !== undefined) body.base_url = baseUrl;
    return this.#request<ValidationResult>('POST', '/api/config/validate', body, Math.max(this.requestTimeoutMs, 30_000));
  }

  /** Like {@link validateKey} but throws {@link ValidationError} unless valid. */
  async ensureValidKey(provider: string, apiKey: string, baseUrl?: string): Promise<ValidationResult> {
    const res = await this.validateKey(provider, apiKey, baseUrl);
    if (res.status !== 'valid') throw new ValidationError(provider, String(res.message || 'invalid key'), res.models ?? []);
    return res;
  }

  // ------------------------------------------------------------- lifecycle

  /**
   * Spawns llm-link for `provider` and waits until `/api/health` answers.
   * The key goes into the provider's env var, never on the command line.
   * Throws {@link StartError} when the process cannot be spawned, exits, or is
   * not healthy within `startTimeoutMs`; {@link VerificationError} when it
   * reports another provider/model.
   */
  start(provider: string, opts: { model?: string; apiKey?: string; baseUrl?: string } = {}): Promise<Health> {
    return this.#exclusive(async () => {
      if (this.isRunning()) {
        throw new LlmLinkError(`llm-link is already running (pid ${this.pid}); use updateConfig(), switch() or stop()`);
      }
      if (this.#port === undefined) this.#port = await findFreePort(this.host);
      const launch = LaunchConfig.forProvider(provider, opts);
      try {
        const health = await this.#launchAndVerify(launch, null, provider, opts.model, false);
        this.#launch = launch;
        return health;
      } catch (err) {
        await this.#terminate();
        throw err;
      }
    });
  }

  /**
   * The restart flow: change provider/key/model by restarting llm-link.
   *
   * 1. if `validate` (default true): `POST /api/config/validate`, throw
   *    {@link ValidationError} when invalid (nothing is touched);
   * 2. `POST /api/config/update` → `env_vars`, `cli_args` and the current
   *    `instance_id` (an {@link ApiError} here, e.g. an unknown provider,
   *    leaves the running instance untouched);
   * 3. stop the process (SIGTERM, SIGKILL after `stopTimeoutMs`);
   * 4. start it with `env_vars` and `cli_args`;
   * 5. poll `/api/health` until a new `instance_id` appears; check provider and model.
   *
   * If step 4 or 5 fails, the previous configuration is started and verified
   * again and a {@link RestartError} is thrown with `rolledBack: true`
   * (`false` when the rollback failed too). Resolves with the new health.
   */
  updateConfig(provider: string, change: ProviderChange = {}): Promise<Health> {
    return this.#exclusive(async () => {
      if (!this.isRunning() || this.#launch === null) {
        throw new LlmLinkError('llm-link is not running under this manager; call start() first');
      }
      try {
        return await this.#updateConfig(provider, change);
      } catch (err) {
        this.#emit('failed', { error: err });
        throw err;
      }
    });
  }

  async #updateConfig(provider: string, change: ProviderChange): Promise<Health> {
    const { apiKey, model, baseUrl } = change;
    if (change.validate ?? true) {
      this.#emit('validating', { provider });
      await this.ensureValidKey(provider, apiKey ?? '', baseUrl);
    }
    const previous = this.#launch as LaunchConfig;
    const prevHealth = await this.health();
    this.#emit('preparing', { provider, model });
    const update = await this.#request<ConfigUpdate>('POST', '/api/config/update', changeBody(provider, change));
    if (update.status !== undefined && update.status !== 'success') {
      throw new ApiError('POST', '/api/config/update', 200, String(update.message), update);
    }
    if (!update.cli_args || !update.cli_args.provider) {
      throw new ApiError('POST', '/api/config/update', 200, 'answer has no cli_args.provider', update);
    }
    const next = new LaunchConfig(update.cli_args, update.env_vars ?? {});
    const oldId = update.current_instance_id ?? prevHealth.instance_id;

    this.#emit('stopping', { pid: this.pid, instance_id: oldId });
    await this.#terminate();
    try {
      const health = await this.#launchAndVerify(next, oldId, next.provider, next.model ?? model, false);
      this.#launch = next;
      this.#emit('success', { provider: health.provider, model: health.model, instance_id: health.instance_id });
      return health;
    } catch (err) {
      if (!(err instanceof LlmLinkError)) throw err;
      const stage = err instanceof VerificationError ? 'verify' : 'start';
      this.#emit('rolling_back', { stage, error: err });
      await this.#terminate();
      try {
        await this.#launchAndVerify(
          previous,
          oldId,
          prevHealth.provider || previous.provider,
          prevHealth.model || previous.model,
          true,
        );
      } catch (rbErr) {
        await this.#terminate();
        this.#launch = null;
        throw new RestartError(stage, err, false, rbErr instanceof LlmLinkError ? rbErr : new LlmLinkError(String(rbErr)));
      }
      this.#launch = previous;
      throw new RestartError(stage, err, true);
    }
  }

  /**
   * The in-process switch: `POST /api/config/switch`, no restart. Verifies that
   * `/api/health` then shows the new provider and model with the *same*
   * `instance_id` (else {@link VerificationError}). A refused switch (unknown
   * provider, provider cannot be built) is an {@link ApiError} and leaves the
   * running configuration as it was. With `validate: true` the key is checked
   * first. {@link launchConfig} is updated so a later restart or rollback
   * reproduces the new state.
   */
  switch(provider: string, change: ProviderChange = {}): Promise<Health> {
    return this.#exclusive(async () => {
      if (change.validate) await this.ensureValidKey(provider, change.apiKey ?? '', change.baseUrl);
      const before = await this.health();
      const resp = await this.#request<ConfigUpdate>('POST', '/api/config/switch', changeBody(provider, change));
      if (resp.status !== undefined && resp.status !== 'success') {
        throw new ApiError('POST', '/api/config/switch', 200, String(resp.message), resp);
      }
      if (resp.restart_required) {
        throw new VerificationError('llm-link answered restart_required=true to an in-process switch', { restart_required: false }, { restart_required: true });
      }
      const cli = resp.cli_args ?? ({} as Partial<CliArgs>);
      const expected = {
        provider: cli.provider ? String(cli.provider) : canonicalProvider(provider),
        model: change.model ?? (cli.model === undefined || cli.model === null ? undefined : String(cli.model)),
        instance_id: before.instance_id,
      };
      const after = await this.health();
      verify(expected, after, 'in-process switch');
      if (cli.provider) this.#launch = new LaunchConfig(cli as CliArgs, resp.env_vars ?? {});
      return after;
    });
  }

  /**
   * Stops llm-link gracefully and resolves with its exit code: asks
   * `POST /api/config/shutdown` first (in-flight requests finish), falls back
   * to SIGTERM, and kills the process after `timeoutMs` (default
   * `stopTimeoutMs`). Resolves `null` when nothing was running.
   */
  stop(timeoutMs?: number): Promise<number | null> {
    return this.#exclusive(async () => {
      const child = this.#child;
      if (!child) return null;
      const wait = timeoutMs ?? this.stopTimeoutMs;
      if (!child.exited) {
        let asked = false;
        try {
          await this.#request('POST', '/api/config/shutdown', {}, Math.min(5_000, wait));
          asked = true;
        } catch {
          /* not answering: SIGTERM below */
        }
        if (asked) await waitFor(child.done, wait);
      }
      const code = await this.#terminate(wait);
      this.#launch = null;
      return code;
    });
  }

  /** Same as {@link stop}. */
  async close(): Promise<void> {
    await this.stop();
  }

  /** `await using mgr = new LlmLinkManager()` support. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Synchronous SIGKILL of the child (used when the host process exits). */
  killNow(): void {
    const child = this.#child;
    if (child && !child.exited) {
      try {
        child.proc.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }

  // -------------------------------------------------------------- internals

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#busy.then(fn, fn);
    this.#busy = run.catch(() => undefined);
    return run;
  }

  #emit(status: UpdateStatus, detail: Record<string, unknown>): void {
    if (!this.onStatus) return;
    try {
      this.onStatus(status, detail);
    } catch {
      /* a host's callback must not break the flow */
    }
  }

  #spawn(launch: LaunchConfig): Child {
    const env: Record<string, string | undefined> = { ...process.env };
    for (const name of CONTROLLED_ENV) delete env[name];
    Object.assign(env, this.env, launch.envVars);
    const args = ['--host', this.host, '--port', String(this.#port), ...launch.argv(), ...this.extraArgs];
    const proc = spawn(this.binary, args, { env, stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
    const child: Child = {
      proc,
      output: [],
      exited: false,
      exitCode: null,
      signal: null,
      spawnError: null,
      done: Promise.resolve(),
    };
    const push = (line: string): void => {
      child.output.push(line);
      if (child.output.length > OUTPUT_LINES) child.output.shift();
      if (this.onOutput) {
        try {
          this.onOutput(line);
        } catch {
          /* ignore */
        }
      }
    };
    const streamsClosed = [proc.stdout, proc.stderr].map((stream) => {
      if (!stream) return Promise.resolve();
      const rl = createInterface({ input: stream, crlfDelay: Infinity });
      rl.on('line', push);
      return new Promise<void>((resolve) => rl.once('close', () => resolve()));
    });
    const exited = new Promise<void>((resolve) => {
      proc.once('exit', (code, signal) => {
        child.exitCode = code;
        child.signal = signal;
        resolve();
      });
      // `on`, not `once`: a later 'error' (e.g. a failed kill) must not go unhandled
      proc.on('error', (err) => {
        // spawn failure (ENOENT, EACCES): no 'exit' follows
        if (proc.pid === undefined && child.spawnError === null) {
          child.spawnError = err;
          resolve();
        }
      });
    });
    child.done = exited.then(async () => {
      child.exited = true;
      // output is drained shortly after exit; do not wait forever on a grandchild holding the pipe
      await waitFor(Promise.all(streamsClosed), 1_000);
    });
    exited.then(() => {
      child.exited = true;
    });
    this.#child = child;
    live.add(this);
    installExitHook();
    return child;
  }

  async #launchAndVerify(
    launch: LaunchConfig,
    oldInstanceId: number | null,
    expectProvider: string | undefined,
    expectModel: string | undefined,
    rollback: boolean,
  ): Promise<Health> {
    this.#emit('starting', { provider: launch.provider, model: launch.model, rollback });
    const child = this.#spawn(launch);
    const health = await this.#waitHealthy(child, oldInstanceId);
    this.#emit('verifying', { instance_id: health.instance_id, pid: health.pid, rollback });
    const expected: Record<string, unknown> = {};
    if (expectProvider) expected.provider = canonicalProvider(expectProvider);
    if (expectModel) expected.model = expectModel;
    verify(expected, health, 'start');
    return health;
  }

  async #waitHealthy(child: Child, oldInstanceId: number | null): Promise<Health> {
    const deadline = Date.now() + this.startTimeoutMs;
    let lastProblem = 'no answer yet';
    for (;;) {
      if (child.exited || child.spawnError) {
        await child.done;
        if (child.spawnError) {
          throw new StartError(`cannot run ${JSON.stringify(this.binary)}: ${child.spawnError.message}`, {
            cause: child.spawnError,
          });
        }
        const how = child.exitCode !== null ? `code ${child.exitCode}` : `signal ${child.signal}`;
        throw new StartError(`llm-link exited with ${how} before becoming healthy`, {
          exitCode: child.exitCode,
          signal: child.signal,
          output: [...child.output],
        });
      }
      try {
        // an exit while a poll hangs (e.g. something else holds the port) ends the wait at once
        const h = await Promise.race([
          this.#request<Health>('GET', '/api/health', undefined, Math.min(this.requestTimeoutMs, 2_000)),
          child.done.then(() => null),
        ]);
        if (h === null) continue;
        if (oldInstanceId !== null && h.instance_id === oldInstanceId) {
          lastProblem = `still the old instance ${oldInstanceId}`;
        } else if (this.checkPid && h.pid !== undefined && h.pid !== child.proc.pid) {
          lastProblem = `port ${this.#port} is answered by another process (pid ${h.pid})`;
        } else if (h.status !== undefined && h.status !== 'ok') {
          lastProblem = `status ${JSON.stringify(h.status)}`;
        } else {
          return h;
        }
      } catch (err) {
        lastProblem = err instanceof Error ? err.message : String(err);
      }
      if (Date.now() >= deadline) {
        throw new StartError(
          `llm-link did not become healthy on ${this.baseUrl} within ${this.startTimeoutMs / 1000}s (${lastProblem})`,
          { output: [...child.output] },
        );
      }
      await sleep(this.pollIntervalMs);
    }
  }

  /** SIGTERM, wait up to `timeoutMs`, then SIGKILL. Resolves with the exit code. */
  async #terminate(timeoutMs?: number): Promise<number | null> {
    const child = this.#child;
    if (!child) return null;
    if (!child.exited) {
      try {
        child.proc.kill('SIGTERM');
      } catch {
        /* already gone */
      }
      if (!(await waitFor(child.done, timeoutMs ?? this.stopTimeoutMs))) {
        try {
          child.proc.kill('SIGKILL');
        } catch {
          /* already gone */
        }
        await child.done;
      }
    }
    await child.done;
    this.#lastOutput = [...child.output];
    this.#child = null;
    live.delete(this);
    return child.exitCode;
  }
}

// ---------------------------------------------------------------- helpers

function changeBody(provider: string, change: ProviderChange): Record<string, string> {
  const body: Record<string, string> = { provider };
  if (change.apiKey !== undefined) body.api_key = change.apiKey;
  if (change.model !== undefined) body.model = change.model;
  if (change.baseUrl !== undefined) body.base_url = change.baseUrl;
  return body;
}

function verify(expected: Record<string, unknown>, actual: Record<string, unknown>, what: string): void {
  const wrong = Object.entries(expected).filter(([k, v]) => v !== undefined && actual[k] !== v);
  if (wrong.length) {
    const detail = wrong.map(([k, v]) => `${k}: expected ${JSON.stringify(v)}, got ${JSON.stringify(actual[k])}`).join(', ');
    throw new VerificationError(
      `after ${what}, /api/health does not match (${detail})`,
      expected,
      Object.fromEntries(Object.keys(expected).map((k) => [k, actual[k]])),
    );
  }
}

/** Resolves true when `p` settles within `ms`, false on timeout. */
async function waitFor(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function errorMessage(body: unknown): string | undefined {
  if (!body || typeof body !== 'object') return typeof body === 'string' && body ? body : undefined;
  const b = body as Record<string, unknown>;
  if (typeof b.message === 'string' && b.message) return b.message;
  if (b.error && typeof b.error === 'object' && typeof (b.error as Record<string, unknown>).message === 'string') {
    return (b.error as Record<string, string>).message;
  }
  if (typeof b.error === 'string') return b.error;
  return undefined;
}

function isTimeout(err: unknown): boolean {
  return err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
}

function describeFetchError(err: unknown): string {
  if (isTimeout(err)) return 'timed out';
  if (err instanceof Error) {
    const cause = (err as Error & { cause?: unknown }).cause;
    if (cause instanceof Error) return `${err.message}: ${(cause as Error & { code?: string }).code ?? cause.message}`;
    return err.message;
  }
  return String(err);
}
