/**
 * The load generator: fires concurrent buyers at real PostgreSQL through the engine's
 * own reserveOrder, then proves what happened (no oversell, no false rejection, every
 * verify invariant) for the SKUs it created, and only those.
 */
import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import * as hdr from 'hdr-histogram-js';
import type { Database } from '../db/client.js';
import { execute, rows, transaction } from '../db/query.js';
import { InsufficientStockError } from '../errors.js';
import { addProduct } from '../engine/catalogue.js';
import { cancelOrder, payOrder, reserveOrder, StockConflictError, type ReserveInput, type ReserveResult, type Strategy } from '../engine/orders.js';
import { expireOrders, TIMEOUT_NOTE } from '../engine/release.js';
import { withConflictRetry } from '../engine/retry.js';
import { RefusedError } from '../errors.js';
import type { Settings } from '../engine/settings.js';
import { findViolations, type Violation } from '../engine/verify.js';
import { publicMessage } from '../db/errors.js';
import { STOCKCTL_VERSION } from '../version.js';
import type { LatencyBucket, Timeline } from './html-report.js';
import { LOADTEST_SKU_PREFIX } from './skus.js';
import {
  CHAOS_MONKEY_APPLICATION,
  checkChaosRun,
  faultCode,
  newChaosLedger,
  unleashChaos,
  workersApplication,
  type ChaosLedger,
  type FaultFigures,
  type Operation,
} from './chaos.js';

export interface LoadtestConfig {
  buyers: number;
  stock: number;
  quantity: number;
  concurrency: number;
  skus: number;
  strategies: Strategy[];
  actor: string;
  settings: Settings;
  signal?: AbortSignal;
  /** Mix in pays, cancels and a concurrent sweep, with 1-second payment windows. */
  mix?: boolean;
  /** `faults`: with --chaos, the kills made so far in this strategy. */
  onProgress?: (p: { strategy: string; done: number; total: number; faults?: number }) => void;
  /** Where buyers reserve: the engine itself (default), or a server over HTTP (--url). */
  reserve?: (input: ReserveInput) => Promise<ReserveResult>;
  /** --url: the server the buyers were fired at. */
  url?: string;
  /** --chaos: terminate the run's own backends at random while its buyers run. */
  chaos?: ChaosConfig;
}

export interface ChaosConfig {
  /** Mean time between two kills; each gap is drawn between half and one and a half of it. */
  intervalMs: number;
  /**
   * A pool of its own, closed by the run: the workers' (buyers, pays, cancels, the sweep,
   * under the run's own application_name) and the monkey's. The pool the run was given
   * stays the checker's, which is never killed.
   */
  openPool(application: string, max: number): Promise<Database>;
  /** --url: the server's application_name; its backends on this database are killed too. */
  serverApplication?: string;
}

