/**
 * The engine's settings and their defaults, from the seed design. Read from the
 * environment (with flags over them) only at the edge: src/cli/config.ts.
 */

export interface Settings {
  paymentTimeoutMinutes: number;
  maxStockRetryAttempts: number;
  stockRetryBackoffMs: number;
}

export const DEFAULT_SETTINGS: Settings = {
  paymentTimeoutMinutes: 15,
  maxStockRetryAttempts: 3,
  stockRetryBackoffMs: 100,
};

/** `check`'s alert rules. */
export interface AlertThresholds {
  maxExpiredPerHour: number;
  maxConflictRate: number;
  maxFailedSweeps: number;
  /** Alert when a SKU has this many units available or fewer; null: the rule is off. */
  lowStock: number | null;
  /** Alert when no sweep has started for this many seconds, or none ever ran; null: the rule is off. */
  maxSweepAgeSeconds: number | null;
}

export const DEFAULT_THRESHOLDS: AlertThresholds = { maxExpiredPerHour: 50, maxConflictRate: 0.1, maxFailedSweeps: 3, lowStock: 0, maxSweepAgeSeconds: 15 * 60 };

/** Per-SKU series in the metrics (`stock_available`), for at most this many SKUs. */
export const DEFAULT_METRICS_MAX_SKUS = 100;

export { DEFAULT_STATEMENT_TIMEOUT_S } from '../db/limits.js';

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
