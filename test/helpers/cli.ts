/**
 * Running bin/stockctl as a user's script meets it: a separate process, no terminal
 * (stdin, stdout and stderr are pipes), a clean environment, a working directory that
 * is not the repository (cron's is $HOME), and stdout, stderr and the exit code kept apart.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = path.join(REPO_ROOT, 'bin/stockctl');
const BARRIER = new URL('./start-barrier.mjs', import.meta.url).href;

/** Variables that change stockctl's behaviour; a test that wants one passes it in `env`. */
const SCRUBBED_ENV = [
  'DATABASE_URL',
  'NO_COLOR',
  'FORCE_COLOR',
  'STOCKCTL_ACTOR',
  'STOCKCTL_DEBUG',
  'STOCKCTL_EMBEDDED_PORT',
  'STOCKCTL_STATEMENT_TIMEOUT',
  'STOCKCTL_PREPARE',
  'PAYMENT_TIMEOUT_MINUTES',
  'PAYMENT_TIMEOUTS',
  'PRIORITY_WINDOWS',
  'CLEANUP_INTERVAL_MINUTES',
  'MAX_STOCK_RETRY_ATTEMPTS',
  'STOCK_RETRY_BACKOFF_MS',
  'SPLIT_POLICY',
];

export interface CliOptions {
  /** DATABASE_URL for the process; null runs it without one (the embedded server). */
  databaseUrl: string | null;
  /** Extra environment; a value of undefined removes the variable. */
  env?: Record<string, string | undefined>;
  /** Written to stdin, which is then closed (stdin is always a closed pipe, never a TTY). */
  input?: string;
  /** The process is killed (and the result marked timedOut) after this long. Default 30 s. */
  timeoutMs?: number;
}

export interface CliResult {
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall-clock time from spawn to exit. */
  ms: number;
  timedOut: boolean;
}

export interface CliJsonResult<T = unknown> extends CliResult {
  json: T;
}

let scratchCwd: string | undefined;
function workingDirectory(): string {
  scratchCwd ??= fs.mkdtempSync(path.join(os.tmpdir(), 'stockctl-cli-cwd-'));
  return scratchCwd;
}

function environment(opts: CliOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of SCRUBBED_ENV) delete env[name];
  if (opts.databaseUrl !== null) env.DATABASE_URL = opts.databaseUrl;
  for (const [name, value] of Object.entries(opts.env ?? {})) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  return env;
}

export interface CliProcess {
  child: ChildProcess;
  /** Resolves when the process has exited (never rejects). */
  result: Promise<CliResult>;
  /** Resolves once stdout matches, rejects if the process exits first. */
  waitForStdout(pattern: RegExp): Promise<void>;
}

/** Start bin/stockctl and return at once; for signals and for racing processes. */
export function startCli(args: string[], opts: CliOptions, { barrier = false } = {}): CliProcess {
  const started = Date.now();
  const nodeArgs = barrier ? [`--import=${BARRIER}`] : [];
  const child = spawn(process.execPath, [...nodeArgs, BIN, ...args], {
    cwd: workingDirectory(),
    env: environment(opts),
    stdio: barrier ? ['pipe', 'pipe', 'pipe', 'ipc'] : ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const watchers = new Set<() => void>();
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    for (const check of watchers) check();
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  child.stdin!.on('error', () => {}); // the process may exit before reading its input
  child.stdin!.end(opts.input ?? '');

  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, opts.timeoutMs ?? 30_000);

  const result = new Promise<CliResult>((resolve) => {
    child.on('error', (err) => {
      stderr += `\n[spawn error] ${err.message}`;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      for (const check of watchers) check();
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started, timedOut });
    });
  });

  let exited = false;
  void result.then(() => {
    exited = true;
  });
  const waitForStdout = (pattern: RegExp) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (pattern.test(stdout)) {
          watchers.delete(check);
          resolve();
        } else if (exited) {
          watchers.delete(check);
          reject(new Error(`stockctl ${args.join(' ')} exited before printing ${pattern}\nstdout: ${stdout}\nstderr: ${stderr}`));
        }
      };
      watchers.add(check);
      void result.then(check);
      check();
    });

  return { child, result, waitForStdout };
}

export function runCli(args: string[], opts: CliOptions): Promise<CliResult> {
  return startCli(args, opts).result;
}

/** Run with `--json` appended and parse stdout, which must be exactly one JSON document. */
export async function runCliJson<T = unknown>(args: string[], opts: CliOptions): Promise<CliJsonResult<T>> {
  const res = await runCli([...args, '--json'], opts);
  let json: T;
  try {
    json = JSON.parse(res.stdout) as T;
  } catch {
    throw new Error(
      `stockctl ${args.join(' ')} --json did not print one JSON document (exit ${res.code}).\nstdout: ${res.stdout}\nstderr: ${res.stderr}`,
    );
  }
  return { ...res, json };
}

/**
 * Start several stockctl processes so that they really race: each one is held at a
 * barrier (test/helpers/start-barrier.mjs, loaded with --import before stockctl itself)
 * until all of them have booted, then all are released at once. With `prepare`, it runs
 * once they have all booted (it may make what they name), and they are released at the
 * moment it returns (epoch ms; at once if that has passed).
 */
export async function runCliTogether(runs: { args: string[]; opts: CliOptions }[], prepare?: () => Promise<number>): Promise<CliResult[]> {
  const procs = runs.map(({ args, opts }) => startCli(args, opts, { barrier: true }));
  const ready = procs.map(
    ({ child, result }) =>
      new Promise<void>((resolve, reject) => {
        child.once('message', (message) => (message === 'ready' ? resolve() : reject(new Error(`unexpected ${message}`))));
        void result.then((r) => reject(new Error(`a racing stockctl exited before the start (exit ${r.code}): ${r.stderr}`)));
      }),
  );
  try {
    await Promise.all(ready);
    if (prepare) {
      const at = await prepare();
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, at - Date.now())));
    }
  } catch (err) {
    for (const { child } of procs) child.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.result));
    throw err;
  }
  for (const { child } of procs) child.send('go');
  return Promise.all(procs.map((p) => p.result));
}

// eslint-disable-next-line no-control-regex
export const ANSI_ESCAPE = /\x1b\[[0-9;?]*[A-Za-z]/;
