/**
 * The `batched` strategy. A hot stock row is locked from its UPDATE to
 * its commit, so one buyer per statement caps a flash sale at one commit per buyer. Here
 * the single-line reservations that arrive while a batch is in flight wait, and go
 * together as the next batch: one statement locks its rows (in SKU order) and writes all
 * of their orders. No timer: a lone buyer goes alone at once, as `guarded` would. A pool
 * has BATCH_LANES batchers, each with a connection of its own, and a SKU always uses the
 * same one.
 *
 * Each buyer still gets its own answer, in arrival order: an order of its own, or a
 * refusal naming the shortage when the units left after the buyers before it are fewer
 * than it asked for. A batch that fails for an unexpected reason is retried buyer by
 * buyer, so one bad request never fails the others.
 *
 * A stock row that another session holds (a pay, a `stock adjust`, another process's
 * batch) never holds up the other SKUs of the lane: the lane's batches pass over it
 * (SKIP LOCKED), and its buyers wait for it apart, on the pool, up to the lock deadline.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { batchConnection, type Db } from '../../db/client.js';
import { isWaitForSlot, refusedByServer } from '../../db/errors.js';
import { array, rows, type Tx } from '../../db/query.js';
import { InsufficientStockError } from '../../errors.js';
import { reserveAlone } from './alone.js';
import { holdsExpiredReservations, type ReserveInput, type ReserveResult } from './shared.js';
import { withConflictRetry } from '../retry.js';
import type { Settings } from '../settings.js';
import { applyStockChangesFrom } from '../stock.js';
import { DEFAULT_SPLIT_POLICY } from '../names.js';

/** The most buyers one statement carries; the rest wait for the next batch. */
export const MAX_BATCH = 128;

/**
 * Batches in flight at once per pool, each on a connection of its own, a SKU always on the
 * same one (so its buyers keep their arrival order, and a hot SKU is one lane's). Over
 * 1000 SKUs two lanes reach about 1.3x one (the server's second core does the other
 * batch); three were slower than two on this 2-core machine.
 */
export const BATCH_LANES = 2;

interface Waiting {
  input: ReserveInput;
  settings: Settings;
  /** When it came, counted per lane: buyers set aside keep their order. */
  arrival: number;
  resolve(result: ReserveResult): void;
  reject(err: unknown): void;
}

const skuOf = (w: Waiting) => w.input.lines[0].sku;

/**
 * How a batch takes its stock rows. `skip`, in the lane: a row that another session holds
 * is passed over (SKIP LOCKED) and its buyers set aside, so that it never holds up the
 * other SKUs of the lane. `wait`, set aside: the buyers of that one SKU wait for its row,
 * up to the lock deadline (then each gets the lock-timeout error).
 */
type LockMode = 'skip' | 'wait';

/** One batcher per lane of a pool: its queue, and whether a batch is in flight. */
class Batcher {
  private readonly queue: Waiting[] = [];
  private inFlight = false;
  private arrivals = 0;
  /** False once the server refused this lane its connection: batches then use the pool. */
  private ownConnection = true;
  /**
   * SKUs whose row another session held when a batch came to it, each with its buyers in
   * arrival order. They wait for the row on the pool, apart from the lane; a new buyer of
   * such a SKU joins them, and once none is left the SKU is back in the lane.
   */
  private readonly aside = new Map<string, Waiting[]>();

  constructor(
    private readonly db: Db,
    private readonly laneNumber: number,
  ) {}

  /** Where batches run: this lane's connection (see batchConnection), unless it was refused. */
  private connection(): Tx {
    return this.ownConnection ? batchConnection(this.db, this.laneNumber) : this.db;
  }

  private laneRefused(err: unknown): boolean {
    if (!this.ownConnection || !isWaitForSlot(err)) return false;
    this.ownConnection = false;
    return true;
  }

