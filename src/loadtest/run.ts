/**
 * The load generator: fires concurrent buyers at real PostgreSQL through the engine's
 * own reserveOrder, then proves what happened (no oversell, no false rejection, every
 * verify invariant) for the SKUs it created, and only those.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { sql } from 'drizzle-orm';
import * as hdr from 'hdr-histogram-js';
import type { Database } from '../db/client.js';
import { rows, transaction } from '../db/query.js';
import { DatabaseUnavailableError, InsufficientStockError, RefusedError } from '../errors.js';
import { addProduct, changeStock } from '../engine/catalogue.js';
import { addLocation, requireSellingLocation } from '../engine/locations.js';
import { cancelOrder, payOrder, reserveOrder, StockConflictError, type ReserveInput, type ReserveResult, type Strategy } from '../engine/orders.js';
import { expireOrders, TIMEOUT_NOTE } from '../engine/release.js';
import { withConflictRetry } from '../engine/retry.js';
import type { Settings } from '../engine/settings.js';
import { findViolations, type Violation } from '../engine/verify.js';
import { publicMessage, toDomainError } from '../db/errors.js';
import { STOCKCTL_VERSION } from '../version.js';
import type { BaselineReport, Environment, FigureSpread, LatencyBucket, LatencySummary, LoadtestReport, LocationProof, MixFates, Proof, RunFigures, Spread, SpreadFigure, StrategyReport, Timeline } from './report.js';
import { LOADTEST_SKU_PREFIX } from './skus.js';
import { removeRuns } from './leftovers.js';
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
  /** The buyers' pool size, as planned within the server's room (default: connectionsFor). */
  connections?: number;
  /**
   * A pool of its own, closed by the run: the workers' (buyers, pays, cancels, the sweep,
   * the bare UPDATE), and with --chaos the monkey's. Without it, the workers use the pool the
   * run was given, which is otherwise the checker's alone (set-up and checks).
   */
  openPool?(application: string, max: number): Promise<Database>;
  /** --repeat: run the whole workload this many times, strategies interleaved. */
  repeat?: number;
  /**
   * --locations: spread each SKU's stock over this many locations of the run's own (default
   * 1: the `default` location, as before there were several).
   */
  locations?: number;
}

/** A location a run's SKUs hold stock at, and the share of each SKU's stock put there. */
export interface RunLocation {
  code: string;
  priority: number;
  stock: number;
}

/** The location every database has, where a run of one location puts its stock. */
export const DEFAULT_LOCATION = 'default';

/**
 * Each SKU's `stock` over `n` locations, highest priority first: as even as can be, the
 * remainder at the highest priority.
 */
export function splitStock(stock: number, n: number): number[] {
  const share = Math.floor(stock / n);
  return Array.from({ length: n }, (_, i) => share + (i === 0 ? stock - share * n : 0));
}

/**
 * Where a run's stock goes: `default` for one location; for several, locations of the run's
 * own, named after its SKU prefix (so that cleanup finds them), priorities n down to 1.
 */
async function createLocations(database: Database, prefix: string, runId: string, cfg: LoadtestConfig): Promise<RunLocation[]> {
  const n = cfg.locations ?? 1;
  const shares = splitStock(cfg.stock, n);
  if (n === 1) {
    await requireSellingLocation(database.db, DEFAULT_LOCATION);
    return [{ code: DEFAULT_LOCATION, priority: 0, stock: shares[0] }];
  }
  const made: RunLocation[] = [];
  for (let i = 0; i < n; i++) {
    const code = `${prefix}L${i + 1}`;
    await addLocation(database.db, { code, name: `loadtest ${runId} location ${i + 1}`, priority: n - i });
    made.push({ code, priority: n - i, stock: shares[i] });
  }
  return made;
}

