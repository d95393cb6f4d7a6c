/**
 * Opening the database: an external server named by DATABASE_URL, or the embedded one.
 * Every invocation owns one pool and must call `close()` in `finally`; a postgres.js
 * pool left open keeps the process (and a cron job) alive.
 */
import type postgres from 'postgres';
import type { PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import type * as schema from './schema.js';
import { DatabaseUnavailableError } from '../errors.js';
import { createClient, LOCK_TIMEOUT_MS, openClient, type ClientOptions } from './connect.js';
import { redactUrl, toDomainError } from './errors.js';
import { runMigrations, schemaState } from './migrate.js';
import { clusterIdentity, identityGuard, type IdentityGuard } from './identity.js';
import type { EmbeddedPlace } from './embedded/index.js';

/** drizzle on the pool, as `drizzle()` returns it: `$client` is the pool's postgres.js client. */
export type Db = PostgresJsDatabase<typeof schema> & { $client: postgres.Sql };

export interface Database {
  db: Db;
  sql: postgres.Sql;
  url: string;
  embedded: boolean;
  /** Reached through a pooler (PgBouncer): no startup settings, no named prepared statements. */
  pooled: boolean;
  /**
   * With `watchIdentity` on the embedded server: is the pool still on the cluster it started
   * on? Asked again after any of its connections closed.
   */
  identity?: IdentityGuard;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** The server (--database-url or DATABASE_URL); without it, the embedded server at `embedded`. */
  url?: string;
  /** Where the embedded server lives (STOCKCTL_HOME, STOCKCTL_EMBEDDED_PORT). */
  embedded?: EmbeddedPlace;
  /** Shown in pg_stat_activity, e.g. `stockctl-sweep`. */
  application?: string;
  /** Pool size; the CLI needs one or two, the loadtest as many as its concurrency. */
  max?: number;
  /** Fail with exit 7 when the schema is not migrated (every command but `migrate`). */
  requireMigrated?: boolean;
  /** How long a statement may wait for a lock; default LOCK_TIMEOUT_MS (0: no limit). */
  lockTimeoutMs?: number;
  /** The longest a statement may run or a transaction sit idle (STOCKCTL_STATEMENT_TIMEOUT). */
  statementTimeoutS?: number;
  /** Named prepared statements; off for PgBouncer in transaction mode (STOCKCTL_PREPARE=0). */
  prepare?: boolean;
  /** Told once which database is in use when it is the embedded one. */
  onEmbedded?: (info: { url: string; home: string; started: boolean }) => void;
  /** For a long-running process on the embedded server: notice another cluster on its port. */
  watchIdentity?: boolean;
}

/**
 * A pool's connections of their own for batched reserves (engine/reserve/batched.ts), each opened
 * on first use and closed with the pool. The batch statement is large: on a connection of
 * its own it is parsed and planned once, where spread over the pool every connection
 * would plan it again (1.2 ms of bind against 5 ms of execution for a batch of 32, at 32
 * connections, in the server log).
 */
const batchLanes = new WeakMap<Db, (lane: number) => Db>();

/** The pool's batch connection number `lane`, or the pool itself if it has none. */
export function batchConnection(db: Db, lane: number): Db {
  return batchLanes.get(db)?.(lane) ?? db;
}

export async function openDatabase(opts: OpenOptions = {}): Promise<Database> {
  let url = opts.url ?? '';
  let embedded = false;
  if (!url) {
    if (!opts.embedded) throw new Error('openDatabase needs a url or the place of the embedded server');
    const { ensureEmbedded } = await import('./embedded/index.js');
    const info = await ensureEmbedded(opts.embedded);
    url = info.url;
    embedded = true;
    opts.onEmbedded?.({ url, home: info.home, started: info.started });
  }
  // The embedded server's port may later answer with another home's cluster (db destroy,
  // then another db start): every reconnect makes the guard ask again.
  let guard: IdentityGuard | undefined;
  // One lock deadline for every command (and every connection of its pool), unless told otherwise.
  const sessionOptions: ClientOptions = { ...opts, lockTimeoutMs: opts.lockTimeoutMs ?? LOCK_TIMEOUT_MS };
  const clientOptions: ClientOptions =
    embedded && opts.watchIdentity ? { ...sessionOptions, onConnectionClosed: () => guard?.connectionClosed() } : sessionOptions;
  // Connect and check the schema while drizzle loads: the two overlap.
  const connecting = openClient(url, clientOptions, schemaState).then((client) => ({ client }), (error: unknown) => ({ error }));
  const [{ drizzle }, tables] = await Promise.all([import('drizzle-orm/postgres-js'), import('./schema.js')]);
  const outcome = await connecting;
  if ('error' in outcome) throw toDomainError(outcome.error, redactUrl(url));
  const { sql, first: state, pooled } = outcome.client;
  const lanes = new Map<number, Db>();
  const close = async () => {
    await Promise.all([sql, ...[...lanes.values()].map((lane) => lane.$client)].map((client) => client.end({ timeout: 5 })));
  };
  try {
    if (!state.migrated && embedded) {
      // The embedded database is ours: keep it migrated. An external one never is.
      await runMigrations(url, { statementTimeoutS: opts.statementTimeoutS });
    } else if (!state.migrated && opts.requireMigrated !== false) {
      throw new DatabaseUnavailableError(
        `The database schema is not migrated (${state.applied} of ${state.expected} migrations applied); run \`stockctl migrate\` first.`,
        'not_migrated',
      );
    }
    // ensureEmbedded has checked that this port answers with this home's cluster.
    if (embedded && opts.watchIdentity) guard = identityGuard(sql, await clusterIdentity(sql), redactUrl(url));
  } catch (err) {
    await sql.end({ timeout: 0 });
    throw toDomainError(err, redactUrl(url));
  }
  const db = drizzle(sql, { schema: tables });
  // Through a pooler, as the pool itself: no startup settings, no prepared statements.
  const laneOptions = pooled ? { ...clientOptions, sessionSettings: false, prepare: false } : clientOptions;
  // drizzle sets the client's type parsers and serializers (JSON, dates), as on the pool.
  batchLanes.set(db, (lane) => {
    let client = lanes.get(lane);
    if (!client) lanes.set(lane, (client = drizzle(createClient(url, { ...laneOptions, max: 1 }), { schema: tables })));
    return client;
  });
  return { db, sql, url, embedded, pooled, close, ...(guard ? { identity: guard } : {}) };
}
