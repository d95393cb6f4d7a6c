/**
 * Running the server: listen, run the optional in-process sweep, and on SIGTERM or
 * SIGINT stop accepting, let in-flight requests finish (up to the grace period), end
 * the event streams, and return so that the caller closes the pool.
 */
import type { Database } from '../db/client.js';
import type { Strategy } from '../engine/orders.js';
import type { SplitPolicy } from '../engine/names.js';
import type { Settings } from '../engine/settings.js';
import type { PaymentWindowPolicy } from '../engine/windows.js';
import { expireDueOrders } from '../engine/sweep.js';
import { publicMessage } from '../db/errors.js';
import { DatabaseUnavailableError, InvalidInputError } from '../errors.js';
import { buildApp } from './app.js';
import { openStockFeed, unavailableFeed, type StockFeed } from '../engine/stock-events.js';
import { setLongTimeout } from '../engine/timers.js';

export interface ServeOptions {
  database: Database;
  settings: Settings;
  paymentWindows: PaymentWindowPolicy;
  host: string;
  port: number;
  strategy: Strategy;
  /** Run the sweep this often, in ms (undefined: never; cron does it). */
  sweepEveryMs?: number;
  graceMs: number;
  /** At most this many event streams at once (GET /stock/events). */
  maxStreams: number;
  /** STOCKCTL_LISTEN_URL: where live stock gets its session, when the pool goes through a pooler. */
  listenUrl?: string;
  /** Browser origins that may call the read routes (--cors-origin). */
  corsOrigins?: string[];
  /** Requests a minute per token (--token-rate-limit); undefined: unlimited. */
  tokenRateLimit?: number;
  /** Per-SKU series in GET /metrics (STOCKCTL_METRICS_MAX_SKUS). */
  metricsMaxSkus: number;
  /** SPLIT_POLICY: POST /orders' split when the request names none. */
  splitPolicy: SplitPolicy;
  actor: string;
  /** Resolves (or aborts) when the server should stop. */
  stop: AbortSignal;
  onListening(address: { url: string; host: string; port: number }): void;
}

