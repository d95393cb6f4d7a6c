/**
 * Applying drizzle-kit migrations safely. drizzle's own `migrate()` takes no lock and
 * silently skips a migration older than the newest applied one; this runner holds an
 * advisory lock on one dedicated connection and refuses to skip anything.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type postgres from 'postgres';
import { readMigrationFiles } from 'drizzle-orm/migrator';
import { DatabaseUnavailableError, InvalidInputError } from '../errors.js';
import { openClient } from './connect.js';
import { SQLSTATE, sqlState } from './errors.js';

/** Resolved from this module, not the working directory: cron runs in $HOME. */
export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../drizzle', import.meta.url));

/** Arbitrary constant key for pg_advisory_lock: "stockctl" in ASCII. */
const MIGRATION_LOCK_KEY = 0x73746f636b63746cn;

interface JournalEntry {
  tag: string;
  when: number;
}

let knownMigrations: readonly JournalEntry[] | undefined;
let knownHashes: ReadonlyMap<number, string> | undefined;

/** The migrations this build knows, read once: they cannot change while it runs (`/readyz` asks on every probe). */
export function readJournal(): readonly JournalEntry[] {
  knownMigrations ??= JSON.parse(readFileSync(`${MIGRATIONS_FOLDER}/meta/_journal.json`, 'utf8')).entries as JournalEntry[];
  return knownMigrations;
}

/** Each known migration's hash as drizzle records it (sha256 of its SQL file), by its `when`; read once. */
function migrationHashes(): ReadonlyMap<number, string> {
  knownHashes ??= new Map(
    readJournal().map((e) => [e.when, createHash('sha256').update(readFileSync(`${MIGRATIONS_FOLDER}/${e.tag}.sql`, 'utf8')).digest('hex')]),
  );
  return knownHashes;
}

export interface MigrationPlan {
  applied: string[];
  pending: string[];
}

export interface SchemaState {
  migrated: boolean;
  applied: number;
  expected: number;
  /** Migrations recorded in the database that this stockctl does not know: always 0, since schemaState refuses such a database. */
  unknown: number;
}

/** The migrations recorded in the database: each one's `when` (drizzle's `created_at`) and hash. */
async function appliedMigrations(sql: postgres.Sql): Promise<Map<number, string>> {
  try {
    const rows = await sql<{ created_at: string; hash: string }[]>`select created_at, hash from drizzle.__drizzle_migrations`;
    return new Map(rows.map((r) => [Number(r.created_at), r.hash]));
  } catch (err) {
    // No migrations table, or no drizzle schema at all: nothing was ever migrated.
    const code = sqlState(err);
    if (code === SQLSTATE.undefinedTable || code === SQLSTATE.invalidSchemaName) return new Map();
    throw err;
  }
}

/**
 * A database this build must not touch: one migrated by a newer stockctl (it records a
 * migration this build does not know), or one whose applied migration differs from this
 * build's file of the same name (its hash does not match: changed by hand, or by another
 * build). Exit 7 / 503, as a schema not yet migrated is.
 */
function refuseForeignSchema(applied: ReadonlyMap<number, string>): void {
  const journal = readJournal();
  const hashes = migrationHashes();
  const changed = journal.find((e) => applied.has(e.when) && applied.get(e.when) !== hashes.get(e.when));
  if (changed) {
    throw new DatabaseUnavailableError(
      `The database's migration ${changed.tag} differs from this stockctl's (its recorded hash does not match): the schema was changed by hand or by another build of stockctl; restore it, or use the stockctl that migrated it.`,
      'schema_changed',
    );
  }
  const unknown = [...applied.keys()].filter((when) => !hashes.has(when)).length;
  if (unknown > 0) {
    throw new DatabaseUnavailableError(
      `The database is newer than this stockctl: it records ${unknown} migration(s) this version does not know; upgrade stockctl.`,
      'schema_newer',
    );
  }
}

/**
 * How far the database's schema is from this build's migrations (one cheap query, on
 * every command's start-up). A database this build must not touch (newer, or changed
 * by hand) is refused here, so that every command and `/readyz` refuse it.
 */
export async function schemaState(sql: postgres.Sql): Promise<SchemaState> {
  const journal = readJournal();
  const applied = await appliedMigrations(sql);
  refuseForeignSchema(applied);
  const appliedKnown = journal.filter((e) => applied.has(e.when)).length;
  return { migrated: appliedKnown === journal.length, applied: appliedKnown, expected: journal.length, unknown: 0 };
}

/** The least time a migration statement gets (STOCKCTL_STATEMENT_TIMEOUT may allow more). */
const MIGRATION_TIMEOUT_S = 600;

/**
 * Apply every pending migration, in order, each in its own transaction, under a
 * session advisory lock so that several hosts may run this at once.
 */
export async function runMigrations(
  url: string,
  opts: { dryRun?: boolean; statementTimeoutS?: number } = {},
): Promise<MigrationPlan> {
  const migrations = readMigrationFiles({ migrationsFolder: MIGRATIONS_FOLDER });
  const journal = readJournal();
  // DDL on a big table, and waiting for another host's migrate, may take longer than a statement.
  const statementTimeoutS = Math.max(opts.statementTimeoutS ?? 0, MIGRATION_TIMEOUT_S);
  const { sql, pooled } = await openClient(url, { max: 1, application: 'stockctl-migrate', statementTimeoutS }, (s) => s`select 1`);
  try {
    if (pooled) {
      throw new InvalidInputError(
        'migrate needs a direct connection to PostgreSQL, not a pooler in transaction mode (it holds a session lock while it works); point DATABASE_URL at the server itself.',
        'pooler',
      );
    }
    if (!opts.dryRun) await sql`select pg_advisory_lock(${MIGRATION_LOCK_KEY.toString()}::bigint)`;
    const recorded = await appliedMigrations(sql);
    const applied = new Set(recorded.keys());
    const plan: MigrationPlan = { applied: [], pending: [] };
    // Anything recorded as applied (even by a newer stockctl) makes every older,
    // unapplied migration a gap that must not be skipped silently.
    const newestApplied = Math.max(-1, ...applied);
    for (const entry of journal) {
      if (applied.has(entry.when)) plan.applied.push(entry.tag);
      else if (entry.when < newestApplied)
        throw new DatabaseUnavailableError(
          `Migration ${entry.tag} was never applied although later ones were; refusing to skip it. Apply it by hand or restore the database.`,
          'migration_skipped',
        );
      else plan.pending.push(entry.tag);
    }
    // Nothing pending is not "up to date" when the database is newer, or was changed by hand.
    refuseForeignSchema(recorded);
    if (opts.dryRun) return plan;
    if (plan.pending.length > 0) {
      await sql`create schema if not exists drizzle`;
      await sql`create table if not exists drizzle.__drizzle_migrations (id serial primary key, hash text not null, created_at bigint)`;
    }
    for (const migration of migrations) {
      if (applied.has(migration.folderMillis)) continue;
      await sql.begin(async (tx) => {
        for (const statement of migration.sql) {
          if (statement.trim()) await tx.unsafe(statement);
        }
        await tx`insert into drizzle.__drizzle_migrations (hash, created_at) values (${migration.hash}, ${migration.folderMillis})`;
      });
    }
    return plan;
  } finally {
    await sql.end({ timeout: 2 });
  }
}
