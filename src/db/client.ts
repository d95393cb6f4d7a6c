/**
 * Opening the database: an external server named by DATABASE_URL, or the embedded one.
 * Every invocation owns one pool and must call `close()` in `finally`; a postgres.js
 * pool left open keeps the process (and a cron job) alive.
 */
import type postgres from 'postgres';
import type { PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import type * as schema from './schema.js';
import { DatabaseUnavailableError } from '../errors.js';
import { createClient, whenConnected } from './connect.js';
import { redactUrl, toDomainError } from './errors.js';
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
