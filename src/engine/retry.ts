/** Retry policy for transient database conflicts: a table from SQLSTATE to backoff. */
import { sqlState } from '../db/errors.js';

/** Base backoff per retryable SQLSTATE (serialization failure, deadlock). */
const BACKOFF_MS: Record<string, number> = { '40001': 5, '40P01': 10 };
const MAX_ATTEMPTS = 8;

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Run `fn` again when it fails with a retryable SQLSTATE; `attempt` counts from 1. */
export async function withConflictRetry<T>(fn: (attempt: number) => Promise<T>, onRetry?: () => void): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      const base = BACKOFF_MS[sqlState(err) ?? ''];
      if (base === undefined || attempt >= MAX_ATTEMPTS) throw err;
      onRetry?.();
      await sleep(base * attempt + Math.random() * base);
    }
  }
}
