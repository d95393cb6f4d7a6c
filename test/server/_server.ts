/**
 * `stockctl serve` as a shop's backend meets it: a spawned bin/stockctl on a free port
 * (--port 0, the port read from its one stdout line), talked to with Node's fetch.
 */
import { startCli, type CliProcess, type CliResult } from '../helpers/cli.js';
import { checkerFor, expectConforms } from './contract.js';

export interface RunningServer {
  url: string;
  proc: CliProcess;
  /** SIGTERM, then the exit. */
  stop(signal?: NodeJS.Signals): Promise<CliResult>;
}

/** `databaseUrl` null: the embedded server of the STOCKCTL_HOME in `env`. */
export async function startServer(databaseUrl: string | null, args: string[] = [], env: Record<string, string> = {}): Promise<RunningServer> {
  const proc = startCli(['serve', '--port', '0', ...args], { databaseUrl, timeoutMs: 120_000, env: { STOCKCTL_ACTOR: 'server-host', ...env } });
  // Attached at once, before any output can arrive.
  let stdout = '';
  proc.child.stdout!.on('data', (chunk: string) => (stdout += chunk));
  await proc.waitForStdout(/Listening on http:\/\/\S+/);
  const url = /Listening on (http:\/\/\S+)/.exec(stdout)![1];
  // The document every answer of api() is held to (test/server/contract.ts), read once.
  await checkerFor(url);
  return {
    url,
    proc,
    async stop(signal = 'SIGTERM') {
      proc.child.kill(signal);
      return proc.result;
    },
  };
}

export interface ApiResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

export async function api<T = any>(
  server: { url: string },
  method: string,
  path: string,
  opts: { token?: string; body?: unknown; raw?: string; headers?: Record<string, string>; unchecked?: boolean } = {},
): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let body: string | undefined;
  if (opts.raw !== undefined) {
    body = opts.raw;
    headers['content-type'] ??= 'application/json';
  } else if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(`${server.url}${path}`, { method, headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  if (/json/.test(res.headers.get('content-type') ?? '')) parsed = JSON.parse(text);
  // Every answer a server test sees is held to the server's own OpenAPI document.
  if (!opts.unchecked) await expectConforms(server.url, method, path, { status: res.status, headers: res.headers, text });
  return { status: res.status, headers: res.headers, body: parsed as T, text };
}
