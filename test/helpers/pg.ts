/**
 * Small PostgreSQL chores shared by the global setup and the per-file helpers:
 * URLs for other databases on the same server, and CREATE / DROP DATABASE.
 */
import postgres from 'postgres';

/** What the global setup hands every test worker (see global-setup.ts). */
export interface TestServer {
  /** A URL on the test server to run CREATE / DROP DATABASE from. */
  adminUrl: string;
  /** The migrated template that every test database is cloned from. */
  template: string;
  kind: 'external' | 'embedded';
  /**
   * STOCKCTL_TEST_POOLER=host:port: the tests reach their databases through this pooler
   * (PgBouncer in transaction mode, see test/pooler/pgbouncer.sh); the harness itself
   * still creates and drops them on the server directly.
   */
  pooler?: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    testServer: TestServer;
  }
}

/** The same server and credentials, another database; optionally through a pooler at `via` (host:port). */
export function databaseUrl(serverUrl: string, database: string, via?: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  if (via) url.host = via;
  return url.toString();
}

export function adminClient(url: string): postgres.Sql {
  return postgres(url, {
    max: 1,
    connect_timeout: 10,
    idle_timeout: 5,
    onnotice: () => {},
    connection: { application_name: 'stockctl-test-admin' },
  });
}

export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * CREATE DATABASE, optionally from a template. PostgreSQL refuses to copy a template
 * that has a session open (55006); that is transient here (a backend still exiting), so
 * retry for a while before giving up.
 */
export async function createDatabase(admin: postgres.Sql, name: string, template?: string): Promise<void> {
  const from = template ? admin`TEMPLATE ${admin(template)}` : admin`TEMPLATE template0`;
  for (let attempt = 1; ; attempt++) {
    try {
      await admin`CREATE DATABASE ${admin(name)} ${from}`;
      return;
    } catch (err) {
      if (sqlState(err) !== '55006' || attempt >= 40) throw err;
      await sleep(50 + 10 * attempt);
    }
  }
}

export async function dropDatabase(admin: postgres.Sql, name: string, opts: { force?: boolean } = {}): Promise<void> {
  if (opts.force) await admin`DROP DATABASE IF EXISTS ${admin(name)} WITH (FORCE)`;
  else await admin`DROP DATABASE IF EXISTS ${admin(name)}`;
}

export interface Backend {
  pid: number;
  application_name: string;
  state: string | null;
}

/** Sessions connected to a database, other than the asking one. */
export async function backendsOn(admin: postgres.Sql, name: string): Promise<Backend[]> {
  return admin<Backend[]>`
    SELECT pid, application_name, state FROM pg_stat_activity
     WHERE datname = ${name} AND pid <> pg_backend_pid() ORDER BY pid`;
}