export interface LatencySummary {
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export interface StrategyReport {
  strategy: Strategy;
  buyers: number;
  successes: number;
  /** Refused because stock really ran out. */
  rejections: number;
  /** Refused although stock remained (optimistic retries ran out). */
  false_rejections: number;
  errors: number;
  retries: number;
  units_reserved: number;
  expected_successes: number | null;
  duration_ms: number;
  throughput_rps: number;
  /** Throughput as a fraction of the bare guarded UPDATE on the same server. */
  ratio_to_bare_update: number | null;
  latency_ms: LatencySummary;
  /** Completions per time slice, and the latency histogram: what `--report` draws. */
  timeline?: Timeline;
  histogram?: LatencyBucket[];
  violations: Violation[];
  first_error?: string;
  /**
   * With --mix: the fate of every winner, from the orders' final state, so that
   * successes == paid + cancelled + expired_by_sweep + still_pending (with --chaos, plus
   * the reserves that failed by a fault yet committed: faults.committed_unacknowledged).
   */
  mix?: MixFates;
  /** With --chaos: backends terminated while this strategy ran. */
  faults_injected?: number;
  /** With --chaos: operations (reserves, pays, cancels, sweeps) that failed with a killed connection. */
  failed_by_faults?: number;
  faults?: FaultFigures;
}

export interface MixFates {
  paid: number;
  cancelled: number;
  expired_by_sweep: number;
  /** Still pending when the run ended (only when it was interrupted, normally 0). */
  still_pending: number;
  units_sold: number;
  /** Pays refused because the window had passed; those orders then expired (counted there). */
  late_pays_refused: number;
}

/**
 * The database's own limit: the same guarded UPDATE per buyer on a scratch row. It sells
 * nothing, so it has no winners, rejections or checks: only its rate and latency count.
 */
export interface BaselineReport {
  strategy: 'bare_update';
  /** Statements fired (one per buyer). */
  buyers: number;
  errors: number;
  duration_ms: number;
  throughput_rps: number;
  latency_ms: LatencySummary;
  timeline?: Timeline;
  histogram?: LatencyBucket[];
  first_error?: string;
}

export interface LoadtestReport {
  run_id: string;
  /** ISO 8601, UTC. */
  started_at: string;
  finished_at: string;
  stockctl_version: string;
  server_version: string;
  config: {
    buyers: number;
    stock: number;
    quantity: number;
    /** As asked (--concurrency). */
    concurrency: number;
    /** Actually used: no more connections than buyers. */
    connections: number;
    skus: number;
    strategies: Strategy[];
    mix: boolean;
    /** --url: buyers went through this server's POST /orders. */
    url?: string;
    max_retries: number;
    retry_backoff_ms: number;
    /**
     * --chaos: the mean time between kills, and whose backends were killed: `workers`, the
     * run's own pool (application_name `stockctl-loadtest-<run_id>`), and with --url `server`
     * (`stockctl-serve`).
     */
    chaos?: { interval_ms: number; targets: ('workers' | 'server')[] };
  };
  baseline: BaselineReport;
  strategies: StrategyReport[];
  /** With --chaos: totals over the strategies. */
  faults_injected?: number;
  failed_by_faults?: number;
  /** False when a check failed, and always when the run was interrupted: no verdict then. */
  ok: boolean;
  interrupted: boolean;
}

/** Percentiles of the latencies (µs), through an HDR histogram. */
function summarise(tookUs: number[]): LatencySummary {
  const h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });
  for (const us of tookUs) h.recordValue(us);
  const ms = (us: number) => Math.round(us / 10) / 100;
  return {
    p50: ms(h.getValueAtPercentile(50)),
    p95: ms(h.getValueAtPercentile(95)),
    p99: ms(h.getValueAtPercentile(99)),
    max: ms(h.maxValue),
  };
}

/**
 * Run `count` jobs through `concurrency` workers and describe their latencies (the
 * percentiles, a histogram) and when they ended (a timeline). A job that does more than the measured step (a pay after the reserve)
 * calls `stopClock` when that step is done.
 */
