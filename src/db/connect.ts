/**
 * How stockctl connects, for every command and for `migrate`: a short connect timeout
 * for a server that is down or silent, and a longer wait for one that is full.
 */
import postgres from 'postgres';
import { errorCode } from './errors.js';

/** Seconds allowed to establish a connection before we give up with exit 7. */
export const CONNECT_TIMEOUT_S = 5;

export function createClient(url: string, opts: { application?: string; max?: number; lockTimeoutMs?: number } = {}) {
  const connection: Record<string, string> = { application_name: opts.application ?? 'stockctl' };
  if (opts.lockTimeoutMs) connection.lock_timeout = String(opts.lockTimeoutMs);
  return postgres(url, {
    max: opts.max ?? 2,
    connect_timeout: CONNECT_TIMEOUT_S,
    idle_timeout: 30,
    onnotice: () => {},
    connection,
  });
}

/**
 * Seconds a command waits for a slot on a full server ("too many clients") or one still
 * starting up. Both answer at once, so this is not a hang: when a hundred buyers start
 * together against max_connections = 100, the last few must wait for the first to finish,
 * which on a busy machine takes longer than the connect timeout.
 */
export const BUSY_SERVER_WAIT_S = 30;

/** Waits out a full server or one still starting up (see BUSY_SERVER_WAIT_S). */
export async function whenConnected<T>(first: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + BUSY_SERVER_WAIT_S * 1000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await first();
    } catch (err) {
      const code = errorCode(err);
      if ((code !== '53300' && code !== '57P03') || Date.now() > deadline) throw err;
      // Jittered and growing, so that waiting processes do not retry in step.
      const pause = Math.min(1000, 50 * attempt) * (0.5 + Math.random());
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }
}
