/**
 * `loadtest --chaos`: a chaos monkey that terminates the run's own database backends at
 * random while its buyers reserve, pay, cancel and sweep, and the checks that still hold
 * exactly when operations fail from it. It kills only sessions whose application_name is
 * one of the run's own (its workers' pool, and with --url the server's), on the run's own
 * database, from a connection of its own; never another session, never the checker's.
 */
import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { errorCode, isWaitForSlot, publicMessage, toDomainError } from '../db/errors.js';
import { array, rows } from '../db/query.js';
import { DatabaseUnavailableError } from '../errors.js';
import { TIMEOUT_NOTE } from '../engine/release.js';
import type { Violation } from '../engine/verify.js';

/** Mean time between two kills when `--chaos` is given without one. */
export const DEFAULT_CHAOS_INTERVAL_MS = 200;

/** The monkey's own session: not one of its targets. */
export const CHAOS_MONKEY_APPLICATION = 'stockctl-loadtest-chaos';

/** The application_name `stockctl serve` gives its pool (src/cli/commands/serve.ts): the target with --url. */
export const SERVE_APPLICATION = 'stockctl-serve';

/** The run's own workers (buyers, pays, cancels, the sweep): named by run, so that two runs never kill each other's. */
export const workersApplication = (runId: string) => `stockctl-loadtest-${runId}`;

/** The operations of a run that a fault can fail. */
export type Operation = 'reserve' | 'pay' | 'cancel' | 'sweep';

export interface FaultFigures {
  /** Of the kills, backends that were running a statement or inside a transaction (the rest were idle). */
  killed_busy: number;
  /** The kills by whose backend it was: the run's own workers', or (with --url) the server's. */
  by_target: { workers: number; server: number };
  /** Operations failed by a killed connection, by operation. */
  by_operation: Record<Operation, number>;
  /** The same operations by error code: the SQLSTATE or the driver's code (57P01, CONNECTION_CLOSED...), or http_503 with --url. */
  by_code: Record<string, number>;
  /**
   * Operations that failed by a fault, yet had committed (the database has their order,
   * payment or cancellation, whole): at most as many as failed, never an acknowledged one lost.
   */
  committed_unacknowledged: { reserves: number; pays: number; cancels: number };
  /** Kill statements that failed (the monkey's own errors); any is a violation. */
  chaos_errors: number;
  first_chaos_error?: string;
}

/** The monkey's tally: kills made, and how many hit a busy backend. */
export interface ChaosTally {
  faults_injected: number;
  killed_busy: number;
  by_target: { workers: number; server: number };
  errors: number;
  first_error?: string;
}

export interface ChaosMonkey {
  /** Kills made so far (for the progress display). */
  readonly injected: number;
  /** Stop killing; resolves once the kill in flight, if any, is done. */
  stop(): Promise<ChaosTally>;
}

/**
 * Terminate one backend of `applications` (on this database) about every `intervalMs`, each
 * gap drawn at random between half and one and a half of it. A busy backend (running a
 * statement, or inside a transaction) is preferred, since that is where a fault is felt;
 * an idle one is taken when none is busy, which tests the pool's reconnecting.
 */
export function unleashChaos(monkey: Database, targets: { workers: string; server?: string }, intervalMs: number): ChaosMonkey {
  const applications = targets.server ? [targets.workers, targets.server] : [targets.workers];
  const tally: ChaosTally = { faults_injected: 0, killed_busy: 0, by_target: { workers: 0, server: 0 }, errors: 0 };
  let running = true;
  let wake = () => {};
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  const loop = (async () => {
    while (running) {
      await pause(intervalMs * (0.5 + Math.random()));
      if (!running) break;
      try {
        // One statement: pick the victim and terminate it, so that it is still the one picked.
        const [victim] = await rows<{ application: string; state: string | null; terminated: boolean }>(
          monkey.db,
          sql`SELECT application_name AS application, state, pg_terminate_backend(pid) AS terminated
                FROM (SELECT pid, application_name, state FROM pg_stat_activity
                       WHERE datname = current_database() AND backend_type = 'client backend'
                         AND application_name = ANY(${array(applications)}::text[]) AND pid <> pg_backend_pid()
                       ORDER BY state IS NOT DISTINCT FROM 'idle', random() LIMIT 1) AS victim`,
        );
        if (victim?.terminated) {
          tally.faults_injected++;
          if (victim.state !== 'idle') tally.killed_busy++;
          tally.by_target[victim.application === targets.workers ? 'workers' : 'server']++;
        }
      } catch (err) {
        tally.errors++;
        tally.first_error ??= publicMessage(err);
      }
    }
  })();
  return {
    get injected() {
      return tally.faults_injected;
    },
    async stop() {
      running = false;
      wake();
      await loop;
      return tally;
    },
  };
}

