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
import { allocate, DEFAULT_SPLIT_POLICY, type Allocation } from '../allocate.js';
import { requireSellingLocation } from '../locations.js';
import { quote, sumBySku, type OrderLine } from '../input.js';
import { formatWindow } from '../windows.js';
import { findOrderByRef } from '../order-rows.js';
import { expireOrders } from '../release.js';
import { sleep, withConflictRetry } from '../retry.js';
import type { Settings } from '../settings.js';
import { applyStockChangesFrom, applyStockChangesThen, readLevels, refuseUnknownSkus, type AfterStockChange, type LevelRow, type StockChange } from '../stock.js';
import type { Strategy } from '../names.js';
import { holdsExpiredReservations, type ItemAllocation, type ReservedItem, type ReserveInput, type ReserveResult } from './shared.js';

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
  | { created: { paymentExpiresAt: string; total: number; allocations: Placed[] } }
  | { short: Shortage[] }
  /** Optimistic: a stock row's version moved since it was read. */
  | { versionMoved: true }
  /** Guarded: nothing applied, yet the stock covers the order now (freed meanwhile). */
  | { stockFreed: true };

/** One reservation the reserve statement wrote: a line's units at one location. */
interface Placed {
  sku: string;
  location: string;
  quantity: number;
  reservationId: string;
}

interface AttemptPlan {
  orderId: string;
  lines: OrderLine[];
  itemIds: string[];
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
  // One line per SKU (two lines of one SKU are one demand), in the canonical order the
  // levels are locked in.
  const lines = sumBySku(input.lines).sort((a, b) => (a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : 0));
  const replay = await replayByRef(db, input, ttlSeconds);
  if (replay) return replay;
  if (input.location !== undefined) await requireSellingLocation(db, input.location);

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
        items: reservedItems(lines, outcome.created.allocations),
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
      // holders of the order's SKUs (as the sweep would) and try again. All of them, not
      // only the short ones: where a policy keeps lines together, units of another line
      // freed at one location can make that location cover the order. If another process
      // is releasing them right now (SKIP LOCKED gave us none), wait for it.
      const skus = lines.map((l) => l.sku);
      if (await holdsExpiredReservations(db, skus)) {
        const expired = await withConflictRetry(() =>
          transaction(db, (tx) => expireOrders(tx, { due: { limit: EXPIRE_BATCH, skus } }, input.actor)),
        );
        expiredReleased += expired.orderIds.length;
        if (expired.orderIds.length === 0) await sleep(EXPIRE_WAIT_MS + Math.random() * EXPIRE_JITTER_MS);
      } else {
        // Another buyer may have just released the holders: only a shortage that is
        // still there now is reported.
        const now = await allocateOrder(db, plan, { lock: false });
        if ('short' in now) throw new InsufficientStockError(now.short);
      }
    }
  }
}

/** Each line with the reservations that hold it, in SKU order. */
function reservedItems(lines: OrderLine[], placed: Placed[]): ReservedItem[] {
  return lines.map((l) => {
    const allocations: ItemAllocation[] = placed
      .filter((p) => p.sku === l.sku)
      .map((p) => ({ location: p.location, quantity: p.quantity, reservation_id: p.reservationId }));
    return { sku: l.sku, quantity: l.quantity, reservation_id: allocations[0].reservation_id, allocations };
  });
}

/**
 * One reserve attempt. A `guarded` single-line order: one statement, no transaction, at
 * the highest-priority location that has the units (chosen in the statement, re-checked
 * by its guard on the locked level). Otherwise, or when that found none: in a transaction,
 * the candidate levels are locked in the canonical order ((sku, location); `optimistic`
 * only reads them, and applies only if their versions did not move), allocate() decides
 * where each line's units come from, and the guarded stock change takes them.
 */
async function attemptReserve(db: Db, plan: AttemptPlan): Promise<Attempt> {
  const { lines } = plan;
  const strategy = plan.strategy === 'batched' ? 'guarded' : plan.strategy;
  if (strategy === 'guarded' && lines.length === 1) {
    const placed = await insertReservedOrder(db, plan, { pick: lines[0] });
    if (placed) return { created: placed };
    // No one location had the units: short everywhere (read, no lock: a sold-out SKU's
    // losers must not queue on its row), or a split, or a race lost, which the locked path sorts out.
    const now = await allocateOrder(db, plan, { lock: false });
    if ('short' in now) return now;
  }
  if (strategy === 'optimistic') {
    // Read, decide, then apply only if no level's version moved; one level needs no transaction.
    const found = await allocateOrder(db, plan, { lock: false });
    if ('short' in found) return found;
    const versions = new Map(found.levels.map((l) => [levelKey(l), l.version]));
    const apply = (tx: Tx) => insertReservedOrder(tx, plan, { allocations: found.allocations, versions, locked: false });
    const placed = found.allocations.length === 1 ? await apply(db) : await transaction(db, apply);
    if (placed) return { created: placed };
    // Nothing applied: a real shortage by now, or a moved version.
    const now = await allocateOrder(db, plan, { lock: false });
    return 'short' in now ? now : { versionMoved: true };
  }
  return transaction(db, async (tx): Promise<Attempt> => {
    const found = await allocateOrder(tx, plan, { lock: true });
    if ('short' in found) return found;
    const placed = await insertReservedOrder(tx, plan, { allocations: found.allocations, locked: true });
    return placed ? { created: placed } : { stockFreed: true };
  });
}

