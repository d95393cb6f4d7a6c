/**
 * The engine's one way to run SQL, on public APIs only: a statement is written with
 * drizzle's `sql` template, turned into text and parameters by `PgDialect#sqlToQuery`,
 * and run with postgres.js `unsafe` on the pool's own client (`db.$client`), the one
 * src/db/connect.ts wraps so that every statement and transaction has a deadline.
 */
import type postgres from 'postgres';
import { sql, type SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import type { Db } from './client.js';

/** A transaction: postgres.js's own, begun by `transaction()` below. */
export type Transaction = postgres.TransactionSql;

/** Where a statement runs: the database (drizzle's handle on it, or its pool) or a transaction. */
export type Tx = Db | postgres.Sql | Transaction;

const dialect = new PgDialect();

/** postgres.js clients are functions (tagged templates); drizzle's database is an object. */
function clientOf(on: Db | postgres.Sql): postgres.Sql;
function clientOf(on: Tx): postgres.Sql | Transaction;
function clientOf(on: Tx): postgres.Sql | Transaction {
  return typeof on === 'function' ? on : on.$client;
}

/**
 * Run a statement and return its rows. Asked to prepare, postgres.js parses and plans
 * each statement once per connection: planning the reserve statement costs about as
 * much as running it. The pool's own `prepare` option (off for PgBouncer in transaction
 * mode, see openDatabase) has the last word.
 */
export async function rows<T>(on: Tx, query: SQL): Promise<T[]> {
  return run<T[]>(on, query);
}

/** Run a statement for its effect; returns how many rows it touched. */
export async function execute(on: Tx, query: SQL): Promise<number> {
  return (await run(on, query)).count;
}

/** The statement as text and parameters, run prepared on the client under `on` (see `rows`). */
function run<T extends any[] = postgres.Row[]>(on: Tx, query: SQL): postgres.PendingQuery<T> {
  const { sql: text, params } = dialect.sqlToQuery(query);
  return clientOf(on).unsafe<T>(text, params as postgres.ParameterOrJSON<never>[], { prepare: true });
}

/**
 * Run `work` in one transaction (BEGIN ... COMMIT, or ROLLBACK when it throws). Its
 * statements go through `rows` and `execute` on the transaction it is given.
 */
export function transaction<T>(db: Db | postgres.Sql, work: (tx: Transaction) => Promise<T>): Promise<T> {
  return clientOf(db).begin(work) as Promise<T>;
}

/**
 * A JS array as one parameter (postgres.js binds it as a PostgreSQL array): drizzle's
 * template would otherwise spread an array into a parenthesised list.
 */
export function array(values: readonly (string | number)[]): SQL {
  return sql`${sql.param(values)}`;
}

/** A LIKE pattern for "starts with `prefix`", its own `%`, `_` and `\` taken literally. */
export function likePrefix(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, '\\$&')}%`;
}

/** A timestamp column as ISO 8601 text in UTC, to the millisecond: `2024-05-01T12:00:00.000Z`. */
export const iso = (column: string) => sql.raw(`to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`);
