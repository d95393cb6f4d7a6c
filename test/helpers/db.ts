/**
 * A database of its own for each test file, cloned from the migrated template built by
 * global-setup.ts, and dropped when the file is done.
 *
 *   const t = useTestDatabase();            // in the file (or describe) body
 *   it('...', async () => { await t.sql`...`; await t.cli(['stock']); });
 *
 * When the file is done, no session may still be connected to its database: a pool
 * left open is a process that never exits (a cron job that hangs), so it fails the file.
 * KEEP_TEST_DB=1 keeps the database of a failing file for inspection and prints its name.
 */
import { randomBytes } from 'node:crypto';
import type postgres from 'postgres';
import { afterAll, beforeAll, beforeEach, inject } from 'vitest';
import { openDatabase, type Database, type Db } from '../../src/db/client.js';
import { runCli, runCliJson, type CliOptions, type CliResult, type CliJsonResult } from './cli.js';
import { adminClient, backendsOn, createDatabase, databaseUrl, dropDatabase, type Backend } from './pg.js';

export interface TestDatabase {
  name: string;
  url: string;
  /** drizzle on this test's own pool (closed by drop). */
  db: Db;
  /** postgres.js on the same pool, for raw SQL. */
  sql: postgres.Sql;
  /** Close this test's pool, check nothing else is still connected, drop the database. */
  drop(opts?: { keep?: boolean }): Promise<void>;
}

export interface CreateOptions {
  /** false: an empty database (no schema at all), as a fresh production server has. */
  migrated?: boolean;
}

/** How long sessions of finished child processes get to disappear from pg_stat_activity. */
const LEAK_GRACE_MS = 3000;

export async function createTestDatabase(opts: CreateOptions = {}): Promise<TestDatabase> {
  const server = inject('testServer');
  const name = `stockctl_test_${randomBytes(5).toString('hex')}`;
  const url = databaseUrl(server.adminUrl, name, server.pooler);
  const admin = adminClient(server.adminUrl);
  let handle: Database;
  try {
    await createDatabase(admin, name, opts.migrated === false ? undefined : server.template);
    try {
      handle = await openDatabase({ url, application: 'stockctl-test', requireMigrated: opts.migrated !== false });
    } catch (err) {
      await dropDatabase(admin, name, { force: true }).catch(() => {});
      throw err;
    }
  } finally {
    await admin.end({ timeout: 5 });
  }
  let dropped = false;

  return {
    name,
    url,
    db: handle.db,
    sql: handle.sql,
    async drop({ keep = false } = {}) {
      if (dropped) return;
      dropped = true;
      await handle.close();
      const admin = adminClient(server.adminUrl);
      try {
        const leaked = await waitForNoSessions(admin, name);
        if (keep) {
          console.warn(`KEEP_TEST_DB: kept database ${name} for inspection: psql ${url}`);
        } else {
          await dropDatabase(admin, name, { force: leaked.length > 0 });
        }
        if (leaked.length > 0) {
          const who = leaked.map((b) => `${b.application_name || '(no application_name)'} [pid ${b.pid}, ${b.state}]`);
          throw new Error(
            `${leaked.length} session(s) were still connected to ${name} after the tests: ${who.join(', ')}. ` +
              'Every pool must be closed (await sql.end()) when its work is done.',
          );
        }
      } finally {
        await admin.end({ timeout: 5 });
      }
    },
  };
}

async function waitForNoSessions(admin: postgres.Sql, name: string): Promise<Backend[]> {
  const deadline = Date.now() + LEAK_GRACE_MS;
  for (;;) {
    const sessions = await backendsOn(admin, name);
    if (sessions.length === 0 || Date.now() > deadline) return sessions;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export interface FileDatabase extends Omit<TestDatabase, 'drop'> {
  /** Run bin/stockctl against this database. */
  cli(args: string[], opts?: Omit<CliOptions, 'databaseUrl'>): Promise<CliResult>;
  cliJson<T = unknown>(args: string[], opts?: Omit<CliOptions, 'databaseUrl'>): Promise<CliJsonResult<T>>;
  /** Another database for this file (e.g. an empty one), dropped with it. */
  createDatabase(opts?: CreateOptions): Promise<TestDatabase>;
}

/**
 * Register the hooks that give the calling file (or describe block) its own database.
 * The returned object is usable inside tests and hooks.
 */
export function useTestDatabase(): FileDatabase {
  let main: TestDatabase | undefined;
  const extra: TestDatabase[] = [];
  let failed = false;

  beforeAll(async () => {
    main = await createTestDatabase();
  });
  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => {
      failed = true;
    });
  });
  afterAll(async () => {
    const keep = process.env.KEEP_TEST_DB === '1' && failed;
    const errors: unknown[] = [];
    for (const database of [...extra, ...(main ? [main] : [])]) {
      await database.drop({ keep }).catch((err: unknown) => errors.push(err));
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, errors.map((e) => (e as Error).message).join('\n'));
  });

  const current = (): TestDatabase => {
    if (!main) throw new Error('useTestDatabase(): the database exists only inside tests and hooks.');
    return main;
  };
  return {
    get name() {
      return current().name;
    },
    get url() {
      return current().url;
    },
    get db() {
      return current().db;
    },
    get sql() {
      return current().sql;
    },
    cli: (args, opts = {}) => runCli(args, { ...opts, databaseUrl: current().url }),
    cliJson: (args, opts = {}) => runCliJson(args, { ...opts, databaseUrl: current().url }),
    async createDatabase(opts) {
      const database = await createTestDatabase(opts);
      extra.push(database);
      return database;
    },
  };
}