const levelKey = (l: { sku: string; location: string }) => `${l.sku}\u0000${l.location}`;

/**
 * Where the order's units would come from now: its SKUs' levels (at the pinned location
 * only, if it is pinned), locked in the canonical order with `lock`, and allocate()'s answer.
 */
async function allocateOrder(
  tx: Tx,
  plan: AttemptPlan,
  opts: { lock: boolean },
): Promise<{ allocations: Allocation[]; levels: LevelRow[] } | { short: Shortage[] }> {
  const { lines, input } = plan;
  const skus = lines.map((l) => l.sku);
  const levels = await readLevels(tx, skus, { lock: opts.lock, selling: true, locations: input.location !== undefined ? [input.location] : undefined });
  const located = new Set(levels.map((l) => l.sku));
  if (skus.some((sku) => !located.has(sku))) {
    // A SKU with no level (here) has nothing to give; one with no stock row at all is exit 4.
    await refuseUnknownSkus(tx, skus);
  }
  const result = allocate(lines, levels, input.split ?? DEFAULT_SPLIT_POLICY);
  return 'short' in result ? result : { allocations: result.allocations, levels };
}

/**
 * The reserve statement: the guarded stock change, its ledger rows, the order, its lines
 * and one reservation per (line, location), all in one statement. The order rows are
 * inserted only if the stock change went through whole, so a single-line order needs no
 * transaction at all and the hot level is locked for the duration of one statement.
 *
 * `pick`: one line, whose location the statement chooses (the active one of highest
 * priority with the units, or the pinned one). `allocations`: where allocate() put each
 * line's units, over levels this transaction has locked (`locked`) or read (`versions`).
 */
