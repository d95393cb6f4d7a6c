/**
 * Which PostgreSQL cluster a pool is talking to, and a guard that notices when that
 * changes. The embedded server lives on a port of this machine: after `db destroy` and
 * another home's `db start`, the same port can answer with another cluster, and a pool
 * that reconnects there would serve that home's data to this home's callers. A cluster's
 * system identifier is written once by initdb (a promoted standby keeps its primary's).
 */
import type postgres from 'postgres';
import { DatabaseUnavailableError } from '../errors.js';

export async function clusterIdentity(sql: postgres.Sql): Promise<string> {
  const [row] = await sql<{ id: string }[]>`SELECT system_identifier::text AS id FROM pg_control_system()`;
  return row.id;
}

export interface IdentityGuard {
  /** A connection closed: the next check asks the server again. */
  connectionClosed(): void;
  /** Resolves while the pool still talks to the cluster it started on; else DatabaseUnavailableError. */
  check(): Promise<void>;
  /** Told once each time the cluster is found changed, with the sentence saying so. */
  onMismatch(fn: (message: string) => void): void;
}

export function identityGuard(sql: postgres.Sql, expected: string, where: string): IdentityGuard {
  let verified = true;
  let checking: Promise<void> | undefined;
  let mismatched = false;
  let tell: (message: string) => void = () => {};
  const ask = async () => {
    const found = await clusterIdentity(sql);
    if (found !== expected) {
      const message =
        `The database at ${where} is now another PostgreSQL cluster (system identifier ${found}, not ${expected}, ` +
        'the one this process started on); every request is refused until that one answers again.';
      if (!mismatched) tell(message);
      mismatched = true;
      throw new DatabaseUnavailableError(message);
    }
    mismatched = false;
    verified = true;
  };
  return {
    connectionClosed() {
      verified = false;
    },
    check() {
      if (verified) return Promise.resolve();
      checking ??= ask().finally(() => (checking = undefined));
      return checking;
    },
    onMismatch(fn) {
      tell = fn;
    },
  };
}
