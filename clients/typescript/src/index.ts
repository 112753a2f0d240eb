/**
 * llm-link-client: the host side of llm-link's hot-update protocol.
 *
 * ```ts
 * import { LlmLinkManager, RestartError } from 'llm-link-client';
 *
 * const mgr = new LlmLinkManager();
 * await mgr.start('zhipu', { model: 'glm-4-flash', apiKey: process.env.ZHIPU_API_KEY });
 * try {
 *   await mgr.updateConfig('deepseek', { apiKey: '…', model: 'deepseek-chat' });
 * } catch (e) {
 *   if (e instanceof RestartError) console.log(e.rolledBack ? 'kept the old provider' : 'llm-link is down');
 * }
 * await mgr.close();
 * ```
 *
 * @module
 */

export { ApiError, LlmLinkError, RestartError, StartError, ValidationError, VerificationError } from './errors.js';
export {
  LaunchConfig,
  LlmLinkManager,
  PROVIDER_KEY_ENV,
  canonicalProvider,
  defaultBinary,
  findFreePort,
  keyEnvFor,
} from './manager.js';
export type {
  CliArgs,
  ConfigUpdate,
  CurrentConfig,
  Health,
  ManagerOptions,
  ProviderChange,
  UpdateStatus,
  ValidationResult,
} from './manager.js';