async function fire(
  count: number,
  concurrency: number,
  job: (i: number, stopClock: () => void) => Promise<void>,
  signal?: AbortSignal,
  onDone?: (n: number) => void,
) {
  let next = 0;
  let done = 0;
  const started = process.hrtime.bigint();
  /** When each job's measured step ended (ms from the start), and how long it took (µs). */
  const endedAt: number[] = [];
  const tookUs: number[] = [];
  const worker = async () => {
    while (next < count && !signal?.aborted) {
      const i = next++;
      const t0 = process.hrtime.bigint();
      let t1: bigint | undefined;
      await job(i, () => {
        t1 ??= process.hrtime.bigint();
      });
      t1 ??= process.hrtime.bigint();
      tookUs.push(Math.max(1, Number((t1 - t0) / 1000n)));
      endedAt.push(Number(t1 - started) / 1e6);
      done++;
      onDone?.(done);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
  return { durationMs, done, latency_ms: summarise(tookUs), timeline: timelineOf(endedAt, durationMs), histogram: bucketsOf(tookUs) };
}

/** Completions per slice of the run (about 50 slices, at least 50 ms each). */
function timelineOf(endedAt: number[], durationMs: number): Timeline {
  const slice = Math.max(50, Math.ceil(durationMs / 50));
  const counts = new Array<number>(Math.max(1, Math.ceil(durationMs / slice))).fill(0);
  for (const t of endedAt) counts[Math.min(counts.length - 1, Math.floor(t / slice))]++;
  return { slice_ms: slice, counts };
}

/** The latency histogram in 24 log-spaced buckets, from the fastest call to the slowest. */
function bucketsOf(tookUs: number[]): LatencyBucket[] {
  if (tookUs.length === 0) return [];
  const low = tookUs.reduce((a, b) => Math.min(a, b));
  const high = Math.max(low + 1, tookUs.reduce((a, b) => Math.max(a, b)));
  const step = Math.pow(high / low, 1 / 24);
  const counts = new Array<number>(24).fill(0);
  for (const us of tookUs) counts[Math.min(23, Math.floor(Math.log(us / low) / Math.log(step)))]++;
  return counts.map((count, i) => ({ le_ms: Math.round((low * Math.pow(step, i + 1)) / 10) / 100, count }));
}

const skuFor = (prefix: string, strategy: string, i: number) => `${prefix}${strategy}-${i}`;

async function createSkus(database: Database, prefix: string, strategy: string, cfg: LoadtestConfig) {
  for (let i = 0; i < cfg.skus; i++) {
    await addProduct(database.db, { sku: skuFor(prefix, strategy, i), name: `loadtest ${strategy} ${i}`, price: 100, stock: cfg.stock, actor: cfg.actor });
  }
}

/** Connections a run uses: --concurrency, but no more than there are buyers. */
export const connectionsFor = (cfg: Pick<LoadtestConfig, 'concurrency' | 'buyers'>) => Math.min(cfg.concurrency, cfg.buyers);

/** How long a run of `done` calls took, and its rate (calls per second). */
const pace = (done: number, durationMs: number) => ({
  duration_ms: Math.round(durationMs),
  throughput_rps: Math.round((done / durationMs) * 1000),
});

const scratchTableFor = (runId: string) => `loadtest_bare_${runId}`;

/**
 * The database's own limit: a bare guarded UPDATE per buyer, same concurrency, the same
 * spread over SKUs, prepared, autocommit, no order rows. It runs on a scratch table of its own, never on a stock row: a run killed in the
 * middle must not leave a counter that the ledger does not explain.
 */
async function measureBareUpdate(database: Database, runId: string, cfg: LoadtestConfig): Promise<BaselineReport> {
  const table = database.sql(scratchTableFor(runId));
  await database.sql`CREATE TABLE ${table} (
                       sku text PRIMARY KEY, stock_quantity integer NOT NULL, reserved_stock integer NOT NULL DEFAULT 0,
                       CHECK (reserved_stock >= 0 AND reserved_stock <= stock_quantity))`;
  try {
    // One row per SKU of the run, each buyer on the row its reserve would hit: the limit of
    // the same spread, not of one hot row.
    await database.sql`INSERT INTO ${table} (sku, stock_quantity)
                       SELECT 'bare-' || i, ${Math.ceil(cfg.buyers / cfg.skus) * cfg.quantity}::int FROM generate_series(0, ${cfg.skus - 1}::int) AS i`;
    let errors = 0;
    let firstError: string | undefined;
    const { durationMs, done, latency_ms, timeline, histogram } = await fire(
      cfg.buyers,
      connectionsFor(cfg),
      async (i) => {
        try {
          await database.sql`UPDATE ${table} SET reserved_stock = reserved_stock + ${cfg.quantity}
                              WHERE sku = ${`bare-${i % cfg.skus}`} AND stock_quantity - reserved_stock >= ${cfg.quantity}`;
        } catch (err) {
          errors++;
          firstError ??= publicMessage(err);
        }
      },
      cfg.signal,
    );
    return {
      strategy: 'bare_update',
      buyers: done,
      errors,
      ...pace(done, durationMs),
      latency_ms,
      timeline,
      histogram,
      ...(firstError ? { first_error: firstError } : {}),
    };
  } finally {
    await database.sql`DROP TABLE IF EXISTS ${table}`;
  }
}

/** The fate of every order under `like`, from its final state. */
async function orderFates(database: Database, like: string) {
  const [f] = await rows<{ paid: number; cancelled: number; expired_by_sweep: number; still_pending: number }>(
    database.db,
    sql`SELECT count(*) FILTER (WHERE status = 'paid')::int AS paid,
               count(*) FILTER (WHERE status = 'cancelled' AND cancel_reason IS DISTINCT FROM ${TIMEOUT_NOTE})::int AS cancelled,
               count(*) FILTER (WHERE status = 'cancelled' AND cancel_reason = ${TIMEOUT_NOTE})::int AS expired_by_sweep,
               count(*) FILTER (WHERE status = 'pending')::int AS still_pending
          FROM orders WHERE order_id IN (SELECT order_id FROM order_items WHERE sku LIKE ${like})`,
  );
  return f;
}

/**
 * The pools a run works on: the checker (set-up, polling, checks) and the workers (buyers,
 * pays, cancels, the sweep, the bare UPDATE). Without --chaos they are one pool; with it,
 * the workers have a pool of their own, the monkey one more, and only workers are killed.
 */
interface Pools {
  checker: Database;
  workers: Database;
  /** --chaos: the monkey's connection, and whose backends it kills (by application_name). */
  chaos?: { monkey: Database; targets: { workers: string; server?: string }; intervalMs: number };
}

async function runStrategy(pools: Pools, prefix: string, strategy: Strategy, cfg: LoadtestConfig): Promise<StrategyReport> {
  const { checker, workers } = pools;
  await createSkus(checker, prefix, strategy, cfg);
  const like = `${prefix}${strategy}-%`;
  // The database's clock, for "orders made since the strategy started" (with --chaos).
  const [{ since }] = await rows<{ since: string }>(checker.db, sql`SELECT now()::text AS since`);
  let successes = 0;
  let rejections = 0;
  let falseRejections = 0;
  let errors = 0;
  let retries = 0;
  let firstError: string | undefined;
  let unitsSold = 0;
  let latePaysRefused = 0;
  // With --chaos: what each buyer was told, so that the checks can tell an acknowledged
  // order (which must exist) from one whose connection was killed (which may or may not).
  const ledger: ChaosLedger | undefined = pools.chaos ? newChaosLedger() : undefined;
  const faultCodes: Record<string, number> = {};
  // Anything unexpected (a statement timeout, a dropped connection) is counted and
  // reported; it never ends the run, whose checks still run. With --chaos, an operation
  // whose connection was killed is a fault, counted apart (and not tried again).
  const unexpected = (err: unknown) => {
    errors++;
    firstError ??= publicMessage(err);
  };
  const failed = (operation: Operation, err: unknown) => {
    const code = ledger ? faultCode(err) : undefined;
    if (!ledger || code === undefined) return unexpected(err);
    ledger.failed[operation]++;
    faultCodes[code] = (faultCodes[code] ?? 0) + 1;
  };
  // With --mix, winners pay (half), cancel (a quarter) or walk away (a quarter) while a
  // sweeper expires the walk-aways: every path that moves units races every other.
  const afterWin = async (i: number, orderId: string) => {
    const fate = i % 4;
    if (fate <= 1) {
      await new Promise((resolve) => setTimeout(resolve, fate * 600));
      try {
        const paid = await payOrder(workers.db, { order: orderId, actor: cfg.actor });
        unitsSold += paid.units_sold;
        ledger?.paid.add(orderId);
      } catch (err) {
        if (err instanceof RefusedError) latePaysRefused++;
        else failed('pay', err);
      }
    } else if (fate === 2) {
      try {
        await cancelOrder(workers.db, { order: orderId, reason: 'loadtest', actor: cfg.actor });
        ledger?.cancelled.add(orderId);
      } catch (err) {
        if (err instanceof RefusedError) latePaysRefused++;
        else failed('cancel', err);
      }
    }
  };
  const skus = Array.from({ length: cfg.skus }, (_, i) => skuFor(prefix, strategy, i));
  let sweeping = cfg.mix;
  const sweeper = (async () => {
    while (sweeping && !cfg.signal?.aborted) {
      try {
        // The sweep's own expiry, scoped to this run's SKUs: real orders are never touched.
        await withConflictRetry(() => transaction(workers.db, (tx) => expireOrders(tx, { due: { limit: 50, skus } }, cfg.actor)));
      } catch (err) {
        failed('sweep', err);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  const monkey = pools.chaos ? unleashChaos(pools.chaos.monkey, pools.chaos.targets, pools.chaos.intervalMs) : undefined;
  // The monkey stops once the buyers (and their pays and cancels) are done, whatever happened.
  const { durationMs, done, latency_ms, timeline, histogram } = await fire(
    cfg.buyers,
    connectionsFor(cfg),
    async (i, stopClock) => {
      let orderId: string | undefined;
      const sku = skuFor(prefix, strategy, i % cfg.skus);
      try {
        const input = { lines: [{ sku, quantity: cfg.quantity }], strategy, ttlSeconds: cfg.mix ? 1 : 900, actor: cfg.actor };
        const order = cfg.reserve ? await cfg.reserve(input) : await reserveOrder(workers.db, input, cfg.settings);
        successes++;
        retries += order.retries;
        orderId = order.order_id;
        ledger?.reserved.add(orderId);
      } catch (err) {
        if (err instanceof StockConflictError) falseRejections++;
        else if (err instanceof InsufficientStockError) {
          rejections++;
          ledger?.refusedSkus.add(sku);
        } else failed('reserve', err);
      }
      // Latency is the reserve's alone, never the pay's deliberate delay.
      stopClock();
      if (cfg.mix && orderId) await afterWin(i, orderId);
    },
    cfg.signal,
    (n) => cfg.onProgress?.({ strategy, done: n, total: cfg.buyers, ...(monkey ? { faults: monkey.injected } : {}) }),
  ).finally(() => monkey?.stop());
  const tally = await monkey?.stop(); // stopped already: its final tally
  // Walk-aways hold a 1 s window: keep sweeping until they have all lapsed (a few
  // seconds at most), so that every winner has a fate when the run ends.
  const settleBy = Date.now() + 5000;
  const unsettled = () => orderFates(checker, like).then((f) => f.still_pending > 0, (err) => (unexpected(err), false));
  while (cfg.mix && !cfg.signal?.aborted && Date.now() < settleBy && (await unsettled())) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  sweeping = false;
  await sweeper;
  const violations = await findViolations(checker.db, `${prefix}${strategy}-`);
  const [units] = await rows<{ reserved: number; stock: number }>(
    checker.db,
    sql`SELECT coalesce(sum(reserved_stock), 0)::int AS reserved, coalesce(sum(stock_quantity), 0)::int AS stock
          FROM products WHERE sku LIKE ${like}`,
  );
  const capacity = cfg.stock * cfg.skus;
  const sold = capacity - units.stock;
  if (units.reserved + sold > capacity) {
    violations.push({ kind: 'oversell', message: `${units.reserved} units reserved and ${sold} sold out of ${capacity} in stock` });
  }
  // With --chaos, an operation failed by a fault may have committed: the counts below hold
  // up to those, and checkChaosRun checks them order by order instead.
  let faults: FaultFigures | undefined;
  let committedReserves = 0;
  if (ledger && tally) {
    const checked = await checkChaosRun(checker, { like, since, quantity: cfg.quantity, mix: Boolean(cfg.mix), ledger, units: { reserved: units.reserved, sold } });
    violations.push(...checked.violations);
    committedReserves = checked.committed_unacknowledged.reserves;
    faults = {
      killed_busy: tally.killed_busy,
      by_target: tally.by_target,
      by_operation: { ...ledger.failed },
      by_code: faultCodes,
      committed_unacknowledged: checked.committed_unacknowledged,
      chaos_errors: tally.errors,
      ...(tally.first_error ? { first_chaos_error: tally.first_error } : {}),
    };
    if (tally.errors > 0) violations.push({ kind: 'chaos_errors', message: `the chaos monkey failed ${tally.errors} time(s): ${tally.first_error}` });
  } else {
    if (sold !== unitsSold) {
      violations.push({ kind: 'units_mismatch', message: `${unitsSold} units paid for but on hand fell by ${sold}` });
    }
    if (!cfg.mix && units.reserved !== successes * cfg.quantity) {
      violations.push({ kind: 'units_mismatch', message: `${successes} successful orders but ${units.reserved} units reserved` });
    }
  }
  let mix: MixFates | undefined;
  if (cfg.mix) {
    const fates = await orderFates(checker, like);
    // With --chaos, a pay that failed by a fault may have committed: the units sold are the
    // shelf's (checkChaosRun proved them equal to the paid orders'), not the acknowledged pays'.
    mix = { ...fates, units_sold: ledger ? sold : unitsSold, late_pays_refused: latePaysRefused };
    const accounted = fates.paid + fates.cancelled + fates.expired_by_sweep + fates.still_pending;
    if (accounted !== successes + committedReserves) {
      const extra = ledger ? ` (and ${committedReserves} committed despite a fault)` : '';
      violations.push({ kind: 'fates_mismatch', message: `${successes} buyers won${extra} but ${accounted} orders have a fate` });
    }
  }
  // With one unit each, every buyer up to the stock must win. Optimistic locking is the
  // seed design's known weakness here: its false rejections are reported, not hidden.
  // (With --mix, cancelled and expired units go back on sale, so winners may exceed it;
  // with --chaos, buyers fail from faults: checkChaosRun asserts it per SKU instead.)
  const expected = !cfg.mix && !ledger && cfg.quantity === 1 && done === cfg.buyers ? Math.min(cfg.buyers, capacity) : null;
  if (expected !== null && strategy !== 'optimistic' && successes !== expected) {
    violations.push({ kind: 'false_rejection', message: `${successes} of ${cfg.buyers} buyers won, expected exactly ${expected}` });
  }
  if (errors > 0) violations.push({ kind: 'errors', message: `${errors} operation(s) failed unexpectedly: ${firstError}` });
  const failedByFaults = ledger ? Object.values(ledger.failed).reduce((a, b) => a + b, 0) : 0;
  return {
    strategy,
    buyers: done,
    successes,
    rejections,
    false_rejections: falseRejections,
    errors,
    retries,
    units_reserved: units.reserved,
    ...(mix ? { mix } : {}),
    expected_successes: expected,
    ...pace(done, durationMs),
    ratio_to_bare_update: null,
    latency_ms,
    timeline,
    histogram,
    violations,
    ...(firstError ? { first_error: firstError } : {}),
    ...(faults && tally ? { faults_injected: tally.faults_injected, failed_by_faults: failedByFaults, faults } : {}),
  };
}

/** Every run's SKUs start `loadtest-<run id>-` (LOADTEST_SKU_PREFIX), its scratch table is `loadtest_bare_<run id>`. */
const ANY_RUN = '[0-9a-f]{8}';
const runSkus = (runId: string) => `^${LOADTEST_SKU_PREFIX}${runId}-`;
const runTables = (runId: string) => `^loadtest_bare_${runId}$`;

export interface LoadtestLeftovers {
  /** Run ids whose rows or scratch table are still there. */
  runs: string[];
  skus: number;
  orders: number;
  scratch_tables: number;
}

export interface RemovedLeftovers extends LoadtestLeftovers {
  reservations: number;
  ledger_rows: number;
}

async function scratchTables(database: Database, runId: string): Promise<string[]> {
  const found = await rows<{ name: string }>(
    database.db,
    sql`SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() AND tablename ~ ${runTables(runId)} ORDER BY 1`,
  );
  return found.map((t) => t.name);
}

/** What earlier runs left behind: killed before they could clean up, or kept with --keep. */
export async function findLeftovers(database: Database): Promise<LoadtestLeftovers> {
  const pattern = runSkus(ANY_RUN);
  const stock = await rows<{ sku: string }>(
    database.db,
    sql`SELECT sku FROM products WHERE sku ~ ${pattern} UNION ALL SELECT sku FROM product_variants WHERE sku ~ ${pattern}`,
  );
  const [orders] = await rows<{ n: number }>(database.db, sql`SELECT count(DISTINCT order_id)::int AS n FROM order_items WHERE sku ~ ${pattern}`);
  const tables = await scratchTables(database, ANY_RUN);
  const runs = new Set([...stock.map((r) => r.sku.slice(LOADTEST_SKU_PREFIX.length, LOADTEST_SKU_PREFIX.length + 8)), ...tables.map((t) => t.slice(-8))]);
  return { runs: [...runs].sort(), skus: stock.length, orders: orders.n, scratch_tables: tables.length };
}

/** Remove a run's rows (or every run's): orders, reservations, ledger rows, products, scratch table. */
async function removeRuns(database: Database, runId: string): Promise<RemovedLeftovers> {
  const pattern = runSkus(runId);
  const runs = runId === ANY_RUN ? (await findLeftovers(database)).runs : [runId];
  const removed = await transaction(database.db, async (tx) => {
    const txCount = async (query: ReturnType<typeof sql>) => (await rows<{ n: number }>(tx, query))[0].n;
    await execute(tx, sql`CREATE TEMP TABLE lt_orders ON COMMIT DROP AS
                           SELECT DISTINCT order_id FROM order_items WHERE sku ~ ${pattern}`);
    const orders = await txCount(sql`SELECT count(*)::int AS n FROM lt_orders`);
    const ledgerRows = await txCount(sql`WITH d AS (DELETE FROM stock_movements WHERE sku ~ ${pattern} RETURNING 1) SELECT count(*)::int AS n FROM d`);
    const reservations = await txCount(
      sql`WITH d AS (DELETE FROM stock_reservations WHERE order_id IN (SELECT order_id FROM lt_orders) RETURNING 1) SELECT count(*)::int AS n FROM d`,
    );
    await execute(tx, sql`DELETE FROM order_items WHERE order_id IN (SELECT order_id FROM lt_orders)`);
    await execute(tx, sql`DELETE FROM orders WHERE order_id IN (SELECT order_id FROM lt_orders)`);
    const variants = await txCount(sql`WITH d AS (DELETE FROM product_variants WHERE sku ~ ${pattern} RETURNING 1) SELECT count(*)::int AS n FROM d`);
    const products = await txCount(sql`WITH d AS (DELETE FROM products WHERE sku ~ ${pattern} RETURNING 1) SELECT count(*)::int AS n FROM d`);
    return { orders, ledger_rows: ledgerRows, reservations, skus: variants + products };
  });
  const tables = await scratchTables(database, runId);
  for (const table of tables) await database.sql`DROP TABLE IF EXISTS ${database.sql(table)}`;
  return { runs, ...removed, scratch_tables: tables.length };
}

/** `loadtest --cleanup`: remove what every earlier run left behind. */
export function removeLeftovers(database: Database): Promise<RemovedLeftovers> {
  return removeRuns(database, ANY_RUN);
}

export async function runLoadtest(database: Database, cfg: LoadtestConfig, opts: { keep?: boolean } = {}): Promise<LoadtestReport> {
  const runId = randomBytes(4).toString('hex');
  // Loadtest SKUs live under their own prefix so they never touch real catalogue rows.
  const prefix = `${LOADTEST_SKU_PREFIX}${runId}-`;
  const startedAt = new Date().toISOString();
  let failed = false;
  const opened: Database[] = [];
  try {
    const pools: Pools = { checker: database, workers: database };
    if (cfg.chaos) {
      const workers = workersApplication(runId);
      opened.push((pools.workers = await cfg.chaos.openPool(workers, connectionsFor(cfg))));
      const monkey = await cfg.chaos.openPool(CHAOS_MONKEY_APPLICATION, 1);
      opened.push(monkey);
      pools.chaos = { monkey, targets: { workers, server: cfg.chaos.serverApplication }, intervalMs: cfg.chaos.intervalMs };
    }
    const [server] = await rows<{ version: string }>(database.db, sql`SELECT current_setting('server_version') AS version`);
    const baseline = await measureBareUpdate(pools.workers, runId, cfg);
    const strategies: StrategyReport[] = [];
    for (const strategy of cfg.strategies) {
      if (cfg.signal?.aborted) break;
      const report = await runStrategy(pools, prefix, strategy, cfg);
      report.ratio_to_bare_update = baseline.throughput_rps > 0 ? Math.round((report.throughput_rps / baseline.throughput_rps) * 100) / 100 : null;
      strategies.push(report);
    }
    const interrupted = Boolean(cfg.signal?.aborted);
    const total = (figure: (s: StrategyReport) => number | undefined) => strategies.reduce((sum, s) => sum + (figure(s) ?? 0), 0);
    return {
      run_id: runId,
      started_at: startedAt,
      finished_at: new Date().toISOString(),
      stockctl_version: STOCKCTL_VERSION,
      server_version: server.version,
      config: {
        buyers: cfg.buyers,
        stock: cfg.stock,
        quantity: cfg.quantity,
        concurrency: cfg.concurrency,
        connections: connectionsFor(cfg),
        skus: cfg.skus,
        strategies: cfg.strategies,
        mix: Boolean(cfg.mix),
        ...(cfg.url ? { url: cfg.url } : {}),
        max_retries: cfg.settings.maxStockRetryAttempts,
        retry_backoff_ms: cfg.settings.stockRetryBackoffMs,
        ...(pools.chaos ? { chaos: { interval_ms: pools.chaos.intervalMs, targets: pools.chaos.targets.server ? ['workers', 'server'] : ['workers'] } } : {}),
      },
      baseline,
      strategies,
      ...(pools.chaos ? { faults_injected: total((s) => s.faults_injected), failed_by_faults: total((s) => s.failed_by_faults) } : {}),
      // An interrupted run has measured only part of its buyers: no verdict either way.
      ok: !interrupted && strategies.every((s) => s.violations.length === 0),
      interrupted,
    };
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    await Promise.all(opened.map((pool) => pool.close().catch(() => {})));
    // A cleanup failure is reported, unless the run itself already failed.
    if (!opts.keep) await removeRuns(database, runId).catch((err) => {
      if (!failed) throw err;
    });
  }
}
