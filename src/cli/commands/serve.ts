import type { CommandContext } from '../run.js';
import { InvalidInputError } from '../../errors.js';
import { parseCount, parseDuration, quote } from '../../engine/input.js';
import type { Strategy } from '../../engine/orders.js';

interface Flags {
  host: string;
  port: string;
  sweepEvery?: string;
  strategy: Strategy;
  pool: string;
  grace: string;
  maxStreams: string;
  corsOrigin?: string[];
  tokenRateLimit?: string;
}

/** A browser origin as a browser sends it: scheme, host and an optional port, nothing more. */
function parseOrigin(raw: string): string {
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    url = undefined;
  }
  if (!url || !/^https?:$/.test(url.protocol) || url.origin !== raw) {
    throw new InvalidInputError(`Invalid --cors-origin ${quote(raw)}: give an origin as a browser sends it, like https://shop.example.com or http://localhost:3000 (no path, no trailing slash).`);
  }
  return raw;
}

function parsePort(raw: string): number {
  if (!/^\d{1,5}$/.test(raw) || Number(raw) > 65535) throw new InvalidInputError(`Invalid --port ${quote(raw)}: use 0 to 65535 (0: any free port).`);
  return Number(raw);
}

function parseHost(raw: string): string {
  if (!/^[A-Za-z0-9.:\-[\]]{1,253}$/.test(raw)) throw new InvalidInputError(`Invalid --host ${quote(raw)}: use an address such as 127.0.0.1, 0.0.0.0 or ::1.`);
  return raw.replace(/^\[(.*)\]$/, '$1');
}

/**
 * `stockctl serve`. It owns its shutdown: SIGTERM and SIGINT drain the server and exit 0
 * (the server's contract), where other commands exit 130 / 143, so the runner's handlers go.
 */
export default async function serveCommand(ctx: CommandContext, flags: Flags) {
  const options = {
    host: parseHost(flags.host),
    port: parsePort(flags.port),
    strategy: flags.strategy,
    pool: parseCount(flags.pool, '--pool', 500),
    sweepEveryMs: flags.sweepEvery === undefined ? undefined : parseDuration(flags.sweepEvery, '--sweep-every') * 1000,
    graceMs: parseDuration(flags.grace, '--grace') * 1000,
    maxStreams: parseCount(flags.maxStreams, '--max-streams', 100_000),
    corsOrigins: (flags.corsOrigin ?? []).map(parseOrigin),
    tokenRateLimit: flags.tokenRateLimit === undefined ? undefined : parseCount(flags.tokenRateLimit, '--token-rate-limit', 1_000_000),
  };
  process.removeAllListeners('SIGINT');
  process.removeAllListeners('SIGTERM');
  const stop = new AbortController();
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (++signals > 1) {
      process.stderr.write(`${signal} again: leaving without draining.\n`);
      process.exit(1);
    }
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const database = await ctx.openDb({ application: 'stockctl-serve', max: options.pool, watchIdentity: true });
  const { serve } = await import('../../server/serve.js');
  await serve({
    database,
    settings: ctx.config.settings,
    paymentWindows: ctx.config.paymentWindows,
    actor: ctx.config.actor,
    listenUrl: ctx.config.listenUrl,
    metricsMaxSkus: ctx.config.metricsMaxSkus,
    splitPolicy: ctx.config.splitPolicy,
    stop: stop.signal,
    ...options,
    onListening: (address) => {
      // The one line on stdout: where to find the server (with --port 0, which port it got).
      if (ctx.out.json) ctx.out.line(JSON.stringify({ listening: address.url, host: address.host, port: address.port }));
      else ctx.out.line(`Listening on ${address.url} (strategy ${options.strategy}; Ctrl-C or SIGTERM stops it gracefully)`);
    },
  });
  return 0;
}