/**
 * The code of a fault, if `err` is an operation failed by a killed connection: the database
 * went away under it (57P01, a closed or reset connection: what src/db/errors.ts maps to
 * "database unavailable"), or, through `serve`, the server answered 503 for that reason.
 * A full server ("too many clients") or a deadline is not a fault the monkey made.
 */
export function faultCode(err: unknown): string | undefined {
  if (err instanceof DatabaseUnavailableError) {
    // Only through --url (src/loadtest/http.ts): the server's 503, database_unavailable.
    return err.code === 'database_unavailable' && err.details?.status === 503 ? 'http_503' : undefined;
  }
  if (isWaitForSlot(err)) return undefined;
  const mapped = toDomainError(err);
  return mapped instanceof DatabaseUnavailableError && mapped.code === 'database_unavailable' ? (errorCode(err) ?? mapped.code) : undefined;
}

/** What the run's buyers and their follow-ups were told: acknowledged order ids, and refusals. */
export interface ChaosLedger {
  /** Orders the engine (or the server) returned as made. */
  reserved: Set<string>;
  /** Orders whose pay, or cancel, returned success. */
  paid: Set<string>;
  cancelled: Set<string>;
  /** SKUs on which a buyer was refused for want of stock. */
  refusedSkus: Set<string>;
  failed: Record<Operation, number>;
}

export const newChaosLedger = (): ChaosLedger => ({
  reserved: new Set(),
  paid: new Set(),
  cancelled: new Set(),
  refusedSkus: new Set(),
  failed: { reserve: 0, pay: 0, cancel: 0, sweep: 0 },
});

interface RunOrder {
  order_id: string;
  status: string;
  by_sweep: boolean;
  lines: number;
  line_units: number;
  /** Lines whose reservations (one per location the line was served from) add up to the line. */
  whole_lines: number;
  reservations: number;
  reserved_units: number;
  reserve_moves: number;
}

/**
 * What can be asserted exactly when some operations failed with a lost connection, each of
 * which may or may not have committed:
 * - every order of the run is whole: its lines, for each line its reservations (one per
 *   location it was served from) adding up to the line's units, one reserve row in the ledger
 *   per reservation; no order without lines since the start;
 * - every acknowledged order exists; every acknowledged pay left its order paid, every
 *   acknowledged cancel left it cancelled;
 * - what exists without an acknowledgement is at most what failed: orders made <= reserves
 *   failed by faults, orders paid (or cancelled by hand) unacknowledged <= pays (cancels)
 *   failed by faults;
 * - the counters are the orders: units reserved = units of pending orders, units sold = units
 *   of paid orders;
 * - without --mix (stock never comes back), a buyer refused for stock on a SKU means that SKU
 *   has fewer units left than a buyer asks for: nobody was turned away while stock remained.
 */