export interface ChaosConfig {
  /** Mean time between two kills; each gap is drawn between half and one and a half of it. */
  intervalMs: number;
  /** --url: the server's application_name; its backends on this database are killed too. */
  serverApplication?: string;
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

/**
 * The latency histogram on edges shared by every series and every run: ten buckets a decade
 * (upper bounds 10^(k/10) ms, to three digits), from the fastest call's bucket to the slowest's.
 * Shared edges put every strategy on one scale, and let --repeat's runs be added up.
 */
function bucketsOf(tookUs: number[]): LatencyBucket[] {
  if (tookUs.length === 0) return [];
  const step = (us: number) => Math.ceil(Math.round(10 * Math.log10(us / 1000) * 1e6) / 1e6);
  const counts = new Map<number, number>();
  for (const us of tookUs) counts.set(step(us), (counts.get(step(us)) ?? 0) + 1);
  const [low, high] = [Math.min(...counts.keys()), Math.max(...counts.keys())];
  return Array.from({ length: high - low + 1 }, (_, i) => ({ le_ms: bucketEdge(low + i), count: counts.get(low + i) ?? 0 }));
}

/** The upper bound of bucket k: 10^(k/10) ms, to three significant digits. */
const bucketEdge = (k: number) => Number(Math.pow(10, k / 10).toPrecision(3));

/** Histograms on the shared edges, added up (--repeat's runs of one strategy). */
function addHistograms(histograms: (LatencyBucket[] | undefined)[]): LatencyBucket[] {
  const counts = new Map<number, number>();
  for (const h of histograms) for (const b of h ?? []) counts.set(b.le_ms, (counts.get(b.le_ms) ?? 0) + b.count);
  return [...counts.entries()].sort((a, b) => a[0] - b[0]).map(([le_ms, count]) => ({ le_ms, count }));
}

/** The database turned the session away or lost it (a timeout is not that: it counts as an error). */
function databaseUnavailable(err: unknown): boolean {
  const mapped = err instanceof DatabaseUnavailableError ? err : toDomainError(err);
  return mapped instanceof DatabaseUnavailableError && mapped.code === 'database_unavailable';
}

const skuFor = (prefix: string, strategy: string, i: number) => `${prefix}${strategy}-${i}`;

/** The strategy's SKUs, each with a level at every run location holding its share of the stock. */
async function createSkus(database: Database, prefix: string, strategy: string, cfg: LoadtestConfig, locations: RunLocation[]) {
  const [first, ...others] = locations;
  for (let i = 0; i < cfg.skus; i++) {
    const sku = skuFor(prefix, strategy, i);
    await addProduct(database.db, { sku, name: `loadtest ${strategy} ${i}`, price: 100, stock: first.stock, location: first.code, actor: cfg.actor });
    for (const l of others) await changeStock(database.db, { sku, location: l.code, quantity: l.stock, reason: 'loadtest stock', actor: cfg.actor });
  }
}

interface LevelFigures {
  sku: string;
  location: string;
  on_hand: number;
  reserved: number;
  ledger_on_hand: number;
  ledger_reserved: number;
  active: number;
  paid: number;
}

/**
 * The proof at every level of the strategy's SKUs, and summed per location: reserved within
 * on hand, nothing negative, the ledger equal to the counters, the active reservations equal
 * to reserved, the units of paid reservations plus what is left equal to what was put there,
 * and those sold plus reserved never above it.
 */
async function proveLevels(database: Database, like: string, skus: string[], cfg: LoadtestConfig, locations: RunLocation[]) {
  const levels = await rows<LevelFigures>(
    database.db,
    sql`SELECT l.sku, l.location, l.stock_quantity AS on_hand, l.reserved_stock AS reserved,
               coalesce(m.stock, 0)::int AS ledger_on_hand, coalesce(m.reserved, 0)::int AS ledger_reserved,
               coalesce(r.active, 0)::int AS active, coalesce(r.paid, 0)::int AS paid
          FROM stock_levels l
          LEFT JOIN (SELECT sku, location, sum(stock_delta) AS stock, sum(reserved_delta) AS reserved
                       FROM stock_movements WHERE sku LIKE ${like} GROUP BY sku, location) m USING (sku, location)
          LEFT JOIN (SELECT sku, location, sum(quantity) FILTER (WHERE status = 'active') AS active,
                            sum(quantity) FILTER (WHERE status = 'converted') AS paid
                       FROM stock_reservations WHERE sku LIKE ${like} GROUP BY sku, location) r USING (sku, location)
         WHERE l.sku LIKE ${like}
         ORDER BY l.sku, l.location`,
  );
  const violations: Violation[] = [];
  const stockAt = new Map(locations.map((l) => [l.code, l.stock]));
  const perLocation = new Map<string, LocationProof>(
    locations.map((l) => [
      l.code,
      { location: l.code, priority: l.priority, levels: 0, stock: 0, sold: 0, reserved: 0, on_hand: 0, ledger_reserved: 0, ledger_on_hand: 0, active_reservations: 0, bad_levels: 0 },
    ]),
  );
  const seen = new Map<string, Set<string>>();
  for (const v of levels) {
    const stock = stockAt.get(v.location);
    const where = `${v.sku} at ${v.location}`;
    const problems: string[] = [];
    if (stock === undefined) problems.push(`a level at a location the run did not put stock at`);
    if (v.on_hand < 0 || v.reserved < 0 || v.reserved > v.on_hand) problems.push(`counters out of bounds (on hand ${v.on_hand}, reserved ${v.reserved})`);
    if (v.ledger_on_hand !== v.on_hand) problems.push(`on hand ${v.on_hand} but the ledger sums to ${v.ledger_on_hand}`);
    if (v.ledger_reserved !== v.reserved) problems.push(`reserved ${v.reserved} but the ledger sums to ${v.ledger_reserved}`);
    if (v.active !== v.reserved) problems.push(`reserved ${v.reserved} but active reservations hold ${v.active}`);
    if (stock !== undefined && v.paid + v.on_hand !== stock) problems.push(`${v.paid} units paid for and ${v.on_hand} left, but ${stock} were put there`);
    if (stock !== undefined && v.paid + v.reserved > stock) problems.push(`oversold: ${v.paid} sold and ${v.reserved} reserved out of ${stock}`);
    for (const p of problems) violations.push({ kind: 'level_proof', sku: v.sku, location: v.location, message: `${where}: ${p}` });
    (seen.get(v.sku) ?? seen.set(v.sku, new Set()).get(v.sku)!).add(v.location);
    const l = perLocation.get(v.location);
    if (!l) continue;
    l.levels++;
    l.stock += stock!;
    l.sold += v.paid;
    l.reserved += v.reserved;
    l.on_hand += v.on_hand;
    l.ledger_reserved += v.ledger_reserved;
    l.ledger_on_hand += v.ledger_on_hand;
    l.active_reservations += v.active;
    if (problems.length > 0) l.bad_levels++;
  }
  // Every SKU has a level at every run location, even one whose share is 0.
  for (const sku of skus) {
    const at = seen.get(sku);
    for (const l of locations) {
      if (!at?.has(l.code)) violations.push({ kind: 'level_proof', sku, location: l.code, message: `${sku} at ${l.code}: no stock level` });
    }
  }
  const proof = [...perLocation.values()];
  const sold = proof.reduce((a, l) => a + l.sold, 0);
  const left = proof.reduce((a, l) => a + l.on_hand, 0);
  const capacity = cfg.stock * cfg.skus;
  if (sold + left !== capacity) {
    violations.push({ kind: 'level_proof', message: `${sold} units paid for and ${left} left over the locations, but ${capacity} were put on sale` });
  }
  return { locations: proof, violations };
}

/** Connections a run uses: --concurrency, but no more than there are buyers. */
export const connectionsFor = (cfg: Pick<LoadtestConfig, 'concurrency' | 'buyers'>) => Math.min(cfg.concurrency, cfg.buyers);

/** The buyers' pool: as planned (within the server's room), else connectionsFor. */
const poolSize = (cfg: LoadtestConfig) => cfg.connections ?? connectionsFor(cfg);

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
      poolSize(cfg),
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

async function runStrategy(pools: Pools, prefix: string, strategy: Strategy, cfg: LoadtestConfig, locations: RunLocation[]): Promise<StrategyReport> {
  const { checker, workers } = pools;
  await createSkus(checker, prefix, strategy, cfg, locations);
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
  // A database that turns a session away or loses it (outside --chaos) is the machine's
  // trouble: counted apart, it breaks no invariant, but leaves the run without a verdict.
  let unavailable = 0;
  let firstUnexpected: string | undefined;
  const unexpected = (err: unknown) => {
    if (databaseUnavailable(err)) unavailable++;
    else {
      errors++;
      firstUnexpected ??= publicMessage(err);
    }
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
    poolSize(cfg),
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
  const [units] = await rows<{ reserved: number; stock: number; ledger_reserved: number; ledger_on_hand: number; active: number }>(
    checker.db,
    sql`SELECT coalesce(sum(reserved_stock), 0)::int AS reserved, coalesce(sum(stock_quantity), 0)::int AS stock,
               (SELECT coalesce(sum(reserved_delta), 0)::int FROM stock_movements WHERE sku LIKE ${like}) AS ledger_reserved,
               (SELECT coalesce(sum(stock_delta), 0)::int FROM stock_movements WHERE sku LIKE ${like}) AS ledger_on_hand,
               (SELECT coalesce(sum(quantity), 0)::int FROM stock_reservations WHERE sku LIKE ${like} AND status = 'active') AS active
          FROM stock_levels WHERE sku LIKE ${like}`,
  );
  const capacity = cfg.stock * cfg.skus;
  const sold = capacity - units.stock;
  const levels = await proveLevels(checker, like, skus, cfg, locations);
  const proof: Proof = {
    stock: capacity,
    sold,
    reserved: units.reserved,
    on_hand: units.stock,
    ledger_reserved: units.ledger_reserved,
    ledger_on_hand: units.ledger_on_hand,
    active_reservations: units.active,
    verify_problems: violations.length,
    // With one location, its level is the SKU's row: the figures above are its proof.
    ...(locations.length > 1 ? { locations: levels.locations } : {}),
  };
  violations.push(...levels.violations);
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
  } else if (unavailable === 0) {
    // (An operation the database lost may have committed: these exact counts cannot hold then.)
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
    if (unavailable === 0 && accounted !== successes + committedReserves) {
      const extra = ledger ? ` (and ${committedReserves} committed despite a fault)` : '';
      violations.push({ kind: 'fates_mismatch', message: `${successes} buyers won${extra} but ${accounted} orders have a fate` });
    }
  }
  // With one unit each, every buyer up to the stock must win. Optimistic locking is the
  // seed design's known weakness here: its false rejections are reported, not hidden.
  // (With --mix, cancelled and expired units go back on sale, so winners may exceed it;
  // with --chaos, buyers fail from faults: checkChaosRun asserts it per SKU instead.)
  const expected = !cfg.mix && !ledger && unavailable === 0 && cfg.quantity === 1 && done === cfg.buyers ? Math.min(cfg.buyers, capacity) : null;
  if (expected !== null && strategy !== 'optimistic' && successes !== expected) {
    violations.push({ kind: 'false_rejection', message: `${successes} of ${cfg.buyers} buyers won, expected exactly ${expected}` });
  }
  if (errors > 0) violations.push({ kind: 'errors', message: `${errors} operation(s) failed unexpectedly: ${firstUnexpected}` });
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
    proof,
    ...(unavailable > 0 ? { unavailable } : {}),
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

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const round2 = (n: number) => Math.round(n * 100) / 100;

/** The range of a figure over --repeat's runs (null values, where it does not apply, left out). */
function spreadOf(values: (number | null)[]): FigureSpread | undefined {
  const known = values.filter((v): v is number => v !== null);
  if (known.length < 2) return undefined;
  const [min, max, mid] = [Math.min(...known), Math.max(...known), median(known)];
  return { min, max, relative: mid > 0 ? Math.round(((max - min) / mid) * 1000) / 1000 : 0 };
}

const figuresOf = (r: { throughput_rps: number; duration_ms: number; latency_ms: LatencySummary; ratio_to_bare_update?: number | null }): RunFigures => ({
  throughput_rps: r.throughput_rps,
  ratio_to_bare_update: r.ratio_to_bare_update ?? null,
  duration_ms: r.duration_ms,
  latency_ms: r.latency_ms,
});

/**
 * --repeat's runs of one series as one: the median of each figure (rate, ratio, duration,
 * each percentile), each run's own figures and their spread, the latency histograms added up,
 * and the timeline of the run whose rate is the median (a line to look at, not an average).
 */
function medianOfRuns<T extends BaselineReport | StrategyReport>(runs: T[]): Pick<T, 'throughput_rps' | 'duration_ms' | 'latency_ms' | 'timeline' | 'histogram' | 'repeats' | 'spread'> & { ratio_to_bare_update: number | null } {
  const figures = runs.map(figuresOf);
  const ratios = figures.map((f) => f.ratio_to_bare_update).filter((r): r is number => r !== null);
  const rate = median(figures.map((f) => f.throughput_rps));
  const middle = runs.reduce((best, r) => (Math.abs(r.throughput_rps - rate) < Math.abs(best.throughput_rps - rate) ? r : best));
  const percentile = (p: keyof LatencySummary) => round2(median(figures.map((f) => f.latency_ms[p])));
  const spread: Spread = {};
  const add = (name: SpreadFigure, values: (number | null)[]) => {
    const found = spreadOf(values);
    if (found) spread[name] = found;
  };
  add('throughput_rps', figures.map((f) => f.throughput_rps));
  add('ratio_to_bare_update', figures.map((f) => f.ratio_to_bare_update));
  for (const p of ['p50', 'p95', 'p99'] as const) add(`${p}_ms`, figures.map((f) => f.latency_ms[p]));
  return {
    throughput_rps: Math.round(rate),
    ratio_to_bare_update: ratios.length ? round2(median(ratios)) : null,
    duration_ms: Math.round(median(figures.map((f) => f.duration_ms))),
    latency_ms: { p50: percentile('p50'), p95: percentile('p95'), p99: percentile('p99'), max: Math.max(...figures.map((f) => f.latency_ms.max)) },
    timeline: middle.timeline,
    histogram: addHistograms(runs.map((r) => r.histogram)),
    repeats: figures,
    spread,
  };
}

/** Every number in `parts` added up, leaf by leaf (counts, fates, faults); the first string kept. */
function addUp<T>(parts: T[]): T {
  const [first] = parts;
  if (typeof first === 'number') return parts.reduce((a, b) => (a as number) + (b as number), 0) as T;
  if (first === null || typeof first !== 'object' || Array.isArray(first)) return first;
  const keys = new Set(parts.flatMap((p) => Object.keys(p as object)));
  const out: Record<string, unknown> = {};
  for (const key of keys) {
    const values = parts.map((p) => (p as Record<string, unknown>)[key]).filter((v) => v !== undefined);
    out[key] = values.length === 0 ? undefined : addUp(values);
  }
  return out as T;
}

function combineBaselines(runs: BaselineReport[]): BaselineReport {
  if (runs.length === 1) return runs[0];
  return {
    strategy: 'bare_update',
    buyers: addUp(runs.map((r) => r.buyers)),
    errors: addUp(runs.map((r) => r.errors)),
    ...medianOfRuns(runs),
    ...(runs.find((r) => r.first_error) ? { first_error: runs.find((r) => r.first_error)!.first_error } : {}),
  } as BaselineReport;
}

/** --repeat's proofs of one strategy added up, location by location (a priority is not a count). */
function combineProofs(proofs: Proof[]): Proof {
  const { locations: _, ...total } = addUp(proofs);
  if (!proofs[0].locations) return total;
  const codes = proofs[0].locations.map((l) => l.location);
  const locations = codes.map((code) => {
    const at = proofs.flatMap((p) => p.locations?.filter((l) => l.location === code) ?? []);
    return { ...addUp(at), location: code, priority: at[0].priority };
  });
  return { ...total, locations };
}

/** --repeat's runs of one strategy as one report: counts added up, figures the medians, every run's violations. */
function combineStrategy(runs: StrategyReport[]): StrategyReport {
  if (runs.length === 1) return runs[0];
  const sum = <K extends keyof StrategyReport>(key: K) => {
    const values = runs.map((r) => r[key]).filter((v) => v !== undefined && v !== null);
    return values.length === 0 ? undefined : addUp(values);
  };
  const expected = runs.every((r) => r.expected_successes !== null) ? runs.reduce((a, r) => a + r.expected_successes!, 0) : null;
  const optional = (['mix', 'unavailable', 'faults_injected', 'failed_by_faults', 'faults'] as const).flatMap((k) => {
    const v = sum(k);
    return v === undefined ? [] : [[k, v] as const];
  });
  return {
    strategy: runs[0].strategy,
    buyers: sum('buyers')!,
    successes: sum('successes')!,
    rejections: sum('rejections')!,
    false_rejections: sum('false_rejections')!,
    errors: sum('errors')!,
    retries: sum('retries')!,
    units_reserved: sum('units_reserved')!,
    expected_successes: expected,
    ...medianOfRuns(runs),
    ...(runs.every((r) => r.proof) ? { proof: combineProofs(runs.map((r) => r.proof!)) } : {}),
    violations: runs.flatMap((r, i) => r.violations.map((v) => ({ ...v, message: `run ${i + 1} of ${runs.length}: ${v.message}` }))),
    ...(runs.find((r) => r.first_error) ? { first_error: runs.find((r) => r.first_error)!.first_error } : {}),
    ...Object.fromEntries(optional),
  } as StrategyReport;
}

/** What the figures depend on; the server is local when reached over loopback or a Unix socket (no address). */
async function environmentOf(database: Database): Promise<Environment> {
  const [e] = await rows<{ version: string; synchronous_commit: string; max_connections: number; in_use: number; loopback: boolean }>(
    database.db,
    sql`SELECT current_setting('server_version') AS version, current_setting('synchronous_commit') AS synchronous_commit,
               current_setting('max_connections')::int AS max_connections,
               (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend') AS in_use,
               coalesce(inet_server_addr() << '127.0.0.0/8'::inet OR inet_server_addr() = '::1'::inet, true) AS loopback`,
  );
  const load = os.loadavg().map(round2) as [number, number, number];
  return {
    cores: os.availableParallelism(),
    load_average: load,
    server_version: e.version,
    server_location: database.embedded ? 'embedded' : e.loopback ? 'local' : 'remote',
    synchronous_commit: e.synchronous_commit,
    max_connections: e.max_connections,
    connections_in_use: e.in_use,
    pooled: database.pooled,
  };
}

/** The strategies in round `round`'s order: each round starts one further along, so that none always runs first. */
const rotated = <T>(items: T[], round: number) => items.map((_, i) => items[(i + round) % items.length]);

export async function runLoadtest(database: Database, cfg: LoadtestConfig, opts: { keep?: boolean } = {}): Promise<LoadtestReport> {
  const runId = randomBytes(4).toString('hex');
  // Loadtest SKUs live under their own prefix so they never touch real catalogue rows.
  const prefix = `${LOADTEST_SKU_PREFIX}${runId}-`;
  const startedAt = new Date().toISOString();
  const rounds = cfg.repeat ?? 1;
  let failed = false;
  const opened: Database[] = [];
  try {
    const environment = await environmentOf(database);
    const pools: Pools = { checker: database, workers: database };
    if (cfg.openPool) {
      const workers = cfg.chaos ? workersApplication(runId) : 'stockctl-loadtest';
      opened.push((pools.workers = await cfg.openPool(workers, poolSize(cfg))));
      if (cfg.chaos) {
        const monkey = await cfg.openPool(CHAOS_MONKEY_APPLICATION, 1);
        opened.push(monkey);
        pools.chaos = { monkey, targets: { workers, server: cfg.chaos.serverApplication }, intervalMs: cfg.chaos.intervalMs };
      }
    } else if (cfg.chaos) {
      throw new Error('runLoadtest: --chaos needs openPool, for pools the monkey may kill');
    }
    const locations = await createLocations(database, prefix, runId, cfg);
    const baselines: BaselineReport[] = [];
    const runs = new Map<Strategy, StrategyReport[]>(cfg.strategies.map((s) => [s, []]));
    // Round after round, each a bare UPDATE and then every strategy: a machine that slows
    // down halfway slows every strategy alike, and each is measured against its own round.
    for (let round = 0; round < rounds && (round === 0 || !cfg.signal?.aborted); round++) {
      const baseline = await measureBareUpdate(pools.workers, runId, cfg);
      baselines.push(baseline);
      for (const strategy of rotated(cfg.strategies, round)) {
        if (cfg.signal?.aborted) break;
        const report = await runStrategy(pools, rounds > 1 ? `${prefix}r${round + 1}-` : prefix, strategy, cfg, locations);
        report.ratio_to_bare_update = baseline.throughput_rps > 0 ? round2(report.throughput_rps / baseline.throughput_rps) : null;
        runs.get(strategy)!.push(report);
      }
    }
    const strategies = cfg.strategies.filter((s) => runs.get(s)!.length > 0).map((s) => combineStrategy(runs.get(s)!));
    const interrupted = Boolean(cfg.signal?.aborted);
    const total = (figure: (s: StrategyReport) => number | undefined) => strategies.reduce((sum, s) => sum + (figure(s) ?? 0), 0);
    const unavailable = total((s) => s.unavailable);
    return {
      run_id: runId,
      started_at: startedAt,
      finished_at: new Date().toISOString(),
      stockctl_version: STOCKCTL_VERSION,
      server_version: environment.server_version,
      environment,
      config: {
        buyers: cfg.buyers,
        stock: cfg.stock,
        quantity: cfg.quantity,
        concurrency: cfg.concurrency,
        connections: poolSize(cfg),
        skus: cfg.skus,
        strategies: cfg.strategies,
        mix: Boolean(cfg.mix),
        ...(cfg.url ? { url: cfg.url } : {}),
        max_retries: cfg.settings.maxStockRetryAttempts,
        retry_backoff_ms: cfg.settings.stockRetryBackoffMs,
        ...(rounds > 1 ? { repeat: rounds } : {}),
        ...(locations.length > 1 ? { locations: locations.length } : {}),
        ...(pools.chaos ? { chaos: { interval_ms: pools.chaos.intervalMs, targets: pools.chaos.targets.server ? ['workers', 'server'] : ['workers'] } } : {}),
      },
      baseline: combineBaselines(baselines),
      strategies,
      ...(pools.chaos ? { faults_injected: total((s) => s.faults_injected), failed_by_faults: total((s) => s.failed_by_faults) } : {}),
      ...(unavailable > 0 ? { unavailable } : {}),
      // An interrupted run has measured only part of its buyers, and one the database
      // turned operations away from cannot count them all: no verdict either way.
      ok: !interrupted && unavailable === 0 && strategies.every((s) => s.violations.length === 0),
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
