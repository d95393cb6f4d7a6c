/**
 * How stockctl talks to people and scripts. Decided once at start-up: whether stdout
 * gets JSON, whether colour is allowed (chalk 5 ignores NO_COLOR, cli-table3 colours
 * borders even when piped), and whether spinners may draw (only on an interactive stderr).
 */
import { createRequire } from 'node:module';
import type { ChalkInstance } from 'chalk';

// cli-table3 is CommonJS and only needed for tables: loaded on first use.
const require = createRequire(import.meta.url);

export interface Output {
  json: boolean;
  verbose: boolean;
  quiet: boolean;
  color: boolean;
  /** May we draw spinners and progress on stderr? */
  interactive: boolean;
  chalk: ChalkInstance;
  /** Write the result: JSON document in --json mode, else call the human renderer. */
  result(value: unknown, human: () => void): void;
  /** A line of data on stdout. */
  line(text?: string): void;
  /** A diagnostic on stderr (never in quiet mode). */
  note(text: string): void;
  table(head: string[], rows: (string | number)[][], opts?: { align?: ('left' | 'right')[] }): string;
  spinner(text: string): Spinner;
}

export interface Spinner {
  text: string;
  succeed(text?: string): void;
  fail(text?: string): void;
  stop(): void;
}

/** A stand-in with chalk's shape whose every style returns the text unchanged. */
function plainChalk(): ChalkInstance {
  const identity: unknown = new Proxy((...text: unknown[]) => text.join(' '), { get: () => identity });
  return identity as ChalkInstance;
}

const silentSpinner = (): Spinner => ({ text: '', succeed() {}, fail() {}, stop() {} });

export async function createOutput(flags: { json?: boolean; verbose?: boolean; quiet?: boolean }): Promise<Output> {
  const json = Boolean(flags.json);
  const color = !json && !process.env.NO_COLOR && Boolean(process.stdout.isTTY) && process.env.TERM !== 'dumb';
  const interactive = !json && !flags.quiet && Boolean(process.stderr.isTTY);
  // Without colour, chalk (and its terminal detection) is not even loaded.
  const chalk = color ? new (await import('chalk')).Chalk({ level: 1 }) : plainChalk();
  const ora = interactive ? (await import('ora')).default : undefined;
  return {
    json,
    verbose: Boolean(flags.verbose),
    quiet: Boolean(flags.quiet),
    color,
    interactive,
    chalk,
    result(value, human) {
      if (json) process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
      else human();
    },
    line(text = '') {
      process.stdout.write(`${text}\n`);
    },
    note(text) {
      if (!flags.quiet) process.stderr.write(`${text}\n`);
    },
    table(head, rows, opts = {}) {
      const Table = require('cli-table3') as typeof import('cli-table3');
      const table = new Table({
        head: head.map((h) => chalk.bold(h)),
        ...(opts.align ? { colAligns: opts.align } : {}),
        style: { head: [], border: color ? ['grey'] : [] },
      });
      for (const row of rows) table.push(row.map(String));
      return table.toString();
    },
    spinner(text) {
      if (!ora) return silentSpinner();
      return ora({ text, stream: process.stderr }).start();
    },
  };
}
