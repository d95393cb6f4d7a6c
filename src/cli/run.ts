/**
 * The one place where a command's life is managed: output set up, database opened and
 * always closed, any error turned into one sentence (or one JSON document) and an exit
 * code, Ctrl-C and SIGTERM answered by draining and exiting 130 / 143.
 */
import { StockctlError } from '../errors.js';
import { publicMessage, sqlState, toDomainError } from '../db/errors.js';
import type { Database, OpenOptions } from '../db/client.js';
import { cliMessage } from './wording.js';
import { createOutput, type Output } from './output.js';
import { exitWhenFlushed } from './exit.js';
import { debugRequested, loadConfig, type Config } from './config.js';

export interface GlobalFlags {
  json?: boolean;
  verbose?: boolean;
  quiet?: boolean;
  databaseUrl?: string;
  actor?: string;
}

export interface CommandContext {
  out: Output;
  /** Everything read from the environment and the global flags, checked (src/cli/config.ts). */
  config: Config;
  /** Aborted on Ctrl-C / SIGTERM: long-running commands stop taking new work. */
  signal: AbortSignal;
  /** Open the database once for this invocation; closed by the runner. */
  openDb(opts?: Omit<OpenOptions, 'url'>): Promise<Database>;
}

/** What a command body returns: its exit code (0 when omitted). */
export type CommandBody = (ctx: CommandContext) => Promise<number | void>;

const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

export function describeError(err: unknown): { exitCode: number; code: string; message: string; details?: Record<string, unknown> } {
  const mapped = toDomainError(err);
  if (mapped instanceof StockctlError) {
    return { exitCode: mapped.exitCode, code: mapped.code, message: cliMessage(mapped), details: mapped.details };
  }
  const state = sqlState(err);
  // Never show a drizzle wrapper's message: it carries the query's bound parameters.
  const text = publicMessage(err);
  return {
    exitCode: 1,
    code: 'internal_error',
    message: `Internal error${state ? ` (SQLSTATE ${state})` : ''}: ${text}. Re-run with --verbose for details.`,
  };
}

export function reportError(err: unknown, flags: GlobalFlags, out?: Output): number {
  const info = describeError(err);
  const verbose = flags.verbose || debugRequested();
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

/** The command that starts the embedded server says so, and how to stop it (stderr; not with --json or --quiet). */
export function noteEmbeddedStarted(out: Output, info: { home: string; started: boolean }): void {
  if (!info.started || out.json) return;
  out.note(
    out.chalk.dim(`Started the embedded PostgreSQL under ${info.home}; it keeps running for the next command (stop it with \`stockctl db stop\`).`),
  );
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
    if (signalExit !== undefined) process.exit(signalExit); // second Ctrl-C: leave now, output or not
    signalExit = SIGNAL_EXIT[signal];
    abort.abort();
    // Give the command a moment to drain; then close the pool (rolling back any open
    // transaction on the server) and leave.
    setTimeout(() => void closeDb().finally(() => exitWhenFlushed(signalExit ?? 1)), 5000).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let exitCode: number;
  let out: Output | undefined;
  try {
    out = await createOutput(flags);
    const config = loadConfig(flags);
    const output = out;
    const ctx: CommandContext = {
      out: output,
      config,
      signal: abort.signal,
      async openDb(opts = {}) {
        if (database) return database;
        const { openDatabase } = await import('../db/client.js');
        database = await openDatabase({
          statementTimeoutS: config.statementTimeoutS,
          prepare: config.prepare,
          ...opts,
          url: config.databaseUrl,
          embedded: config.embedded,
          onEmbedded: (info) => {
            if (info.started) noteEmbeddedStarted(output, info);
            else if (output.interactive) output.note(output.chalk.dim(`Using the embedded PostgreSQL under ${info.home}.`));
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
  return exitWhenFlushed(signalExit ?? exitCode);
}
