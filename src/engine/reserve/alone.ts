/**
 * One order reserved on its own (every strategy but a `batched` single-line order): the
 * pending order, its lines, one reservation per line and the ledger rows, or nothing at all.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Db } from '../../db/client.js';
import { SQLSTATE, sqlState } from '../../db/errors.js';
import { rows, transaction, type Tx } from '../../db/query.js';
import { InsufficientStockError, RefusedError, StockctlError, type Shortage } from '../../errors.js';
import { quote, type OrderLine } from '../input.js';
import { formatWindow } from '../windows.js';
import { findOrderByRef } from '../order-rows.js';
import { expireOrders } from '../release.js';
import { sleep, withConflictRetry } from '../retry.js';
import type { Settings } from '../settings.js';
import { applyStockChangesThen, explainUnknownSkus, lockStockRows, readStockRows, shortagesOf, type StockChange, type StockRow } from '../stock.js';
import type { Strategy } from '../names.js';
import { holdsExpiredReservations, type ReservedItem, type ReserveInput, type ReserveResult } from './shared.js';

/** Thrown by the optimistic strategy when its version retries are used up. */
export class StockConflictError extends StockctlError {
  constructor(skus: string[], attempts: number) {
    super(`Could not reserve ${skus.join(', ')}: the stock kept changing under ${attempts} optimistic attempts.`, 3, 'stock_conflict', {
      skus,
      attempts,
    });
    this.remedy = 'guarded_strategy';
  }
}

/** Guarded retries when stock came back between a reserve that did not fit and its re-read. */
const MAX_GUARDED_RETRIES = 100;
/** Rounds of "release the expired holders of the short SKUs, or re-read" before a shortage stands. */
const MAX_EXPIRE_ROUNDS = 50;
/** Expired orders released per round. */
const EXPIRE_BATCH = 1000;
/** Pause (ms, plus up to EXPIRE_JITTER_MS) while another process releases the same holders. */
const EXPIRE_WAIT_MS = 5;
const EXPIRE_JITTER_MS = 10;

/** What one attempt came to. */
type Attempt =
  | { created: { paymentExpiresAt: string; total: number } }
  | { short: Shortage[] }
  /** Optimistic: a stock row's version moved since it was read. */
  | { versionMoved: true }
  /** Guarded: nothing applied, yet the stock covers the order now (freed meanwhile). */
  | { stockFreed: true };

interface AttemptPlan {
  orderId: string;
  lines: OrderLine[];
  itemIds: string[];
  reservationIds: string[];
  ttlSeconds: number;
  attempt: number;
  strategy: Strategy;
  input: ReserveInput;
}

/**
 * One order on its own. `batched` here (a multi-line order, a lone buyer, or one retried
 * out of a failed batch) works as `guarded` does and is recorded as `batched`.
 */
export async function reserveAlone(db: Db, input: ReserveInput, settings: Settings): Promise<ReserveResult> {
  const strategy = input.strategy ?? 'guarded';
  const ttlSeconds = input.ttlSeconds ?? settings.paymentTimeoutMinutes * 60;
  // Canonical line order: the same order the stock rows are locked in.
  const lines = [...input.lines].sort((a, b) => (a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : 0));
  const replay = await replayByRef(db, input, ttlSeconds);
  if (replay) return replay;

  let retries = 0;
  let expiredReleased = 0;
  let expireRounds = 0;
  // Counts optimistic version attempts only (recorded as reserve_attempts): releasing
  // expired holders or a guarded race does not make a new attempt.
  let attempt = 1;
  for (;;) {
    const plan: AttemptPlan = {
      orderId: randomUUID(),
      lines,
      itemIds: lines.map(() => randomUUID()),
      reservationIds: lines.map(() => randomUUID()),
      ttlSeconds,
      attempt,
      strategy,
      input,
    };
    let outcome: Attempt;
    try {
      outcome = await withConflictRetry(() => attemptReserve(db, plan), () => retries++);
    } catch (err) {
      // Another process created this ref between our check and our insert.
      const again = sqlState(err) === SQLSTATE.uniqueViolation && input.ref ? await replayByRef(db, input, ttlSeconds) : undefined;
      if (again) return again;
      throw err;
    }
    if ('created' in outcome) {
      return {
        order_id: plan.orderId,
        ref: input.ref ?? null,
        status: 'pending',
        customer_id: input.customerId ?? null,
        payment_expires_at: new Date(outcome.created.paymentExpiresAt).toISOString(),
        payment_method: input.paymentMethod ?? null,
        payment_window_seconds: ttlSeconds,
        priority: input.priority ?? null,
        total: Number(outcome.created.total),
        strategy,
        attempts: attempt,
        replay: false,
        items: lines.map((l, i) => ({ sku: l.sku, quantity: l.quantity, reservation_id: plan.reservationIds[i] })),
        retries,
        expired_orders_released: expiredReleased,
      };
    }
    if ('versionMoved' in outcome) {
      retries++;
      if (attempt >= settings.maxStockRetryAttempts) throw new StockConflictError(lines.map((l) => l.sku), attempt);
      await sleep(settings.stockRetryBackoffMs * attempt);
      attempt++;
    } else if ('stockFreed' in outcome) {
      if (++retries > MAX_GUARDED_RETRIES) {
        throw new Error(`reserve of ${lines.map((l) => l.sku).join(', ')} made no progress after ${MAX_GUARDED_RETRIES} attempts`);
      }
    } else {
      if (expireRounds >= MAX_EXPIRE_ROUNDS) throw new InsufficientStockError(outcome.short);
      expireRounds++;
      // An expired reservation never makes a reserve fail: release unswept expired
      // holders of the short SKUs (as the sweep would) and try again. If another process
      // is releasing them right now (SKIP LOCKED gave us none), wait for it.
      const skus = outcome.short.map((s) => s.sku);
      if (await holdsExpiredReservations(db, skus)) {
        const expired = await withConflictRetry(() =>
          transaction(db, (tx) => expireOrders(tx, { due: { limit: EXPIRE_BATCH, skus } }, input.actor)),
        );
        expiredReleased += expired.orderIds.length;
        if (expired.orderIds.length === 0) await sleep(EXPIRE_WAIT_MS + Math.random() * EXPIRE_JITTER_MS);
      } else {
        // Another buyer may have just released the holders: only a shortage that is
        // still there now is reported.
        const { shortages } = await checkStock(db, lines, { lock: false });
        if (shortages.length > 0) throw new InsufficientStockError(shortages);
      }
    }
  }
}

