/** The seed design's settings: environment variables, with command-line flags over them. */
import { InvalidInputError } from '../errors.js';

export interface Settings {
  paymentTimeoutMinutes: number;
  cleanupIntervalMinutes: number;
  maxStockRetryAttempts: number;
  stockRetryBackoffMs: number;
}

export const DEFAULT_SETTINGS: Settings = {
  paymentTimeoutMinutes: 15,
  cleanupIntervalMinutes: 5,
  maxStockRetryAttempts: 3,
  stockRetryBackoffMs: 100,
};

const ENV_NAMES: Record<keyof Settings, string> = {
  paymentTimeoutMinutes: 'PAYMENT_TIMEOUT_MINUTES',
  cleanupIntervalMinutes: 'CLEANUP_INTERVAL_MINUTES',
  maxStockRetryAttempts: 'MAX_STOCK_RETRY_ATTEMPTS',
  stockRetryBackoffMs: 'STOCK_RETRY_BACKOFF_MS',
};

export function loadSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const settings = { ...DEFAULT_SETTINGS };
  for (const key of Object.keys(ENV_NAMES) as (keyof Settings)[]) {
    const raw = env[ENV_NAMES[key]];
    if (raw === undefined || raw === '') continue;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < 0 || value > 1_000_000) {
      throw new InvalidInputError(`${ENV_NAMES[key]} must be a whole number from 0 to 1000000, got "${raw}".`);
    }
    settings[key] = value;
  }
  return settings;
}

/** Flags over environment: `--max-retries` and `--retry-backoff` for the optimistic strategy. */
export function withRetryFlags(
  settings: Settings,
  flags: { maxRetries?: string; retryBackoff?: string },
  parse: (raw: string, what: string) => number,
): Settings {
  return {
    ...settings,
    ...(flags.maxRetries !== undefined ? { maxStockRetryAttempts: parse(flags.maxRetries, '--max-retries') } : {}),
    ...(flags.retryBackoff !== undefined ? { stockRetryBackoffMs: parse(flags.retryBackoff, '--retry-backoff') } : {}),
  };
}
