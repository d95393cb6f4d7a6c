/**
 * Running PostgreSQL's tools (initdb, pg_ctl, postgres --single): as which user (as root,
 * PostgreSQL must run as an unprivileged one), to completion, and what their output says.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { DatabaseUnavailableError } from '../../errors.js';
import { isRoot } from './layout.js';

export interface RunAs {
  uid: number;
  gid: number;
}

export interface RunResult {
  code: number;
  output: string;
}

/** As root, run PostgreSQL as whoever owns the data directory, or as a service user. */
export async function runAsFor(dataDir: string): Promise<RunAs | undefined> {
  if (!isRoot()) return undefined;
  for (const dir of [dataDir, path.dirname(dataDir)]) {
    try {
      const st = await fs.stat(dir);
      if (st.uid !== 0) return { uid: st.uid, gid: st.gid };
    } catch {
      // not created yet
    }
  }
  let passwd = '';
  try {
    passwd = await fs.readFile('/etc/passwd', 'utf8');
  } catch {
    // no passwd file: fall through to the error
  }
  for (const name of ['postgres', 'nobody']) {
    const entry = passwd.split('\n').find((line) => line.startsWith(`${name}:`));
    const [, , uid, gid] = entry?.split(':') ?? [];
    if (uid && gid && Number(uid) !== 0) return { uid: Number(uid), gid: Number(gid) };
  }
  throw new DatabaseUnavailableError(
    'PostgreSQL cannot run as root and there is neither a "postgres" nor a "nobody" user to run the embedded server as; create one or set DATABASE_URL.',
  );
}

/**
 * Run a PostgreSQL tool to completion, `input` on its stdin. Output is piped and drained;
 * that is safe for `pg_ctl start` because `-l` sends the daemon's output to the log file,
 * so the detached server does not keep our pipes (and this process) alive.
 */
export function run(cmd: string, args: string[], runAs: RunAs | undefined, timeoutMs: number, input?: string): Promise<RunResult> {
  return new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C', LANG: 'C' };
    for (const key of Object.keys(env)) if (key.startsWith('PG')) delete env[key];
    let output = '';
    const child = spawn(cmd, args, {
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env,
      // chdir happens before the uid switch; a readable cwd keeps the tools quiet.
      cwd: runAs ? '/' : undefined,
      ...(runAs ?? {}),
    });
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-8192);
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    if (input !== undefined) {
      child.stdin!.on('error', () => {}); // a tool that dies early reports it through its exit code
      child.stdin!.end(input);
    }
    const timer = setTimeout(() => {
      output += `\n${path.basename(cmd)} timed out after ${Math.round(timeoutMs / 1000)} s`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: -1, output: `${output}\n${path.basename(cmd)}: ${err.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, output: signal && !output ? `killed by ${signal}` : output });
    });
  });
}

/** The line of a tool's output that says what went wrong. */
export function summary(output: string): string {
  const lines = output
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const line = lines.find((l) => /error|fatal|could not|cannot|timed out/i.test(l)) ?? lines[0] ?? 'no output';
  return line.replace(/\.$/, '');
}