async function insertReservedOrder(
  tx: Tx,
  plan: AttemptPlan,
  how: { pick: OrderLine } | { allocations: Allocation[]; versions?: Map<string, number>; locked: boolean },
): Promise<{ paymentExpiresAt: string; total: number; allocations: Placed[] } | undefined> {
  const { orderId, lines, input } = plan;
  const itemOf = new Map(lines.map((l, i) => [l.sku, plan.itemIds[i]]));
  const wanted = 'pick' in how ? [{ sku: how.pick.sku, location: null, quantity: how.pick.quantity }] : how.allocations;
  const placements = wanted.map((a) => ({ ...a, order_item_id: itemOf.get(a.sku)!, reservation_id: randomUUID() }));
  const after: AfterStockChange = {
    with: sql`, li AS (
          SELECT x.sku, x.quantity, x.order_item_id, x.reservation_id, d.location, d.product_id, d.variant_id, d.name, d.price
            FROM jsonb_to_recordset(${JSON.stringify(placements)}::jsonb)
                 AS x(sku text, location text, quantity int, order_item_id uuid, reservation_id uuid)
            JOIN done d ON d.sku = x.sku AND d.location = coalesce(x.location, d.location)
        ), o AS (
          INSERT INTO orders (order_id, ref, customer_id, payment_expires_at, payment_method,
                              payment_window_seconds, priority, location, split_policy, subtotal, total,
                              item_count, reserve_attempts, strategy, created_by)
          SELECT ${orderId}::uuid, ${input.ref ?? null}, ${input.customerId ?? null},
                 now() + make_interval(secs => ${plan.ttlSeconds}), ${input.paymentMethod ?? null},
                 ${plan.ttlSeconds}::int, ${input.priority ?? null}, ${input.location ?? null}::text,
                 ${input.split ?? DEFAULT_SPLIT_POLICY}::text,
                 sum(price::bigint * quantity), sum(price::bigint * quantity), sum(quantity),
                 ${plan.attempt}, ${plan.strategy}, ${input.actor}
            FROM li HAVING count(*) = ${placements.length}
          RETURNING order_id, payment_expires_at, total
        ), i AS (
          INSERT INTO order_items (order_item_id, order_id, product_id, variant_id, sku, name,
                                   unit_price, quantity, line_total)
          SELECT li.order_item_id, o.order_id, li.product_id, li.variant_id, li.sku, li.name,
                 li.price, sum(li.quantity), li.price::bigint * sum(li.quantity)
            FROM li, o
           GROUP BY li.order_item_id, o.order_id, li.product_id, li.variant_id, li.sku, li.name, li.price
        ), r AS (
          INSERT INTO stock_reservations (reservation_id, order_id, order_item_id, product_id,
                                          variant_id, sku, location, quantity, expires_at)
          SELECT li.reservation_id, o.order_id, li.order_item_id, li.product_id, li.variant_id,
                 li.sku, li.location, li.quantity, o.payment_expires_at
            FROM li, o
        )`,
    select: sql`SELECT o.payment_expires_at AS "paymentExpiresAt", o.total::float8 AS total,
                       li.sku, li.location, li.quantity, li.reservation_id AS "reservationId"
                  FROM o, li ORDER BY li.sku, li.location`,
  };
  type Row = { paymentExpiresAt: string; total: number } & Placed;
  let placed: Row[];
  if ('pick' in how) {
    const line = how.pick;
    const pinned = input.location !== undefined ? sql`AND l.location = ${input.location}` : sql``;
    placed = await applyStockChangesFrom<Row>(
      tx,
      {
        before: sql`pick AS (
          SELECT l.location FROM stock_levels l JOIN locations loc ON loc.code = l.location
           WHERE l.sku = ${line.sku} AND loc.active AND l.stock_quantity - l.reserved_stock >= ${line.quantity} ${pinned}
           ORDER BY loc.priority DESC, l.location LIMIT 1
        ),`,
        select: sql`SELECT ${line.sku}::text AS sku, pick.location, 0 AS stock_delta, ${line.quantity}::int AS reserved_delta,
                           0 AS incoming_delta, 'reserve'::text AS kind, ${orderId}::uuid AS order_id,
                           ${placements[0].reservation_id}::uuid AS reservation_id, NULL::bigint AS transfer_id,
                           NULL::text AS reason, NULL::int AS expected_version, NULL::text AS actor
                      FROM pick`,
      },
      input.actor,
      after,
      { guard: true },
    );
  } else {
    const changes: StockChange[] = placements.map((p) => ({
      sku: p.sku,
      location: p.location!,
      stockDelta: 0,
      reservedDelta: p.quantity,
      kind: 'reserve',
      orderId,
      reservationId: p.reservation_id,
      expectedVersion: how.versions?.get(levelKey({ sku: p.sku, location: p.location! })) ?? null,
    }));
    placed = await applyStockChangesThen<Row>(tx, changes, input.actor, { guard: true, locked: how.locked }, after);
  }
  if (placed.length === 0) return undefined;
  return {
    paymentExpiresAt: placed[0].paymentExpiresAt,
    total: placed[0].total,
    allocations: placed.map((p) => ({ sku: p.sku, location: p.location, quantity: p.quantity, reservationId: p.reservationId })),
  };
}

/** An order's lines with their reservations (the latest reserve's, if a late payment sold them again). */
async function orderItems(tx: Tx, orderId: string): Promise<ReservedItem[]> {
  const items = await rows<Omit<ReservedItem, 'reservation_id'>>(
    tx,
    sql`SELECT i.sku, i.quantity,
               coalesce((SELECT json_agg(json_build_object('location', r.location, 'quantity', r.quantity,
                                                           'reservation_id', r.reservation_id) ORDER BY r.location)
                           FROM stock_reservations r
                          WHERE r.order_item_id = i.order_item_id
                            AND r.reserved_at = (SELECT max(reserved_at) FROM stock_reservations x WHERE x.order_item_id = i.order_item_id)),
                        '[]'::json) AS allocations
          FROM order_items i
         WHERE i.order_id = ${orderId} ORDER BY i.sku`,
  );
  return items.map((i) => ({ sku: i.sku, quantity: i.quantity, reservation_id: i.allocations[0]?.reservation_id, allocations: i.allocations }));
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
  if ((order.location ?? null) !== (input.location ?? null)) differences.push(`location ${shown(order.location)}, not ${shown(input.location)}`);
  // Orders made before locations were recorded have no policy to compare.
  const split = input.split ?? DEFAULT_SPLIT_POLICY;
  if (order.splitPolicy !== null && order.splitPolicy !== split) differences.push(`split policy ${order.splitPolicy}, not ${split}`);
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