/**
 * One reserve attempt. `guarded` single-line: one statement, no transaction. Multi-line
 * orders run in a transaction, where the stock change locks their rows in canonical
 * order. `locking` locks and checks its rows first; `optimistic` reads versions first
 * and applies only if they did not move.
 */
async function attemptReserve(db: Db, plan: AttemptPlan): Promise<Attempt> {
  const { lines } = plan;
  const strategy = plan.strategy === 'batched' ? 'guarded' : plan.strategy;
  const run = async (tx: Tx): Promise<Attempt> => {
    let versions: Map<string, number> | undefined;
    if (strategy !== 'guarded') {
      const { stock, shortages } = await checkStock(tx, lines, { lock: strategy === 'locking' });
      if (shortages.length > 0) return { short: shortages };
      if (strategy === 'optimistic') versions = new Map(stock.map((r) => [r.sku, r.version]));
    }
    // `locking` holds every row's lock in this transaction already (checkStock above).
    const [created] = await insertReservedOrder(tx, plan, { versions, locked: strategy === 'locking' });
    return created ? { created } : { stockFreed: true };
  };
  const attempt = lines.length > 1 || strategy === 'locking' ? await transaction(db, run) : await run(db);
  if (!('stockFreed' in attempt)) return attempt;
  // Nothing applied: an unknown SKU, a real shortage, or (optimistic) a moved version.
  const { shortages } = await checkStock(db, lines, { lock: false });
  if (shortages.length > 0) return { short: shortages };
  return strategy === 'optimistic' ? { versionMoved: true } : attempt;
}

/** Read (or lock) the order's stock rows and say which lines they cannot cover. */
async function checkStock(tx: Tx, lines: OrderLine[], opts: { lock: boolean }): Promise<{ stock: StockRow[]; shortages: Shortage[] }> {
  const skus = lines.map((l) => l.sku);
  const stock = opts.lock ? await lockStockRows(tx, skus) : await readStockRows(tx, skus);
  if (stock.length < lines.length) await explainUnknownSkus(tx, lines.map((l) => l.sku));
  return { stock, shortages: shortagesOf(lines, stock) };
}

/**
 * The reserve statement: the guarded stock change, its ledger rows, the order, its lines
 * and one reservation per line, all in one statement. The order rows are inserted only
 * if the stock change went through, so a single-line order needs no transaction at all
 * and the hot stock row is locked for the duration of one statement.
 */
