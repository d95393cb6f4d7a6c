/**
 * The order lifecycle: reserve (phase 1), pay and cancel (phase 2), extend. Every
 * function takes the order lock first, so when pay, cancel and sweep race for one
 * order exactly one wins and the others see its result.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import {
  InsufficientStockError,
  NotFoundError,
  RefusedError,
  StockctlError,
  type Shortage,
} from '../errors.js';
import { sqlState } from '../db/errors.js';
import { isUuid, type OrderLine } from './input.js';
import type { Settings } from './settings.js';
import {
  applyStockChanges,
  availableUnits,
  lockStockRows,
  readStockRows,
  rows,
  stockChangeCtes,
  toTextArray,
  type StockChange,
  type StockRow,
  type Tx,
} from './stock.js';
import { convertReservations, expireOrders, releaseReservations } from './release.js';
import { sleep, withConflictRetry } from './retry.js';

export type Strategy = 'guarded' | 'optimistic' | 'locking';
export const STRATEGIES: Strategy[] = ['guarded', 'optimistic', 'locking'];

export interface ReserveInput {
  lines: OrderLine[];
  customerId?: string;
  ref?: string;
  ttlSeconds?: number;
  strategy?: Strategy;
  actor: string;
}

export interface ReservedItem {
  sku: string;
  quantity: number;
  reservation_id: string;
}

export interface ReserveResult {
  order_id: string;
  ref: string | null;
  status: string;
  customer_id: string | null;
  payment_expires_at: string;
  total: number;
  strategy: string;
  attempts: number;
  /** True when --ref named an existing order: nothing more was reserved. */
  replay: boolean;
  items: ReservedItem[];
  /** Stock retries (optimistic) and conflict retries (40001/40P01) this call needed. */
  retries: number;
  /** Expired orders released on the spot so that this reserve could succeed. */
  expired_orders_released: number;
}

/** Thrown by the optimistic strategy when its version retries are used up. */
export class StockConflictError extends StockctlError {
  constructor(skus: string[], attempts: number) {
    super(
      `Could not reserve ${skus.join(', ')}: the stock kept changing under ${attempts} optimistic attempts; try again or use --strategy guarded.`,
      3,
      'stock_conflict',
      { skus, attempts },
    );
  }
}

/** Signals "short of stock" out of the transaction so that it rolls back. */
class Short extends Error {
  constructor(readonly shortages: Shortage[]) {
    super('short');
  }
}
class VersionMoved extends Error {}

const orderByKey = (key: string) => (isUuid(key) ? sql`(order_id = ${key}::uuid OR ref = ${key})` : sql`ref = ${key}`);

interface OrderRow {
  orderId: string;
  ref: string | null;
  customerId: string | null;
  status: string;
  paymentStatus: string;
  paymentExpiresAt: string | null;
  windowPassed: boolean;
  paidAt: string | null;
  cancelledAt: string | null;
  cancelReason: string | null;
  cancelledBy: string | null;
  total: number;
  reserveAttempts: number;
  strategy: string | null;
}

const ORDER_COLUMNS = sql.raw(`order_id AS "orderId", ref, customer_id AS "customerId", status,
  payment_status AS "paymentStatus", payment_expires_at AS "paymentExpiresAt",
  coalesce(payment_expires_at <= now(), false) AS "windowPassed", paid_at AS "paidAt",
  cancelled_at AS "cancelledAt", cancel_reason AS "cancelReason", cancelled_by AS "cancelledBy",
  total::float8 AS total, reserve_attempts AS "reserveAttempts", strategy`);

