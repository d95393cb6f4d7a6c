/**
 * The sweep: expire every pending order past its window, in batches, each batch one
 * transaction claiming its orders with FOR UPDATE SKIP LOCKED. Several sweeps at once
 * each take different orders; every run is recorded in sweep_runs.
 */
import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { expireOrders } from './release.js';
import { execute, rows, transaction } from '../db/query.js';
import { withConflictRetry } from './retry.js';
import { publicMessage } from '../db/errors.js';
import { recountListeners } from './stock-events.js';

export interface SweepInput {
  batchSize?: number;
  dryRun?: boolean;
  actor: string;
  signal?: AbortSignal;
  onBatch?: (progress: { expired_orders: number; released_units: number; batches: number }) => void;
}

export interface SweepResult {
  run_id: number | null;
  dry_run: boolean;
  expired_orders: number;
  released_units: number;
  batches: number;
  /** Pending orders still past their window (held by another sweep or a pay right now). */
  remaining_due: number;
  interrupted: boolean;
  duration_ms: number;
}

async function dueSummary(db: Db): Promise<{ orders: number; units: number }> {
  const [due] = await rows<{ orders: number; units: number }>(
    db,
    sql`SELECT count(DISTINCT o.order_id)::int AS orders, coalesce(sum(r.quantity), 0)::int AS units
          FROM orders o
          LEFT JOIN stock_reservations r ON r.order_id = o.order_id AND r.status = 'active'
         WHERE o.status = 'pending' AND o.payment_expires_at < now()`,
  );
  return due;
}

export async function expireDueOrders(db: Db, input: SweepInput): Promise<SweepResult> {
  const started = Date.now();
  const batchSize = input.batchSize ?? 100;
  const [run] = await rows<{ runId: number }>(
    db,
    sql`INSERT INTO sweep_runs (dry_run, actor) VALUES (${Boolean(input.dryRun)}, ${input.actor}) RETURNING run_id::int AS "runId"`,
  );
  const result: SweepResult = {
    run_id: run.runId,
    dry_run: Boolean(input.dryRun),
    expired_orders: 0,
    released_units: 0,
    batches: 0,
    remaining_due: 0,
    interrupted: false,
    duration_ms: 0,
  };
  try {
    if (input.dryRun) {
      const due = await dueSummary(db);
      result.expired_orders = due.orders;
      result.released_units = due.units;
    } else {
      for (;;) {
        if (input.signal?.aborted) {
          result.interrupted = true;
          break;
        }
        const batch = await withConflictRetry(() =>
          transaction(db, (tx) => expireOrders(tx, { due: { limit: batchSize } }, input.actor)),
        );
        if (batch.orderIds.length === 0) break;
        result.batches++;
        result.expired_orders += batch.orderIds.length;
        result.released_units += batch.units;
        input.onBatch?.({ expired_orders: result.expired_orders, released_units: result.released_units, batches: result.batches });
        if (batch.orderIds.length < batchSize) break;
      }
      result.remaining_due = (await dueSummary(db)).orders;
      // Writers stop notifying for a live-stock listener that was killed without leaving.
      await recountListeners(db);
    }
    result.duration_ms = Date.now() - started;
    await execute(
      db,
      sql`UPDATE sweep_runs SET finished_at = now(), orders_expired = ${result.expired_orders},
                 units_released = ${result.released_units}, batches = ${result.batches},
                 error = ${result.interrupted ? 'interrupted' : null}
           WHERE run_id = ${run.runId}`,
    );
    return result;
  } catch (err) {
    // Record the failure for `check` (three failed sweeps in a row), then let it surface.
    const message = publicMessage(err).slice(0, 500);
    await execute(
      db,
      sql`UPDATE sweep_runs SET finished_at = now(), orders_expired = ${result.expired_orders},
                 units_released = ${result.released_units}, batches = ${result.batches}, error = ${message}
           WHERE run_id = ${run.runId}`,
    ).catch(() => {});
    throw err;
  }
}
