/**
 * How many connections a run may open: what it asks for (--concurrency, no more than
 * buyers), within what the server will take now. A server that is full turns a new
 * session away ("too many clients"); that is the machine's limit, not an oversell, so the
 * run asks first and stays inside it.
 */
import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { rows } from '../db/query.js';
import { BATCH_LANES } from '../engine/reserve/batched.js';

/** One limit on new sessions: how many it allows, and how many it already counts. */
export interface SessionLimit {
  limit: number;
  in_use: number;
}

/** The server's room for new sessions, read once at the start of a run. */
export interface ConnectionRoom {
  max_connections: number;
  /** Slots kept for superusers (superuser_reserved_connections, plus reserved_connections from PostgreSQL 16). */
  reserved_connections: number;
  /** Client sessions connected when the run started (its own first one included). */
  in_use: number;
  /** The role's CONNECTION LIMIT and the database's, where one is set and applies (never to a superuser). */
  role_limit?: SessionLimit;
  database_limit?: SessionLimit;
  /** New sessions the server will take now: the tightest of the above. */
  free: number;
}

export async function connectionRoom(database: Database): Promise<ConnectionRoom> {
  const [r] = await rows<{
    max_connections: number;
    reserved_connections: number;
    in_use: number;
    superuser: boolean;
    role_limit: number;
    role_in_use: number;
    database_limit: number;
    database_in_use: number;
  }>(
    database.db,
    sql`SELECT current_setting('max_connections')::int AS max_connections,
               current_setting('superuser_reserved_connections')::int
                 + coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved_connections,
               (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend') AS in_use,
               r.rolsuper AS superuser,
               r.rolconnlimit AS role_limit,
               (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend' AND usename = current_user) AS role_in_use,
               d.datconnlimit AS database_limit,
               (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend' AND datname = current_database()) AS database_in_use
          FROM pg_roles r, pg_database d
         WHERE r.rolname = current_user AND d.datname = current_database()`,
  );
  const limit = (limit: number, inUse: number): SessionLimit | undefined => (r.superuser || limit < 0 ? undefined : { limit, in_use: inUse });
  const role = limit(r.role_limit, r.role_in_use);
  const db = limit(r.database_limit, r.database_in_use);
  const free = Math.max(
    0,
    Math.min(r.max_connections - r.reserved_connections - r.in_use, ...[role, db].filter((l) => l !== undefined).map((l) => l.limit - l.in_use)),
  );
  return {
    max_connections: r.max_connections,
    reserved_connections: r.reserved_connections,
    in_use: r.in_use,
    ...(role ? { role_limit: role } : {}),
    ...(db ? { database_limit: db } : {}),
    free,
  };
}

/**
 * Sessions a run opens besides the buyers' pool: the checker's second (its first is open,
 * and counted in use, when the room is read), the chaos monkey's, and a connection per
 * batch lane when the batched strategy runs in this process.
 */
export const ownSessions = (run: { chaos: boolean; batchedHere: boolean }) => 1 + (run.chaos ? 1 : 0) + (run.batchedHere ? BATCH_LANES : 0);

export interface ConnectionPlan {
  /** The buyers' pool: --concurrency, no more than buyers, within the room. */
  connections: number;
  /** Sessions the run opens besides the buyers' pool: the checker's second, the chaos monkey, batched lanes. */
  own: number;
  /** The pool is smaller than asked because the server has no more room. */
  capped: boolean;
  /** Undefined behind a pooler, whose clients wait in its queue rather than being turned away. */
  room?: ConnectionRoom;
}

/**
 * The run's connections. `wanted` is --concurrency (no more than buyers); `own` what the
 * run opens besides (already counted: the checker's first session, open when this runs).
 * Returns connections 0 when the server has no room at all.
 */
export function planConnections(wanted: number, own: number, room: ConnectionRoom | undefined): ConnectionPlan {
  if (!room) return { connections: wanted, own, capped: false };
  const fits = Math.max(0, room.free - own);
  return { connections: Math.min(wanted, fits), own, capped: fits < wanted, room };
}