  submit(input: ReserveInput, settings: Settings): Promise<ReserveResult> {
    return new Promise((resolve, reject) => {
      const w: Waiting = { input, settings, arrival: this.arrivals++, resolve, reject };
      const waiting = this.aside.get(skuOf(w));
      if (waiting) return void waiting.push(w);
      this.queue.push(w);
      this.pump();
    });
  }

  private pump(): void {
    if (this.inFlight || this.queue.length === 0) return;
    this.inFlight = true;
    const batch = this.queue.splice(0, MAX_BATCH);
    void this.run(batch, 'skip').finally(() => {
      this.inFlight = false;
      this.pump();
    });
  }

  /** A batch: in the lane (`skip`), or the buyers of one SKU set aside (`wait`). Never throws. */
  private async run(batch: Waiting[], mode: LockMode): Promise<void> {
    // A ref already used (one query for the batch), or twice in this batch: the order is
    // made once, and the others go alone after it, where they replay it (or conflict).
    // A lone buyer set aside goes alone, which looks its ref up itself.
    const refs = batch.flatMap((w) => (w.input.ref ? [w.input.ref] : []));
    let seen: Set<string>;
    try {
      seen = new Set(refs.length > 0 && (batch.length > 1 || mode === 'skip') ? await usedRefs(this.db, refs) : []);
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    const now: Waiting[] = [];
    const after: Waiting[] = [];
    for (const w of batch) {
      if (w.input.ref && seen.has(w.input.ref)) after.push(w);
      else {
        if (w.input.ref) seen.add(w.input.ref);
        now.push(w);
      }
    }
    if (now.length === 1 && mode === 'wait') await settle(now[0], () => reserveAlone(this.db, now[0].input, now[0].settings));
    else if (now.length > 0) await this.together(now, mode, after);
    await Promise.all(after.map((w) => settle(w, () => reserveAlone(this.db, w.input, w.settings))));
  }

  /**
   * Several buyers in one statement (or a lone one in the lane, which must not wait for a
   * row either); anything unexpected sends each one alone. Buyers of a row held elsewhere
   * are set aside, and so are those of `after` that follow them.
   */
  private async together(batch: Waiting[], mode: LockMode, after: Waiting[]): Promise<void> {
    // A lone buyer goes on the pool: a single CLI `reserve` opens no lane connection.
    const on = () => (mode === 'wait' || batch.length === 1 ? this.db : this.connection());
    let outcome: BatchOutcome;
    try {
      outcome = await withConflictRetry(() => reserveTogether(on(), batch, mode));
    } catch (err) {
      // The lane's connection could not be opened (a full server): nothing was sent, and
      // this lane's batches go through the pool from now on.
      if (this.laneRefused(err)) return this.together(batch, mode, after);
      // Only a statement the server refused is known to have written nothing: then each
      // buyer tries alone. A lost connection or a timeout may have committed the batch, and
      // trying again would reserve twice for buyers without a ref: they all get the error.
      if (!refusedByServer(err)) {
        for (const w of batch) w.reject(err);
        return;
      }
      await Promise.all(batch.map((w) => this.alone(w, mode, after, batch.length)));
      return;
    }
    const held = batch.filter((_, i) => 'held' in outcome[i]);
    if (held.length > 0) this.setAside(held, after);
    // Whether expired orders still hold a short SKU: asked once per SKU, not per buyer
    // (in a sold-out flash sale nearly every buyer of a batch is short).
    const expiredHolds = new Map<string, Promise<boolean>>();
    const holdsExpired = (sku: string) => {
      let holds = expiredHolds.get(sku);
      if (!holds) expiredHolds.set(sku, (holds = holdsExpiredReservations(this.db, [sku])));
      return holds;
    };
    await Promise.all(
      batch.map((w, i) => {
        const result = outcome[i];
        if ('held' in result) return;
        if ('created' in result) return w.resolve(result.created);
        // Not served by this batch: an unknown SKU (its own error), or a shortage that
        // an expired holder may be keeping, or that another buyer may have ended since:
        // the buyer tries alone, which sorts out each case as `guarded` does.
        if ('alone' in result) return this.alone(w, mode, after, batch.length);
        return settle(w, async () => {
          if (await holdsExpired(result.short.sku)) return reserveAlone(this.db, w.input, w.settings);
          throw new InsufficientStockError([result.short]);
        });
      }),
    );
  }

  /**
   * One buyer of a batch of `size` on its own. In the lane, as a batch of one, which passes
   * over a held row too; a lone buyer, or one set aside, as `guarded` (and its own error).
   */
  private alone(w: Waiting, mode: LockMode, after: Waiting[], size: number): Promise<void> {
    if (mode === 'skip' && size > 1) return this.together([w], mode, after);
    return settle(w, () => reserveAlone(this.db, w.input, w.settings));
  }

  /**
   * Buyers whose stock row another session holds: they, the buyers of their SKUs in
   * `after` and in the lane's queue (all of which came later), wait for it apart.
   */
  private setAside(held: Waiting[], after: Waiting[]): void {
    const skus = new Set(held.map(skuOf));
    const takeFrom = (list: Waiting[]) => {
      const taken = list.filter((w) => skus.has(skuOf(w)));
      if (taken.length > 0) list.splice(0, list.length, ...list.filter((w) => !skus.has(skuOf(w))));
      return taken;
    };
    const moving = [...held, ...takeFrom(after), ...takeFrom(this.queue)].sort((a, b) => a.arrival - b.arrival);
    for (const sku of skus) {
      const buyers = moving.filter((w) => skuOf(w) === sku);
      const waiting = this.aside.get(sku);
      if (waiting) waiting.push(...buyers);
      else {
        this.aside.set(sku, buyers);
        void this.drainAside(sku, buyers);
      }
    }
  }

  /** The buyers of a SKU set aside, batch after batch in arrival order; then the SKU is back in the lane. */
  private async drainAside(sku: string, waiting: Waiting[]): Promise<void> {
    while (waiting.length > 0) await this.run(waiting.splice(0, MAX_BATCH), 'wait');
    this.aside.delete(sku);
  }
}

/** Which of these refs already name an order. */
async function usedRefs(db: Db, refs: string[]): Promise<string[]> {
  const found = await rows<{ ref: string }>(db, sql`SELECT ref FROM orders WHERE ref = ANY(${array(refs)}::text[])`);
  return found.map((r) => r.ref);
}

async function settle(w: Waiting, work: () => Promise<ReserveResult>): Promise<void> {
  try {
    w.resolve(await work());
  } catch (err) {
    w.reject(err);
  }
}

type BatchOutcome = (
  | { created: ReserveResult }
  | { short: { sku: string; requested: number; available: number } }
  | { alone: true }
  /** Its stock row was held by another session (`skip` only): set aside. */
  | { held: true }
)[];

/**
 * The batch as one statement: lock its stock rows in the canonical order (products, then
 * variants, each by SKU), serve its buyers in arrival order while the units last
 * (a running sum per SKU), and write every served buyer's order, line, reservation and
 * ledger row. The lock is held for that one statement only; with `skip`, a row another
 * session holds is not waited for, and its buyers come back `held`. What the statement did
 * not serve is sorted out here, buyer by buyer, in arrival order: a buyer that still fits
 * the units left after the buyers before it (one came after a larger buyer who did not
 * fit) goes alone; the others are refused with what was left for them.
 */
async function reserveTogether(db: Tx, batch: Waiting[], mode: LockMode): Promise<BatchOutcome> {
  const lines = batch.map((w) => w.input.lines[0]);
  const buyers = batch.map(({ input, settings }, seq) => ({
    seq,
    order_id: randomUUID(),
    ref: input.ref ?? null,
    customer_id: input.customerId ?? null,
    ttl: input.ttlSeconds ?? settings.paymentTimeoutMinutes * 60,
    payment_method: input.paymentMethod ?? null,
    priority: input.priority ?? null,
    split: input.split ?? DEFAULT_SPLIT_POLICY,
    actor: input.actor,
    sku: lines[seq].sku,
    quantity: lines[seq].quantity,
    order_item_id: randomUUID(),
    reservation_id: randomUUID(),
  }));
  // OF l: the levels only, never a location's row (another lane, or `location set`, would wait on it).
  const lock = sql.raw(mode === 'skip' ? 'FOR NO KEY UPDATE OF l SKIP LOCKED' : 'FOR NO KEY UPDATE OF l');
  const result = await applyStockChangesFrom<{
    seq: number;
    avail: number | null;
    held: boolean;
    paymentExpiresAt: string | null;
    total: number | null;
    location: string | null;
  }>(
    db,
    {
      before: sql`req AS (
          SELECT * FROM jsonb_to_recordset(${JSON.stringify(buyers)}::jsonb)
                 AS x(seq int, order_id uuid, ref text, customer_id text, ttl int, payment_method text,
                      priority text, split text, actor text, sku text, quantity int, order_item_id uuid, reservation_id uuid)
          LIMIT ${sql.raw(String(rowsAtMost(batch.length)))}
        ), lk AS (
          -- The SKUs' levels at active locations, locked in the canonical order.
          SELECT l.sku, l.location, greatest(l.stock_quantity - l.reserved_stock, 0) AS avail, loc.priority
            FROM stock_levels l JOIN locations loc ON loc.code = l.location
           WHERE l.sku IN (SELECT sku FROM req) AND loc.active
           ORDER BY l.sku, l.location ${lock}
        ), cap AS (
          -- Each level's units as a stretch of the SKU's, highest priority first.
          SELECT lk.*, sum(avail) OVER (PARTITION BY sku ORDER BY priority DESC, location) AS cap_upto FROM lk
        ), stock AS (
          SELECT sku, sum(avail)::int AS avail, count(*) AS levels,
                 (SELECT count(*) FROM stock_levels l JOIN locations loc ON loc.code = l.location
                   WHERE l.sku = lk.sku AND loc.active) AS active_levels
            FROM lk GROUP BY sku
        ), cum AS (
          SELECT req.*, sum(quantity) OVER (PARTITION BY sku ORDER BY seq) AS upto FROM req
        ), served AS (
          -- A buyer whose units fall within one level's stretch is served there.
          SELECT cum.*, cap.location FROM cum JOIN cap USING (sku)
           WHERE cum.upto <= cap.cap_upto AND cum.upto - cum.quantity >= cap.cap_upto - cap.avail
        ),`,
      select: sql`SELECT sku, location, 0 AS stock_delta, quantity AS reserved_delta, 0 AS incoming_delta, 'reserve' AS kind,
                         order_id, reservation_id, NULL::bigint AS transfer_id, NULL::text AS reason,
                         NULL::int AS expected_version, actor
                    FROM served`,
    },
    batch[0].input.actor,
    {
      with: sql`, li AS (
          SELECT s.*, d.product_id, d.variant_id, d.name, d.price FROM served s JOIN done d ON d.sku = s.sku AND d.location = s.location
        ), o AS (
          INSERT INTO orders (order_id, ref, customer_id, payment_expires_at, payment_method,
                              payment_window_seconds, priority, split_policy, subtotal, total,
                              item_count, reserve_attempts, strategy, created_by)
          SELECT order_id, ref, customer_id, now() + make_interval(secs => ttl), payment_method, ttl, priority, split,
                 price::bigint * quantity, price::bigint * quantity, quantity, 1, 'batched', actor
            FROM li
          RETURNING order_id, payment_expires_at, total
        ), i AS (
          INSERT INTO order_items (order_item_id, order_id, product_id, variant_id, sku, name,
                                   unit_price, quantity, line_total)
          SELECT order_item_id, order_id, product_id, variant_id, sku, name, price, quantity, price::bigint * quantity
            FROM li
        ), r AS (
          INSERT INTO stock_reservations (reservation_id, order_id, order_item_id, product_id,
                                          variant_id, sku, location, quantity, expires_at)
          SELECT li.reservation_id, li.order_id, li.order_item_id, li.product_id, li.variant_id,
                 li.sku, li.location, li.quantity, o.payment_expires_at
            FROM li JOIN o USING (order_id)
        )`,
      // No level locked for a buyer: an unknown SKU, one with nothing at an active location,
      // or (SKIP LOCKED) levels held elsewhere. A SKU some of whose levels another session
      // holds is held as a whole: what the batch saw of it is not all it has.
      select: sql`SELECT c.seq, st.avail,
                         CASE WHEN st.avail IS NULL THEN EXISTS (SELECT 1 FROM stock_levels l WHERE l.sku = c.sku)
                              ELSE st.levels < st.active_levels END AS held,
                         o.payment_expires_at AS "paymentExpiresAt", o.total::float8 AS total, li.location
                    FROM cum c LEFT JOIN stock st USING (sku) LEFT JOIN o USING (order_id) LEFT JOIN li USING (order_id)
                   ORDER BY c.seq`,
    },
  );
  const left = new Map<string, number>();
  return result.map((row): BatchOutcome[number] => {
    const buyer = buyers[row.seq];
    if (row.held && mode === 'skip' && row.paymentExpiresAt === null) return { held: true };
    if (row.avail === null) return { alone: true }; // no such stock row: its own error, alone
    const units = left.get(buyer.sku) ?? row.avail;
    if (row.paymentExpiresAt !== null) {
      left.set(buyer.sku, units - buyer.quantity);
      return {
        created: {
          order_id: buyer.order_id,
          ref: buyer.ref,
          status: 'pending',
          customer_id: buyer.customer_id,
          payment_expires_at: new Date(row.paymentExpiresAt).toISOString(),
          payment_method: buyer.payment_method,
          payment_window_seconds: buyer.ttl,
          priority: buyer.priority,
          total: Number(row.total),
          strategy: 'batched',
          attempts: 1,
          replay: false,
          items: [
            {
              sku: buyer.sku,
              quantity: buyer.quantity,
              reservation_id: buyer.reservation_id,
              allocations: [{ location: row.location!, quantity: buyer.quantity, reservation_id: buyer.reservation_id }],
            },
          ],
          retries: 0,
          expired_orders_released: 0,
        },
      };
    }
    if (buyer.quantity <= units) {
      left.set(buyer.sku, units - buyer.quantity);
      return { alone: true };
    }
    return { short: { sku: buyer.sku, requested: buyer.quantity, available: Math.max(0, units) } };
  });
}

/**
 * The batch's size rounded up to a power of two, as a literal LIMIT: it tells the planner
 * about how many buyers come (a function's default estimate is 100 rows), so that a small
 * batch looks its stock rows up by index instead of scanning the catalogue, while the
 * statement keeps one of a few texts (each prepared once per connection).
 */
function rowsAtMost(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)));
}

/** A SKU's lane: a string hash (Java's), so that a SKU always goes the same way. */
export function laneOf(sku: string): number {
  let hash = 0;
  for (let i = 0; i < sku.length; i++) hash = (hash * 31 + sku.charCodeAt(i)) | 0;
  return Math.abs(hash) % BATCH_LANES;
}

const batchers = new WeakMap<Db, Batcher[]>();

/** Reserve a single-line order with the `batched` strategy, on this pool's batcher. */
export async function reserveBatched(db: Db, input: ReserveInput, settings: Settings): Promise<ReserveResult> {
  let lanes = batchers.get(db);
  if (!lanes) batchers.set(db, (lanes = Array.from({ length: BATCH_LANES }, (_, lane) => new Batcher(db, lane))));
  return lanes[laneOf(input.lines[0].sku)].submit(input, settings);
}
