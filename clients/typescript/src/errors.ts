/**
 * Typed errors thrown by {@link LlmLinkManager}. All extend {@link LlmLinkError},
 * so a host can catch one type and still branch on the subclass.
 *
 * @module
 */

/** Base class of every error this package throws. */
export class LlmLinkError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * An llm-link endpoint could not be reached or answered an error.
 * `status` is the HTTP status, or `null` when no answer came at all
 * (connection refused, timeout); `body` is the parsed JSON body if any.
 */
export class ApiError extends LlmLinkError {
  readonly method: string;
  readonly path: string;
  readonly status: number | null;
  readonly body: unknown;
  /** The server's message (or the transport error) without the prefix. */
  readonly detail: string;

  constructor(method: string, path: string, status: number | null, detail: string, body?: unknown, cause?: unknown) {
    const where = `${method} ${path}`;
    super(`${status !== null ? `${where} -> HTTP ${status}` : `${where} failed`}: ${detail}`, { cause });
    this.method = method;
    this.path = path;
    this.status = status;
    this.body = body;
    this.detail = detail;
  }
}

/** The upstream refused the key (`POST /api/config/validate` said invalid). */
export class ValidationError extends LlmLinkError {
  readonly provider: string;
  readonly detail: string;
  readonly models: string[];

  constructor(provider: string, detail: string, models: string[] = []) {
    super(`API key for provider \`${provider}\` is invalid: ${detail}`);
    this.provider = provider;
    this.detail = detail;
    this.models = models;
  }
}

/**
 * llm-link could not be started or did not become healthy in time.
 * `exitCode` is set when the process exited by itself (2 for a configuration
 * error); `null` for a spawn failure or a timeout. `output` holds the last
 * lines it printed (stdout and stderr).
 */
export class StartError extends LlmLinkError {
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly output: string[];
  readonly detail: string;

  constructor(detail: string, opts: { exitCode?: number | null; signal?: string | null; output?: string[]; cause?: unknown } = {}) {
    const output = opts.output ?? [];
    const tail = output.filter((l) => l.trim() !== '').slice(-5);
    super(tail.length ? `${detail}\n  llm-link output (last lines):\n    ${tail.join('\n    ')}` : detail, {
      cause: opts.cause,
    });
    this.exitCode = opts.exitCode ?? null;
    this.signal = opts.signal ?? null;
    this.output = output;
    this.detail = detail;
  }
}

/** llm-link is up, but `/api/health` does not show what was asked for. */
export class VerificationError extends LlmLinkError {
  readonly expected: Record<string, unknown>;
  readonly actual: Record<string, unknown>;

  constructor(message: string, expected: Record<string, unknown>, actual: Record<string, unknown>) {
    super(message);
    this.expected = expected;
    this.actual = actual;
  }
}

/**
 * The restart flow of {@link LlmLinkManager.updateConfig} failed after the old
 * process was stopped. `stage` is `"start"` or `"verify"`, `cause` the
 * underlying error, `rolledBack` whether the previous configuration was
 * restarted and verified healthy, and `rollbackError` the error of a failed
 * rollback. When `rolledBack` is false no llm-link process is running.
 */
export class RestartError extends LlmLinkError {
  readonly stage: 'start' | 'verify';
  readonly rolledBack: boolean;
  readonly rollbackError: LlmLinkError | null;
  declare readonly cause: LlmLinkError;

  constructor(stage: 'start' | 'verify', cause: LlmLinkError, rolledBack: boolean, rollbackError: LlmLinkError | null = null) {
    const outcome = rolledBack
      ? 'rolled back to the previous configuration, which is healthy again'
      : `rollback to the previous configuration failed too (${rollbackError?.message}); llm-link is not running`;
    super(`restart with the new configuration failed at ${stage}: ${cause.message}; ${outcome}`, { cause });
    this.stage = stage;
    this.rolledBack = rolledBack;
    this.rollbackError = rollbackError;
  }
}
