/**
 * How stockctl talks to people and scripts. Decided once at start-up: whether stdout
 * gets JSON, whether colour is allowed (chalk 5 ignores NO_COLOR, cli-table3 colours
 * borders even when piped), and whether spinners may draw (only on an interactive stderr).
 */
import { createRequire } from 'node:module';
import type { ChalkInstance } from 'chalk';
import { colourRefused } from './config.js';
import { finishBeforeExit } from './exit.js';
import { writeJsonDocument } from './json-stream.js';

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
  /**
   * Write the result: JSON document in --json mode, else call the human renderer. A large
   * document goes out in chunks as the reader takes them; the promise says when all of it
   * has been handed to stdout (and the process never exits before that, awaited or not).
   */
  result(value: unknown, human: () => void): Promise<void>;
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
  /** Draw the current text now rather than at the next tick. */
  render(): void;
}

/** A stand-in with chalk's shape whose every style returns the text unchanged. */
function plainChalk(): ChalkInstance {
  const identity: unknown = new Proxy((...text: unknown[]) => text.join(' '), { get: () => identity });
  return identity as ChalkInstance;
}

const silentSpinner = (): Spinner => ({ text: '', succeed() {}, fail() {}, stop() {}, render() {} });

/**
 * ora divides by the terminal's width to count the lines it must clear: on a terminal
 * of 0 columns (some CI and container consoles report that) it loops forever, blocking
 * even SIGTERM. So spinners draw only while stderr is at least one column wide.
 */
const drawable = () => (process.stderr.columns ?? 0) > 0;

/** An ora spinner that stops drawing, for good, once the terminal is too narrow to draw on. */
function guardedSpinner(ora: typeof import('ora').default, initial: string): Spinner {
  const spinner = ora({ text: initial, stream: process.stderr }).start();
  let drawing = true;
  const stopDrawing = () => {
    if (!drawing) return;
    drawing = false;
    spinner.stop();
    process.stderr.off('resize', onResize);
  };
  const onResize = () => {
    if (!drawable()) stopDrawing();
  };
  process.stderr.on('resize', onResize);
  const settle = (text: string | undefined, mark: 'succeed' | 'fail') => {
    if (drawing && drawable()) {
      spinner[mark](text);
      stopDrawing();
    } else {
      stopDrawing();
      if (text) process.stderr.write(`${text}\n`);
    }
  };
  return {
    get text() {
      return spinner.text;
    },
    set text(value: string) {
      if (drawing && drawable()) spinner.text = value;
      else stopDrawing();
    },
    succeed: (text) => settle(text, 'succeed'),
    fail: (text) => settle(text, 'fail'),
    stop: stopDrawing,
    render() {
      // ora turned off (CI set, TERM=dumb) never spins, and does not clear before it
      // draws: its frames would run together on one line.
      if (drawing && drawable() && spinner.isSpinning) spinner.render();
    },
  };
}

/** `guarded ▕██████░░░░░░▏ 1,234/3,000  812/s`: how far a run is, and how fast it goes. */
export function progressLine(label: string, done: number, total: number, perSecond: number, width = 20): string {
  const filled = total > 0 ? Math.min(width, Math.floor((done / total) * width)) : 0;
  const n = (v: number) => Math.round(v).toLocaleString('en-US');
  return `${label} ▕${'█'.repeat(filled)}${'░'.repeat(width - filled)}▏ ${n(done)}/${n(total)}  ${n(perSecond)}/s`;
}

/**
 * A progress bar in a spinner's text, with the rate over about the last second. Redrawn
 * a few times a second at most, however often `update` is called; a silent spinner (no
 * terminal) makes it silent too.
 */
export function progressMeter(spinner: Spinner, label: string, total: number) {
  const started = Date.now();
  let samples: { at: number; done: number }[] = [{ at: started, done: 0 }];
  let shownAt = 0;
  return {
    update(done: number, suffix = '') {
      const now = Date.now();
      if (now - shownAt < 200 && done < total) return;
      shownAt = now;
      samples.push({ at: now, done });
      // The rate since the last sample at least a second old.
      const recent = samples.findIndex((s) => now - s.at < 1000);
      samples = samples.slice(Math.max(0, recent - 1));
      const oldest = samples[0];
      const perSecond = now > oldest.at ? ((done - oldest.done) * 1000) / (now - oldest.at) : 0;
      spinner.text = progressLine(label, done, total, perSecond) + suffix;
      // Drawn now: a run shorter than the spinner's tick still shows how far it got.
      spinner.render();
    },
  };
}

export async function createOutput(flags: { json?: boolean; verbose?: boolean; quiet?: boolean }): Promise<Output> {
  const json = Boolean(flags.json);
  const color = !json && !colourRefused() && Boolean(process.stdout.isTTY);
  const interactive = !json && !flags.quiet && Boolean(process.stderr.isTTY) && drawable();
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
      if (!json) {
        human();
        return Promise.resolve();
      }
      // Never one string: a document over V8's longest string (about 512 MiB) would fail
      // to print after the command had committed its work.
      const writing = writeJsonDocument(process.stdout, value);
      finishBeforeExit(writing);
      return writing;
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
      return ora ? guardedSpinner(ora, text) : silentSpinner();
    },
  };
}
