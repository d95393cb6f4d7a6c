/**
 * Opening the database: an external server named by DATABASE_URL, or the embedded one.
 * Every invocation owns one pool and must call `close()` in `finally`; a postgres.js
 * pool left open keeps the process (and a cron job) alive.
 */
import postgres from 'postgres';
import type { PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import type * as schema from './schema.js';
import { DatabaseUnavailableError } from '../errors.js';
import { errorCode, redactUrl, toDomainError } from './errors.js';
import { runMigrations, schemaState } from './migrate.js';

export type Db = PostgresJsDatabase<typeof schema>;

export interface Database {
  db: Db;
  sql: postgres.Sql;
  url: string;
  embedded: boolean;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Explicit URL (from --database-url); falls back to DATABASE_URL, then the embedded server. */
  url?: string;
  /** Shown in pg_stat_activity, e.g. `stockctl-sweep`. */
  application?: string;
  /** Pool size; the CLI needs one or two, the loadtest as many as its concurrency. */
  max?: number;
  /** Fail with exit 7 when the schema is not migrated (every command but `migrate`). */
  requireMigrated?: boolean;
  /** Interactive commands should not queue forever behind a lock. */
  lockTimeoutMs?: number;
  /** Told once which database is in use when it is the embedded one. */
  onEmbedded?: (info: { url: string; home: string; started: boolean }) => void;
}

/** Seconds allowed to establish a connection before we give up with exit 7. */
export const CONNECT_TIMEOUT_S = 5;

export function createClient(url: string, opts: Pick<OpenOptions, 'application' | 'max' | 'lockTimeoutMs'> = {}) {
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
async function whenConnected<T>(first: () => Promise<T>): Promise<T> {
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

export async function openDatabase(opts: OpenOptions = {}): Promise<Database> {
  let url = opts.url ?? process.env.DATABASE_URL ?? '';
  let embedded = false;
  if (!url) {
    const { ensureEmbedded } = await import('./embedded.js');
    const info = await ensureEmbedded();
    url = info.url;
    embedded = true;
    opts.onEmbedded?.({ url, home: info.home, started: info.started });
  }
  const sql = createClient(url, opts);
  const close = () => sql.end({ timeout: 5 });
  // Connect and check the schema while drizzle loads: the two overlap.
  const checked =
    opts.requireMigrated !== false ? whenConnected(() => schemaState(sql)).then((state) => ({ state }), (error) => ({ error })) : undefined;
  const [{ drizzle }, tables] = await Promise.all([import('drizzle-orm/postgres-js'), import('./schema.js')]);
  try {
    const outcome = await checked;
    if (outcome && 'error' in outcome) throw outcome.error;
    const state = outcome?.state;
    if (state && !state.migrated && embedded) {
      // The embedded database is ours: keep it migrated. An external one never is.
      await runMigrations(url);
    } else if (state && !state.migrated) {
      throw new DatabaseUnavailableError(
        `The database schema is not migrated (${state.applied} of ${state.expected} migrations applied); run \`stockctl migrate\` first.`,
        'not_migrated',
      );
    }
  } catch (err) {
    await close();
    throw toDomainError(err, redactUrl(url));
  }
  return { db: drizzle(sql, { schema: tables }), sql, url, embedded, close };
}