export async function checkChaosRun(
  checker: Database,
  run: { like: string; since: string; quantity: number; mix: boolean; ledger: ChaosLedger; units: { reserved: number; sold: number } },
): Promise<{ violations: Violation[]; committed_unacknowledged: FaultFigures['committed_unacknowledged']; orders: number }> {
  const { ledger, quantity } = run;
  const violations: Violation[] = [];
  const orders = await rows<RunOrder>(
    checker.db,
    sql`WITH run AS (SELECT DISTINCT order_id FROM order_items WHERE sku LIKE ${run.like}),
             li AS (SELECT order_id, count(*) AS n, sum(quantity) AS units FROM order_items
                     WHERE order_id IN (SELECT order_id FROM run) GROUP BY order_id),
             re AS (SELECT i.order_id, count(*) FILTER (WHERE x.units = i.quantity) AS whole, sum(x.n) AS n, sum(x.units) AS units
                      FROM order_items i
                      JOIN (SELECT order_item_id, sku, count(*) AS n, sum(quantity) AS units FROM stock_reservations
                             WHERE order_id IN (SELECT order_id FROM run) GROUP BY order_item_id, sku) x
                        ON x.order_item_id = i.order_item_id AND x.sku = i.sku
                     GROUP BY i.order_id),
             mv AS (SELECT order_id, count(*) AS n FROM stock_movements
                     WHERE kind = 'reserve' AND order_id IN (SELECT order_id FROM run) GROUP BY order_id)
        SELECT o.order_id, o.status, o.cancel_reason IS NOT DISTINCT FROM ${TIMEOUT_NOTE} AS by_sweep,
               coalesce(li.n, 0)::int AS lines, coalesce(li.units, 0)::int AS line_units,
               coalesce(re.whole, 0)::int AS whole_lines, coalesce(re.n, 0)::int AS reservations, coalesce(re.units, 0)::int AS reserved_units,
               coalesce(mv.n, 0)::int AS reserve_moves
          FROM orders o JOIN run USING (order_id)
          LEFT JOIN li USING (order_id) LEFT JOIN re USING (order_id) LEFT JOIN mv USING (order_id)`,
  );
  const [lineless] = await rows<{ n: number; first: string | null }>(
    checker.db,
    sql`SELECT count(*)::int AS n, min(order_id::text) AS first FROM orders o
         WHERE created_at >= ${run.since}::timestamptz
           AND NOT EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.order_id)`,
  );
  const broken = orders.filter(
    (o) => o.lines < 1 || o.whole_lines !== o.lines || o.reserved_units !== o.line_units || o.reserve_moves !== o.reservations,
  );
  if (broken.length > 0) {
    const o = broken[0];
    violations.push({
      kind: 'half_order',
      order_id: o.order_id,
      message: `${broken.length} order(s) not whole, e.g. ${o.order_id}: ${o.lines} line(s) of ${o.line_units} unit(s), ${o.whole_lines} of them wholly reserved, ${o.reservations} reservation(s) of ${o.reserved_units} unit(s), ${o.reserve_moves} reserve ledger row(s)`,
    });
  }
  if (lineless.n > 0) {
    violations.push({ kind: 'half_order', order_id: lineless.first ?? undefined, message: `${lineless.n} order(s) made during the run have no line, e.g. ${lineless.first}` });
  }

  const byId = new Map(orders.map((o) => [o.order_id, o]));
  const missing = (ids: Set<string>, ok: (o: RunOrder) => boolean) => [...ids].filter((id) => !byId.has(id) || !ok(byId.get(id)!));
  const lost = missing(ledger.reserved, () => true);
  if (lost.length > 0) {
    violations.push({ kind: 'lost_order', order_id: lost[0], message: `${lost.length} acknowledged order(s) are not in the database, e.g. ${lost[0]}` });
  }
  const unpaid = missing(ledger.paid, (o) => o.status === 'paid');
  if (unpaid.length > 0) {
    violations.push({ kind: 'lost_payment', order_id: unpaid[0], message: `${unpaid.length} acknowledged payment(s) did not leave their order paid, e.g. ${unpaid[0]} (${byId.get(unpaid[0])?.status ?? 'missing'})` });
  }
  const uncancelled = missing(ledger.cancelled, (o) => o.status === 'cancelled');
  if (uncancelled.length > 0) {
    violations.push({ kind: 'lost_cancel', order_id: uncancelled[0], message: `${uncancelled.length} acknowledged cancel(s) did not leave their order cancelled, e.g. ${uncancelled[0]}` });
  }

  const committed = {
    reserves: orders.filter((o) => !ledger.reserved.has(o.order_id)).length,
    pays: orders.filter((o) => o.status === 'paid' && !ledger.paid.has(o.order_id)).length,
    cancels: orders.filter((o) => o.status === 'cancelled' && !o.by_sweep && !ledger.cancelled.has(o.order_id)).length,
  };
  const excess = (what: string, found: number, failed: number) => {
    if (found > failed) violations.push({ kind: 'unexplained_commit', message: `${found} ${what} without an acknowledgement, but only ${failed} failed by a fault` });
  };
  excess('order(s) exist', committed.reserves, ledger.failed.reserve);
  excess('order(s) are paid', committed.pays, ledger.failed.pay);
  excess('order(s) are cancelled by hand', committed.cancels, ledger.failed.cancel);

  const unitsOf = (status: string) => orders.filter((o) => o.status === status).reduce((sum, o) => sum + o.line_units, 0);
  if (run.units.reserved !== unitsOf('pending')) {
    violations.push({ kind: 'units_mismatch', message: `${run.units.reserved} units reserved but pending orders hold ${unitsOf('pending')}` });
  }
  if (run.units.sold !== unitsOf('paid')) {
    violations.push({ kind: 'units_mismatch', message: `on hand fell by ${run.units.sold} but paid orders hold ${unitsOf('paid')} units` });
  }
  if (!run.mix && ledger.refusedSkus.size > 0) {
    const left = await rows<{ sku: string; available: number }>(
      checker.db,
      sql`SELECT sku, available FROM stock_items WHERE sku = ANY(${array([...ledger.refusedSkus])}::text[])`,
    );
    for (const s of left.filter((s) => s.available >= quantity)) {
      violations.push({ kind: 'false_rejection', sku: s.sku, message: `${s.sku}: buyers were refused for stock, yet ${s.available} units are still available` });
    }
  }
  return { violations, committed_unacknowledged: committed, orders: orders.length };
}