function insertReservedOrder(tx: Tx, plan: AttemptPlan, opts: { versions?: Map<string, number>; locked?: boolean }) {
  const { versions, locked } = opts;
  const { orderId, lines, input } = plan;
  const changes: StockChange[] = lines.map((l, i) => ({
    sku: l.sku,
    stockDelta: 0,
    reservedDelta: l.quantity,
    kind: 'reserve',
    orderId,
    reservationId: plan.reservationIds[i],
    expectedVersion: versions?.get(l.sku) ?? null,
  }));
  const payload = JSON.stringify(
    lines.map((l, i) => ({ sku: l.sku, quantity: l.quantity, order_item_id: plan.itemIds[i], reservation_id: plan.reservationIds[i] })),
  );
  return applyStockChangesThen<{ paymentExpiresAt: string; total: number }>(tx, changes, input.actor, { guard: true, locked }, {
    with: sql`, li AS (
          SELECT x.*, d.product_id, d.variant_id, d.name, d.price
            FROM jsonb_to_recordset(${payload}::jsonb)
                 AS x(sku text, quantity int, order_item_id uuid, reservation_id uuid)
            JOIN done d ON d.sku = x.sku
        ), o AS (
          INSERT INTO orders (order_id, ref, customer_id, payment_expires_at, payment_method,
                              payment_window_seconds, priority, subtotal, total,
                              item_count, reserve_attempts, strategy, created_by)
          SELECT ${orderId}::uuid, ${input.ref ?? null}, ${input.customerId ?? null},
                 now() + make_interval(secs => ${plan.ttlSeconds}), ${input.paymentMethod ?? null},
                 ${plan.ttlSeconds}::int, ${input.priority ?? null},
                 sum(price::bigint * quantity), sum(price::bigint * quantity), sum(quantity),
                 ${plan.attempt}, ${plan.strategy}, ${input.actor}
            FROM li HAVING count(*) = ${lines.length}
          RETURNING order_id, payment_expires_at, total
        ), i AS (
          INSERT INTO order_items (order_item_id, order_id, product_id, variant_id, sku, name,
                                   unit_price, quantity, line_total)
          SELECT li.order_item_id, o.order_id, li.product_id, li.variant_id, li.sku, li.name,
                 li.price, li.quantity, li.price::bigint * li.quantity
            FROM li, o
        ), r AS (
          INSERT INTO stock_reservations (reservation_id, order_id, order_item_id, product_id,
                                          variant_id, sku, quantity, expires_at)
          SELECT li.reservation_id, o.order_id, li.order_item_id, li.product_id, li.variant_id,
                 li.sku, li.quantity, o.payment_expires_at
            FROM li, o
        )`,
    select: sql`SELECT payment_expires_at AS "paymentExpiresAt", total::float8 AS total FROM o`,
  });
}

async function orderItems(tx: Tx, orderId: string): Promise<ReservedItem[]> {
  return rows<ReservedItem>(
    tx,
    sql`SELECT i.sku, i.quantity, r.reservation_id
          FROM order_items i
          LEFT JOIN LATERAL (SELECT reservation_id FROM stock_reservations r
                              WHERE r.order_item_id = i.order_item_id ORDER BY reserved_at DESC LIMIT 1) r ON true
         WHERE i.order_id = ${orderId} ORDER BY i.sku`,
  );
}

const linesKey = (l: { sku: string; quantity: number }[]) =>
  l
    .map((x) => `${x.sku}:${x.quantity}`)
    .sort()
    .join(' ');
const shown = (value: string | null | undefined) => (value === null || value === undefined ? 'none' : quote(value));

/**
 * An existing order under this ref. The key covers the whole request (the IETF
 * Idempotency-Key draft): the same items, customer, payment window, method and tier is a
 * replay (exit 0); anything else is a conflict (exit 5), never the first order's answer
 * to another request.
 */
async function replayByRef(db: Db, input: ReserveInput, ttlSeconds: number): Promise<ReserveResult | undefined> {
  if (!input.ref) return undefined;
  const order = await findOrderByRef(db, input.ref);
  if (!order) return undefined;
  const items = await orderItems(db, order.orderId);
  const differences: string[] = [];
  if (linesKey(items) !== linesKey(input.lines)) differences.push(`items ${linesKey(items)}, not ${linesKey(input.lines)}`);
  if ((order.customerId ?? null) !== (input.customerId ?? null)) differences.push(`customer ${shown(order.customerId)}, not ${shown(input.customerId)}`);
  // Orders made before windows were recorded have none to compare.
  if (order.paymentWindowSeconds !== null && order.paymentWindowSeconds !== ttlSeconds) {
    differences.push(`a ${formatWindow(order.paymentWindowSeconds)} payment window, not ${formatWindow(ttlSeconds)}`);
  }
  if ((order.paymentMethod ?? null) !== (input.paymentMethod ?? null)) differences.push(`payment method ${shown(order.paymentMethod)}, not ${shown(input.paymentMethod)}`);
  if ((order.priority ?? null) !== (input.priority ?? null)) differences.push(`priority ${shown(order.priority)}, not ${shown(input.priority)}`);
  if (differences.length > 0) {
    throw new RefusedError(
      `Ref ${quote(input.ref)} already names order ${order.orderId}, made by another request (${differences.join('; ')}); use a new ref, or send the first request again.`,
      'ref_conflict',
      { order_id: order.orderId },
    );
  }
  return {
    order_id: order.orderId,
    ref: order.ref,
    status: order.status,
    customer_id: order.customerId,
    payment_expires_at: order.paymentExpiresAt ? new Date(order.paymentExpiresAt).toISOString() : '',
    payment_method: order.paymentMethod,
    payment_window_seconds: order.paymentWindowSeconds,
    priority: order.priority,
    total: Number(order.total),
    strategy: order.strategy ?? 'guarded',
    attempts: order.reserveAttempts,
    replay: true,
    items,
    retries: 0,
    expired_orders_released: 0,
  };
}

