/** The wire probe: what answers on a port, and whether it is this home's own server. */
import { errorCode, refusedCredentials, SQLSTATE } from '../errors.js';
import { clusterIdentifier } from './identity.js';
import { DATABASE } from './layout.js';
import { listensOn } from './postmaster.js';
import { superuserClient } from './superuser.js';

export type ProbeState = 'ready' | 'no-database' | 'starting' | 'down' | 'foreign' | 'refused' | 'other';

/**
 * Does this home's own server accept the home's password on `port`? A real login and one
 * query: the server's system identifier must be the one in our pg_control, so another
 * home's server that took the port after ours stopped is 'foreign', never used. A server
 * that refuses the password ('refused') is another home's, or ours with another password.
 */
export async function probe(port: number, dataDir: string, password: string, timeoutS = 3): Promise<ProbeState> {
  const ours = await clusterIdentifier(dataDir);
  // The stockctl database first; if it is missing, identify the server through `postgres`.
  for (const database of [DATABASE, 'postgres']) {
    const sql = await superuserClient(port, password, database, { timeoutS, application: 'stockctl-probe' });
    try {
      const [row] = await sql<{ id: string }[]>`select system_identifier::text as id from pg_control_system()`;
      if (ours === undefined || row?.id !== ours) return 'foreign';
      return database === DATABASE ? 'ready' : 'no-database';
    } catch (err) {
      const code = errorCode(err);
      if (code === SQLSTATE.invalidCatalogName && database === DATABASE) continue;
      if (code === 'ECONNREFUSED') return 'down';
      if (code === SQLSTATE.cannotConnectNow) return 'starting';
      if (refusedCredentials(err)) return 'refused';
      // Up but full: our own postmaster on this port says it is ours; the caller's pool waits.
      if (code === SQLSTATE.tooManyConnections) return (await listensOn(dataDir, port)) ? 'ready' : 'other';
      return 'other';
    } finally {
      await sql.end({ timeout: 1 });
    }
  }
  return 'other';
}
