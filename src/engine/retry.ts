/** Running a transaction again after a transient conflict (the SQLSTATE table is in db/errors.ts). */
import { retryAfterMs } from '../db/errors.js';

const MAX_ATTEMPTS = 8;

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Run `fn` again when it fails with a retryable SQLSTATE; `attempt` counts from 1. */
export async function withConflictRetry<T>(fn: (attempt: number) => Promise<T>, onRetry?: () => void): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      const base = retryAfterMs(err);
      if (base === undefined || attempt >= MAX_ATTEMPTS) throw err;
      onRetry?.();
      await sleep(base * attempt + Math.random() * base);
    }
  }
}