/** Find an order by id or ref; with `lock`, hold its row until the transaction ends. */
export async function findOrder(tx: Tx, key: string, opts: { lock?: boolean } = {}): Promise<OrderRow> {
  const [order] = await rows<OrderRow>(
    tx,
    sql`SELECT ${ORDER_COLUMNS} FROM orders WHERE ${orderByKey(key)} ${opts.lock ? sql`FOR UPDATE` : sql``}`,
  );
  if (!order) throw new NotFoundError(`No order has id or ref "${key}".`, 'order_not_found', { order: key });
  return order;
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

function sameLines(a: { sku: string; quantity: number }[], b: OrderLine[]): boolean {
  const key = (l: { sku: string; quantity: number }[]) =>
    l.map((x) => `${x.sku}:${x.quantity}`).sort().join(',');
  return key(a) === key(b);
}

/** An existing order under this ref: the same items is a replay (exit 0), others a conflict (exit 5). */
async function replayByRef(db: Db, input: ReserveInput): Promise<ReserveResult | undefined> {
  if (!input.ref) return undefined;
  const [order] = await rows<OrderRow>(db, sql`SELECT ${ORDER_COLUMNS} FROM orders WHERE ref = ${input.ref}`);
  if (!order) return undefined;
  const items = await orderItems(db, order.orderId);
  if (!sameLines(items, input.lines)) {
    throw new RefusedError(
      `Ref "${input.ref}" already names order ${order.orderId} with other items (${items
        .map((i) => `${i.sku}:${i.quantity}`)
        .join(' ')}); use a new ref.`,
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
    total: Number(order.total),
    strategy: order.strategy ?? 'guarded',
    attempts: order.reserveAttempts,
    replay: true,
    items,
    retries: 0,
    expired_orders_released: 0,
  };
}

/** Which requested SKUs do not name a sellable stock row, and why. */
async function explainUnknownSkus(db: Tx, lines: OrderLine[]): Promise<never> {
  const skus = lines.map((l) => l.sku);
  const known = new Set((await readStockRows(db, skus)).map((r) => r.sku));
  const missing = skus.filter((s) => !known.has(s));
  const parents = await rows<{ sku: string }>(
    db,
    sql`SELECT p.sku FROM products p WHERE p.sku = ANY(${toTextArray(missing)})
          AND EXISTS (SELECT 1 FROM product_variants v WHERE v.product_id = p.product_id)`,
  );
  if (parents.length > 0) {
    throw new RefusedError(
      `SKU "${parents[0].sku}" is a product with variants; reserve one of its variant SKUs instead.`,
      'sku_has_variants',
      { sku: parents[0].sku },
    );
  }
  throw new NotFoundError(
    `No stock row has SKU ${missing.map((s) => `"${s}"`).join(', ')}; list them with \`stockctl stock\`.`,
    'sku_not_found',
    { skus: missing },
  );
}

function shortagesOf(lines: OrderLine[], stock: StockRow[]): Shortage[] {
  const bySku = new Map(stock.map((r) => [r.sku, r]));
  return lines
    .map((l) => ({ sku: l.sku, requested: l.quantity, available: Math.max(0, availableUnits(bySku.get(l.sku)!)) }))
    .filter((s) => s.available < s.requested);
}

/** Signals "this attempt changed nothing useful" out of a transaction so that it rolls back. */
class Incomplete extends Error {}

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
 * The reserve statement: the guarded stock update, its ledger rows, the order, its lines
 * and one reservation per line, all in one statement. The order rows are inserted only
 * if every line's update went through, so a single-line order needs no transaction at
 * all and the hot stock row is locked for the duration of one statement.
 */
async function insertReservedOrder(tx: Tx, plan: AttemptPlan, versions?: Map<string, number>) {
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
  const [order] = await rows<{ paymentExpiresAt: string; total: number }>(
    tx,
    sql`WITH ${stockChangeCtes(changes, input.actor, { guard: true })},
        li AS (
          SELECT x.*, d.product_id, d.variant_id, d.name, d.price
            FROM jsonb_to_recordset(${payload}::jsonb)
                 AS x(sku text, quantity int, order_item_id uuid, reservation_id uuid)
            JOIN done d ON d.sku = x.sku
        ), o AS (
          INSERT INTO orders (order_id, ref, customer_id, payment_expires_at, subtotal, total,
                              item_count, reserve_attempts, strategy, created_by)
          SELECT ${orderId}::uuid, ${input.ref ?? null}, ${input.customerId ?? null},
                 now() + make_interval(secs => ${plan.ttlSeconds}),
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
        )
        SELECT payment_expires_at AS "paymentExpiresAt", total::float8 AS total FROM o`,
  );
  return order;
}

/** Do unswept, expired orders still hold units of these SKUs? (One cheap indexed read.) */
async function holdsExpiredReservations(db: Db, skus: string[]): Promise<boolean> {
  const [row] = await rows<{ held: boolean }>(
    db,
    sql`SELECT EXISTS (SELECT 1 FROM stock_reservations
                        WHERE status = 'active' AND expires_at < now() AND sku = ANY(${toTextArray(skus)})) AS held`,
  );
  return row.held;
}

/** Read (or lock) the stock rows first, for the strategies and orders that need it. */
async function checkStock(tx: Tx, lines: OrderLine[], lock: boolean): Promise<StockRow[]> {
  const skus = lines.map((l) => l.sku);
  const stock = lock ? await lockStockRows(tx, skus) : await readStockRows(tx, skus);
  if (stock.length < lines.length) await explainUnknownSkus(tx, lines);
  const shortages = shortagesOf(lines, stock);
  if (shortages.length > 0) throw new Short(shortages);
  return stock;
}

/**
 * One reserve attempt. `guarded` single-line: one statement, no transaction. Multi-line
 * orders and `locking` lock their rows in canonical order first, inside a transaction.
 * `optimistic` reads versions first and applies only if they did not move.
 */
async function attemptReserve(db: Db, plan: AttemptPlan) {
  const { lines, strategy } = plan;
  const locked = strategy === 'locking' || (strategy === 'guarded' && lines.length > 1);
  const run = async (tx: Tx) => {
    let versions: Map<string, number> | undefined;
    if (locked) await checkStock(tx, lines, true);
    else if (strategy === 'optimistic') {
      versions = new Map((await checkStock(tx, lines, false)).map((r) => [r.sku, r.version]));
      // Several rows in one UPDATE are locked in no particular order: take them in the
      // canonical order first (the version check below still decides).
      if (lines.length > 1) await lockStockRows(tx, lines.map((l) => l.sku));
    }
    const order = await insertReservedOrder(tx, plan, versions);
    if (!order && lines.length > 1) throw new Incomplete(); // roll back any line that did apply
    return order;
  };
  try {
    return lines.length > 1 || locked ? await db.transaction(run) : await run(db);
  } catch (err) {
    if (err instanceof Incomplete) return undefined;
    throw err;
  }
}

/**
 * Reserve: the pending order, its lines, one reservation per line and the ledger rows,
 * or nothing at all.
 */
export async function reserveOrder(db: Db, input: ReserveInput, settings: Settings): Promise<ReserveResult> {
  const strategy = input.strategy ?? 'guarded';
  const ttlSeconds = input.ttlSeconds ?? settings.paymentTimeoutMinutes * 60;
  // Canonical line order: the same order the stock rows are locked in.
  const lines = [...input.lines].sort((a, b) => (a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : 0));
  const replay = await replayByRef(db, input);
  if (replay) return replay;

  let retries = 0;
  let expiredReleased = 0;
  let expireRounds = 0;
  for (let attempt = 1; ; attempt++) {
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
    try {
      const created = await withConflictRetry(() => attemptReserve(db, plan), () => retries++);
      if (created) {
        return {
          order_id: plan.orderId,
          ref: input.ref ?? null,
          status: 'pending',
          customer_id: input.customerId ?? null,
          payment_expires_at: new Date(created.paymentExpiresAt).toISOString(),
          total: Number(created.total),
          strategy,
          attempts: attempt,
          replay: false,
          items: lines.map((l, i) => ({ sku: l.sku, quantity: l.quantity, reservation_id: plan.reservationIds[i] })),
          retries,
          expired_orders_released: expiredReleased,
        };
      }
      // Nothing applied: an unknown SKU, a real shortage, or (optimistic) a moved version.
      await checkStock(db, lines, false);
      if (strategy === 'optimistic') throw new VersionMoved();
      // Guarded: the stock came back between our update and this read; simply go again.
      if (++retries > 100) throw new Error(`reserve of ${lines.map((l) => l.sku).join(', ')} made no progress after 100 attempts`);
      attempt--;
    } catch (err) {
      if (err instanceof Short) {
        // An expired reservation never makes a reserve fail: release unswept expired
        // holders of the short SKUs (as the sweep would) and try again. If another
        // process is expiring them right now (SKIP LOCKED gave us none), wait for it.
        const skus = err.shortages.map((s) => s.sku);
        if (expireRounds < 50 && (await holdsExpiredReservations(db, skus))) {
          expireRounds++;
          const expired = await withConflictRetry(() =>
            db.transaction((tx) => expireOrders(tx, { due: { limit: 1000, skus } }, input.actor)),
          );
          expiredReleased += expired.orderIds.length;
          if (expired.orderIds.length === 0) await sleep(5 + Math.random() * 10);
          attempt--; // not a stock retry
          continue;
        }
        // Another buyer may have just expired the holders and freed the units: only a
        // shortage that is still there now is reported.
        if (expireRounds < 50) {
          expireRounds++;
          try {
            await checkStock(db, lines, false);
          } catch (again) {
            if (again instanceof Short) throw new InsufficientStockError(again.shortages);
            throw again;
          }
          attempt--;
          continue;
        }
        throw new InsufficientStockError(err.shortages);
      }
      if (err instanceof VersionMoved) {
        retries++;
        if (attempt >= settings.maxStockRetryAttempts) throw new StockConflictError(lines.map((l) => l.sku), attempt);
        await sleep(settings.stockRetryBackoffMs * attempt);
        continue;
      }
      if (sqlState(err) === '23505' && input.ref) {
        // Another process created this ref between our check and our insert.
        const again = await replayByRef(db, input);
        if (again) return again;
      }
      throw err;
    }
  }
}

export interface PayInput {
  order: string;
  paymentRef?: string;
  allowLate?: boolean;
  actor: string;
}

export interface PayResult {
  order_id: string;
  ref: string | null;
  status: 'paid';
  paid_at: string;
  payment_ref: string | null;
  replay: boolean;
  late: boolean;
  units_sold: number;
}

/**
 * Pay: lock the order, convert its reservations to sales. A pay after the window expires
 * the order on the spot (committed), then refuses; with allowLate it sells if it can.
 */
export async function payOrder(db: Db, input: PayInput): Promise<PayResult> {
  let refusal: StockctlError | undefined;
  const result = await withConflictRetry(() =>
    db.transaction(async (tx): Promise<PayResult | undefined> => {
      refusal = undefined;
      const order = await findOrder(tx, input.order, { lock: true });
      const done = (late: boolean, units: number, replay = false, paidAt?: string | null, paymentRef?: string | null) => ({
        order_id: order.orderId,
        ref: order.ref,
        status: 'paid' as const,
        paid_at: new Date(paidAt ?? Date.now()).toISOString(),
        payment_ref: paymentRef ?? input.paymentRef ?? null,
        replay,
        late,
        units_sold: units,
      });
      if (order.status === 'paid' || order.paymentStatus === 'paid') {
        const [p] = await rows<{ paidAt: string; paymentRef: string | null }>(
          tx,
          sql`SELECT paid_at AS "paidAt", payment_ref AS "paymentRef" FROM orders WHERE order_id = ${order.orderId}`,
        );
        return done(false, 0, true, p.paidAt, p.paymentRef);
      }
      let late = false;
      let units = 0;
      if (order.status === 'pending' && !order.windowPassed) {
        units = sumUnits(await convertReservations(tx, order.orderId, input.actor, input.paymentRef ?? null));
      } else if (order.status === 'pending' && input.allowLate) {
        // Unswept but late: its units are still held, so the sale can go through.
        late = true;
        units = sumUnits(await convertReservations(tx, order.orderId, input.actor, 'late payment'));
      } else if (order.status === 'pending') {
        await expireOrders(tx, { orderIds: [order.orderId] }, input.actor);
        refusal = new RefusedError(
          `Order ${order.orderId} missed its payment window (expired at ${new Date(order.paymentExpiresAt!).toISOString()}); its stock was released. Use --allow-late to sell it anyway if stock remains.`,
          'payment_window_expired',
          { order_id: order.orderId },
        );
        return undefined;
      } else if (order.status === 'cancelled' && order.paymentStatus === 'expired' && input.allowLate) {
        late = true;
        units = await resellExpiredOrder(tx, order.orderId, input.actor);
      } else if (order.status === 'cancelled') {
        const why = order.paymentStatus === 'expired' ? 'expired unpaid (use --allow-late to sell it anyway if stock remains)' : `was cancelled${order.cancelReason ? ` (${order.cancelReason})` : ''}`;
        throw new RefusedError(`Order ${order.orderId} ${why}; it cannot be paid.`, 'order_cancelled', {
          order_id: order.orderId,
        });
      } else {
        throw new RefusedError(`Order ${order.orderId} is ${order.status}; it cannot be paid.`, 'order_state', {
          order_id: order.orderId,
        });
      }
      const [paid] = await rows<{ paidAt: string }>(
        tx,
        sql`UPDATE orders SET status = 'paid', payment_status = 'paid', paid_at = now(), payment_expires_at = NULL,
                   payment_ref = ${input.paymentRef ?? null}, cancelled_at = NULL, cancel_reason = NULL,
                   cancelled_by = NULL, updated_at = now(),
                   admin_notes = CASE WHEN ${late} THEN concat_ws(E'\n', admin_notes, 'Late payment accepted') ELSE admin_notes END
             WHERE order_id = ${order.orderId} RETURNING paid_at AS "paidAt"`,
      );
      return done(late, units, false, paid.paidAt);
    }),
  );
  if (refusal) throw refusal;
  return result!;
}

const sumUnits = (rs: { quantity: number }[]) => rs.reduce((n, r) => n + r.quantity, 0);

/** A late payment on an already expired order: sell its lines again if stock allows, else exit 3. */
async function resellExpiredOrder(tx: Tx, orderId: string, actor: string): Promise<number> {
  const items = await rows<{ orderItemId: string; sku: string; quantity: number; productId: string; variantId: string | null }>(
    tx,
    sql`SELECT order_item_id AS "orderItemId", sku, quantity, product_id AS "productId", variant_id AS "variantId"
          FROM order_items WHERE order_id = ${orderId} ORDER BY sku`,
  );
  const lines = items.map((i) => ({ sku: i.sku, quantity: i.quantity }));
  const stock = await lockStockRows(tx, lines.map((l) => l.sku));
  const shortages = shortagesOf(lines, stock);
  if (shortages.length > 0) throw new InsufficientStockError(shortages);
  const reservationIds = items.map(() => randomUUID());
  await tx.execute(sql`INSERT INTO stock_reservations (reservation_id, order_id, order_item_id, product_id, variant_id, sku, quantity, expires_at, status)
    SELECT x.reservation_id, ${orderId}::uuid, x.order_item_id, x.product_id, x.variant_id, x.sku, x.quantity, now(), 'converted'
      FROM jsonb_to_recordset(${JSON.stringify(
        items.map((i, n) => ({ reservation_id: reservationIds[n], order_item_id: i.orderItemId, product_id: i.productId, variant_id: i.variantId, sku: i.sku, quantity: i.quantity })),
      )}::jsonb) AS x(reservation_id uuid, order_item_id uuid, product_id uuid, variant_id uuid, sku text, quantity int)`);
  await applyStockChanges(
    tx,
    items.map((i, n) => ({ sku: i.sku, stockDelta: -i.quantity, reservedDelta: 0, kind: 'sale', orderId, reservationId: reservationIds[n], reason: 'late payment' })),
    actor,
  );
  return sumUnits(items);
}

export interface CancelInput {
  order: string;
  reason?: string;
  restock?: boolean;
  dryRun?: boolean;
  actor: string;
}

export interface CancelResult {
  order_id: string;
  ref: string | null;
  /** cancelled | already_cancelled | would_cancel | restocked | would_restock */
  outcome: string;
  previous_status: string;
  released_units: number;
  restocked_units: number;
}

/** Cancel by hand: release a pending order's stock; a paid one only with restock. */
export async function cancelOrder(db: Db, input: CancelInput): Promise<CancelResult> {
  return withConflictRetry(() =>
    db.transaction(async (tx) => {
      const order = await findOrder(tx, input.order, { lock: !input.dryRun });
      const base = { order_id: order.orderId, ref: order.ref, previous_status: order.status, released_units: 0, restocked_units: 0 };
      if (order.status === 'cancelled') return { ...base, outcome: 'already_cancelled' };
      if (order.status === 'pending') {
        if (input.dryRun) {
          const [held] = await rows<{ units: number }>(
            tx,
            sql`SELECT coalesce(sum(quantity), 0)::int AS units FROM stock_reservations WHERE order_id = ${order.orderId} AND status = 'active'`,
          );
          return { ...base, outcome: 'would_cancel', released_units: held.units };
        }
        const released = await releaseReservations(tx, [order.orderId], {
          status: 'cancelled',
          kind: 'release',
          reason: input.reason ?? 'cancelled by hand',
          actor: input.actor,
        });
        await markCancelled(tx, order.orderId, input, 'void');
        return { ...base, outcome: 'cancelled', released_units: sumUnits(released) };
      }
      if (order.status === 'paid' && input.restock) {
        const sold = await rows<{ sku: string; quantity: number; reservationId: string }>(
          tx,
          sql`SELECT sku, quantity, reservation_id AS "reservationId" FROM stock_reservations
               WHERE order_id = ${order.orderId} AND status = 'converted' ORDER BY sku`,
        );
        if (input.dryRun) return { ...base, outcome: 'would_restock', restocked_units: sumUnits(sold) };
        if (new Set(sold.map((s) => s.sku)).size > 1) await lockStockRows(tx, sold.map((s) => s.sku));
        await applyStockChanges(
          tx,
          sold.map((s) => ({ sku: s.sku, stockDelta: s.quantity, reservedDelta: 0, kind: 'restock', orderId: order.orderId, reservationId: s.reservationId, reason: input.reason ?? 'restocked on cancel' })),
          input.actor,
        );
        await markCancelled(tx, order.orderId, input, 'refunded');
        return { ...base, outcome: 'restocked', restocked_units: sumUnits(sold) };
      }
      throw new RefusedError(
        order.status === 'paid'
          ? `Order ${order.orderId} is paid; add --restock to cancel it and put its units back on hand.`
          : `Order ${order.orderId} is ${order.status}; it cannot be cancelled.`,
        'order_paid',
        { order_id: order.orderId },
      );
    }),
  );
}

async function markCancelled(tx: Tx, orderId: string, input: CancelInput, paymentStatus: 'void' | 'refunded') {
  await tx.execute(
    sql`UPDATE orders SET status = 'cancelled', payment_status = ${paymentStatus}, cancelled_at = now(),
               cancel_reason = ${input.reason ?? null}, cancelled_by = ${input.actor}, updated_at = now()
         WHERE order_id = ${orderId}`,
  );
}

export interface ExtendResult {
  order_id: string;
  ref: string | null;
  payment_expires_at: string;
  reservations_extended: number;
}

/** Give a pending order more time: its window and its active reservations move together. */
export async function extendOrder(db: Db, input: { order: string; ttlSeconds: number; actor: string }): Promise<ExtendResult> {
  return withConflictRetry(() =>
    db.transaction(async (tx) => {
      const order = await findOrder(tx, input.order, { lock: true });
      if (order.status !== 'pending') {
        throw new RefusedError(`Order ${order.orderId} is ${order.status}; only pending orders can be extended.`, 'order_state', {
          order_id: order.orderId,
        });
      }
      if (order.windowPassed) {
        throw new RefusedError(
          `Order ${order.orderId} already missed its payment window; it can no longer be extended.`,
          'payment_window_expired',
          { order_id: order.orderId },
        );
      }
      const [updated] = await rows<{ expiresAt: string }>(
        tx,
        sql`UPDATE orders SET payment_expires_at = now() + make_interval(secs => ${input.ttlSeconds}), updated_at = now(),
                   admin_notes = concat_ws(E'\n', admin_notes, ${`Extended by ${input.actor}`}::text)
             WHERE order_id = ${order.orderId} RETURNING payment_expires_at AS "expiresAt"`,
      );
      const moved = await rows<{ id: string }>(
        tx,
        sql`UPDATE stock_reservations SET expires_at = ${updated.expiresAt}::timestamptz, updated_at = now()
             WHERE order_id = ${order.orderId} AND status = 'active' RETURNING reservation_id AS id`,
      );
      return {
        order_id: order.orderId,
        ref: order.ref,
        payment_expires_at: new Date(updated.expiresAt).toISOString(),
        reservations_extended: moved.length,
      };
    }),
  );
}

