/**
 * The one place where a command's life is managed: output set up, database opened and
 * always closed, any error turned into one sentence (or one JSON document) and an exit
 * code, Ctrl-C and SIGTERM answered by draining and exiting 130 / 143.
 */
import { userInfo } from 'node:os';
import { StockctlError } from '../errors.js';
import { checkDatabaseUrl, publicMessage, sqlState, toDomainError } from '../db/errors.js';
import type { Database, OpenOptions } from '../db/client.js';
import { createOutput, type Output } from './output.js';
import { loadSettings, type Settings } from '../engine/settings.js';

export interface GlobalFlags {
  json?: boolean;
  verbose?: boolean;
  quiet?: boolean;
  databaseUrl?: string;
  actor?: string;
}

export interface CommandContext {
  out: Output;
  actor: string;
  settings: Settings;
  /** Aborted on Ctrl-C / SIGTERM: long-running commands stop taking new work. */
  signal: AbortSignal;
  /** --database-url or DATABASE_URL; undefined means the embedded server. */
  databaseUrl: string | undefined;
  /** Open the database once for this invocation; closed by the runner. */
  openDb(opts?: Omit<OpenOptions, 'url'>): Promise<Database>;
}

/** What a command body returns: its exit code (0 when omitted). */
export type CommandBody = (ctx: CommandContext) => Promise<number | void>;

const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

function defaultActor(): string {
  if (process.env.STOCKCTL_ACTOR) return process.env.STOCKCTL_ACTOR;
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}

function describe(err: unknown): { exitCode: number; code: string; message: string; details?: Record<string, unknown> } {
  const mapped = toDomainError(err);
  if (mapped instanceof StockctlError) {
    return { exitCode: mapped.exitCode, code: mapped.code, message: mapped.message, details: mapped.details };
  }
  const state = sqlState(err);
  if (state === '55P03' || state === '57014') {
    return {
      exitCode: 7,
      code: 'database_busy',
      message: 'The database was too busy to answer in time (a lock or statement timeout); retry shortly.',
    };
  }
  // Never show a drizzle wrapper's message: it carries the query's bound parameters.
  const text = publicMessage(err);
  return {
    exitCode: 1,
    code: 'internal_error',
    message: `Internal error${state ? ` (SQLSTATE ${state})` : ''}: ${text}. Re-run with --verbose for details.`,
  };
}

export function reportError(err: unknown, flags: GlobalFlags, out?: Output): number {
  const info = describe(err);
  const verbose = flags.verbose || process.env.STOCKCTL_DEBUG === '1';
  if (flags.json) {
    const body: Record<string, unknown> = { code: info.code, message: info.message };
    if (info.details) Object.assign(body, info.details);
    process.stdout.write(`${JSON.stringify({ error: body }, null, 2)}\n`);
  } else {
    const prefix = out?.chalk ? out.chalk.red('error:') : 'error:';
    process.stderr.write(`${prefix} ${info.message}\n`);
  }
  if (verbose && err instanceof Error) process.stderr.write(`${err.stack ?? err}\n`);
  return info.exitCode;
}

export async function runCommand(flags: GlobalFlags, body: CommandBody): Promise<never> {
  const abort = new AbortController();
  let database: Database | undefined;
  let signalExit: number | undefined;
  const closeDb = async () => {
    const db = database;
    database = undefined;
    await db?.close().catch(() => {});
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalExit !== undefined) process.exit(signalExit); // second Ctrl-C: leave now
    signalExit = SIGNAL_EXIT[signal];
    abort.abort();
    // Give the command a moment to drain; then close the pool (rolling back any open
    // transaction on the server) and leave.
    setTimeout(() => void closeDb().finally(() => process.exit(signalExit)), 5000).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let exitCode: number;
  let out: Output | undefined;
  try {
    out = await createOutput(flags);
    const databaseUrl = flags.databaseUrl || process.env.DATABASE_URL || undefined;
    const output = out;
    const ctx: CommandContext = {
      out: output,
      actor: flags.actor || defaultActor(),
      settings: loadSettings(),
      signal: abort.signal,
      databaseUrl: databaseUrl ? checkDatabaseUrl(databaseUrl) : undefined,
      async openDb(opts = {}) {
        if (database) return database;
        const { openDatabase } = await import('../db/client.js');
        database = await openDatabase({
          ...opts,
          url: databaseUrl,
          onEmbedded: ({ home, started }) => {
            if (started || output.interactive) {
              output.note(
                output.chalk.dim(`Using the embedded PostgreSQL under ${home}${started ? ' (started it)' : ''}.`),
              );
            }
          },
        });
        return database;
      },
    };
    exitCode = (await body(ctx)) ?? 0;
  } catch (err) {
    exitCode = reportError(err, flags, out);
  } finally {
    await closeDb();
  }
  process.exit(signalExit ?? exitCode);
}
