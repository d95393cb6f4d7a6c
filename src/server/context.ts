/**
 * What the app is built from and what every route plugin is handed: apart from app.ts,
 * which registers the routes, so that a route imports this and not the app.
 */
import type postgres from 'postgres';
import type { Db } from '../db/client.js';
import type { Strategy } from '../engine/orders.js';
import type { SplitPolicy } from '../engine/names.js';
import type { Settings } from '../engine/settings.js';
import type { StockFeed } from '../engine/stock-events.js';
import type { PaymentWindowPolicy } from '../engine/windows.js';
import type { RequireRole } from './auth.js';
import type { ServerMetrics } from './metrics.js';

/** What every route plugin is handed: the app's options, and its helpers. */
export interface ServerContext extends Omit<AppOptions, 'logStream'> {
  requireRole: RequireRole;
  metrics: ServerMetrics;
  /** True from SIGTERM on: /readyz says 503 at once, so that a load balancer stops sending. */
  draining(): boolean;
  /**
   * Take one of the --max-streams places for an event stream, with how to end it at
   * shutdown; returns the function that gives the place back when it ends, or undefined
   * when every place is taken.
   */
  trackStream(end: () => void): (() => void) | undefined;
}

export interface AppOptions {
  db: Db;
  sql: postgres.Sql;
  settings: Settings;
  /** PAYMENT_TIMEOUTS and PRIORITY_WINDOWS, as src/cli/config.ts read them. */
  paymentWindows: PaymentWindowPolicy;
  strategy: Strategy;
  /** SPLIT_POLICY: where an order's units may come from when no one location covers it (a request's `split` wins). */
  splitPolicy: SplitPolicy;
  /** Live stock changes (GET /stock/events). */
  feed: StockFeed;
  /** At most this many event streams at once (`serve --max-streams`). */
  maxStreams: number;
  /** Before any request that reads or writes: may the database be used (the embedded cluster's identity)? */
  checkDatabase?: () => Promise<void>;
  /** Where the JSON request log goes (stderr); false for none. */
  logStream?: NodeJS.WritableStream | false;
  /** Browser origins that may call the read routes (`serve --cors-origin`); none: no CORS at all. */
  corsOrigins?: string[];
  /** At most this many requests a minute per token (`serve --token-rate-limit`); undefined: no limit. */
  tokenRateLimit?: number;
  /** Per-SKU series in GET /metrics (STOCKCTL_METRICS_MAX_SKUS). */
  metricsMaxSkus: number;
}