export async function serve(opts: ServeOptions): Promise<void> {
  const { database } = opts;
  let feedLog: { warn(details: object, message: string): void } | undefined;
  let feedLost = () => {};
  const { feed, off: liveStockOff } = stockFeed(opts, (reason) => {
    feedLost();
    feedLog?.warn({ reason }, 'live stock lost its database session: its event streams ended, and reconnect');
  });
  const stockApp = await buildApp({
    db: database.db,
    sql: database.sql,
    settings: opts.settings,
    paymentWindows: opts.paymentWindows,
    strategy: opts.strategy,
    feed,
    maxStreams: opts.maxStreams,
    checkDatabase: database.identity?.check,
    corsOrigins: opts.corsOrigins,
    tokenRateLimit: opts.tokenRateLimit,
    metricsMaxSkus: opts.metricsMaxSkus,
    splitPolicy: opts.splitPolicy,
  });
  const { app } = stockApp;
  const log = app.log;
  feedLog = log;
  feedLost = () => stockApp.metrics.listenReconnected();
  if (liveStockOff) log.warn({ reason: liveStockOff }, 'live stock is off: GET /stock/events answers 503');
  database.identity?.onMismatch((reason) => log.error({ reason }, 'refusing requests: the database is another cluster'));

  let cancelSweep = () => {};
  let sweeping: Promise<void> = Promise.resolve();
  const scheduleSweep = () => {
    if (!opts.sweepEveryMs || opts.stop.aborted) return;
    cancelSweep = setLongTimeout(() => {
      sweeping = expireDueOrders(database.db, { actor: opts.actor, signal: opts.stop })
        .then((r) => {
          if (r.expired_orders > 0) log.info({ sweep: r }, 'sweep expired orders');
        })
        .catch((err) => log.error({ err: { message: publicMessage(err) } }, 'sweep failed'))
        .finally(scheduleSweep);
    }, opts.sweepEveryMs);
  };

  try {
    await app.listen({ host: opts.host, port: opts.port });
  } catch (err) {
    await app.close().catch(() => {});
    await feed.close();
    throw listenError(err, opts.host, opts.port);
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  const shownHost = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  opts.onListening({ url: `http://${shownHost}:${port}`, host: opts.host, port });
  log.info({ host: opts.host, port, strategy: opts.strategy, sweep_every_ms: opts.sweepEveryMs ?? null }, 'listening');
  scheduleSweep();

  await new Promise<void>((resolve) => {
    if (opts.stop.aborted) resolve();
    else opts.stop.addEventListener('abort', () => resolve(), { once: true });
  });

  // Not ready from this moment: /readyz and every new request answer 503 (Retry-After), and
  // every response closes its connection. The listener stays open while the requests in
  // flight finish, so that a load balancer sees the drain (a 503 from /readyz) rather than
  // a refused connection; then it closes.
  stockApp.startDraining();
  log.info({ grace_ms: opts.graceMs }, 'stopping: new requests get 503, finishing in-flight requests');
  cancelSweep();
  // Streams never finish by themselves: end them, then wait for the requests in flight.
  stockApp.endStreams();
  let graceOver = () => {};
  const graceEnded = new Promise<void>((resolve) => (graceOver = resolve));
  const cancelGrace = setLongTimeout(() => {
    log.warn('grace period over: closing the remaining connections');
    app.server.closeAllConnections();
    graceOver();
  }, opts.graceMs);
  await Promise.race([stockApp.settled(), graceEnded]);
  // A keep-alive connection that finishes its request after close() began (a 503 to a
  // client still sending) would otherwise hold the close open until its idle timeout.
  const idleSweep = setInterval(() => app.server.closeIdleConnections(), 50);
  try {
    await app.close();
  } finally {
    cancelGrace();
    clearInterval(idleSweep);
  }
  await sweeping;
  await feed.close();
  log.info('stopped');
}

/**
 * Live stock listens on a session of its own, opened with the first event stream: the
 * database's own unless a pooler in transaction mode stands in between, which cannot keep
 * a LISTEN (STOCKCTL_LISTEN_URL then names PostgreSQL itself, or a pool in session mode).
 */
function stockFeed(opts: ServeOptions, onLost: (reason: string) => void): { feed: StockFeed; off?: string } {
  const url = opts.listenUrl ?? (opts.database.pooled ? undefined : opts.database.url);
  if (!url) {
    const off =
      'Live stock needs a PostgreSQL session of its own, which a pooler in transaction mode cannot keep; set STOCKCTL_LISTEN_URL to PostgreSQL itself (or to a pool in session mode) and restart serve.';
    return { feed: unavailableFeed(new DatabaseUnavailableError(off, 'listen_needs_session')), off };
  }
  return { feed: openStockFeed({ url, application: 'stockctl-serve-listen', onLost }) };
}

/** Why the server could not listen, in a sentence (exit 2); anything else as it is. */
function listenError(err: unknown, host: string, port: number): unknown {
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  switch ((err as NodeJS.ErrnoException | null)?.code) {
    case 'EADDRINUSE':
      return new InvalidInputError(`Cannot listen on ${where}: the port is in use (another stockctl serve?); stop that process or choose another --port.`, 'port_in_use');
    case 'EACCES':
      return new InvalidInputError(`Cannot listen on ${where}: not allowed (ports below 1024 need privileges); choose another --port.`, 'port_not_allowed');
    case 'ENOTFOUND':
      return new InvalidInputError(`Cannot listen on ${where}: the name ${host} cannot be resolved; use --host 127.0.0.1 or one of this machine's addresses.`, 'host_not_available');
    case 'EADDRNOTAVAIL':
      return new InvalidInputError(`Cannot listen on ${where}: ${host} is not an address of this machine; use --host 127.0.0.1 or one of its addresses.`, 'host_not_available');
    default:
      return err;
  }
}
