/**
 * Every invariant between counters, reservations, transfers, orders and the ledger, checked
 * with SQL against the whole database (or the SKUs under a prefix, for the loadtest), at
 * every level (a SKU at a location) and for the totals. Each problem names its SKU (and
 * location, when there are several) or order.
 */
import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { array, execute, likePrefix, rows, transaction, type Tx } from '../db/query.js';
import { severalLocations } from './locations.js';
import { applyStockChanges, lockLevels } from './stock.js';

export interface Violation {
  kind: string;
  sku?: string;
  /** The level's location, when there are several. */
  location?: string;
  order_id?: string;
  message: string;
  /** `reservations_exceed_on_hand`: the orders holding the SKU, oldest first (at most HOLDERS_LISTED). */
  holders?: Holder[];
}

/** An order holding units of a SKU through its active reservations. */
export interface Holder {
  order_id: string;
  ref: string | null;
  quantity: number;
}

/** Holders listed per SKU in `--json`; the message names the first HOLDERS_NAMED. */
const HOLDERS_LISTED = 1000;
const HOLDERS_NAMED = 5;

/** One level's counters beside what its reservations, transfers and ledger say. */
export interface StockAudit {
  sku: string;
  location: string;
  stock_quantity: number;
  reserved_stock: number;
  incoming: number;
  active_reserved: number;
  in_transit: number;
  ledger_reserved: number;
  ledger_stock: number;
  ledger_incoming: number;
}

/** Every level (of the SKUs under a prefix), in the canonical order. */
export async function auditStock(db: Db | Tx, skuPrefix?: string, location?: string): Promise<StockAudit[]> {
  const filter = sql`WHERE true ${skuPrefix ? sql`AND s.sku LIKE ${likePrefix(skuPrefix)}` : sql``} ${location !== undefined ? sql`AND s.location = ${location}` : sql``}`;
  return rows<StockAudit>(
    db,
    sql`SELECT s.sku, s.location, s.stock_quantity, s.reserved_stock, s.incoming,
               coalesce((SELECT sum(quantity) FROM stock_reservations r
                          WHERE r.sku = s.sku AND r.location = s.location AND r.status = 'active'), 0)::int AS active_reserved,
               coalesce((SELECT sum(quantity) FROM transfers t
                          WHERE t.sku = s.sku AND t.to_location = s.location AND t.status = 'in_transit'), 0)::int AS in_transit,
               coalesce(m.reserved, 0)::int AS ledger_reserved, coalesce(m.stock, 0)::int AS ledger_stock,
               coalesce(m.incoming, 0)::int AS ledger_incoming
          FROM stock_levels s
          LEFT JOIN LATERAL (SELECT sum(reserved_delta) AS reserved, sum(stock_delta) AS stock, sum(incoming_delta) AS incoming
                               FROM stock_movements m WHERE m.sku = s.sku AND m.location = s.location) m ON true
          ${filter}
         ORDER BY s.sku, s.location`,
  );
}

/**
 * Units the ledger, reservations or transfers put at a location where the SKU has no level
 * at all: nothing else would ever look at them.
 */
async function strayUnits(db: Db | Tx, skuPrefix?: string): Promise<{ sku: string; location: string; what: string }[]> {
  const prefix = (column: string) => (skuPrefix ? sql`AND ${sql.raw(column)} LIKE ${likePrefix(skuPrefix)}` : sql``);
  return rows(
    db,
    sql`SELECT sku, location, string_agg(what, ', ' ORDER BY what) AS what FROM (
          SELECT m.sku, m.location, 'ledger rows' AS what FROM stock_movements m
           WHERE NOT EXISTS (SELECT 1 FROM stock_levels l WHERE l.sku = m.sku AND l.location = m.location) ${prefix('m.sku')}
           GROUP BY m.sku, m.location
          HAVING sum(m.stock_delta) <> 0 OR sum(m.reserved_delta) <> 0 OR sum(m.incoming_delta) <> 0
          UNION ALL
          SELECT r.sku, r.location, 'active reservations' FROM stock_reservations r
           WHERE r.status = 'active' AND NOT EXISTS (SELECT 1 FROM stock_levels l WHERE l.sku = r.sku AND l.location = r.location) ${prefix('r.sku')}
           GROUP BY r.sku, r.location
          UNION ALL
          SELECT t.sku, t.to_location, 'transfers in transit' FROM transfers t
           WHERE t.status = 'in_transit' AND NOT EXISTS (SELECT 1 FROM stock_levels l WHERE l.sku = t.sku AND l.location = t.to_location) ${prefix('t.sku')}
           GROUP BY t.sku, t.to_location) x
         GROUP BY sku, location ORDER BY sku, location`,
  );
}

/**
 * The orders holding these SKUs through active reservations, oldest first, and how many
 * orders hold each SKU in all.
 */
async function holdersOf(db: Db | Tx, skus: string[]): Promise<Map<string, { holders: Holder[]; total: number }>> {
  const bySku = new Map<string, { holders: Holder[]; total: number }>();
  if (skus.length === 0) return bySku;
  const found = await rows<Holder & { sku: string; total: number }>(
    db,
    sql`SELECT sku, order_id, ref, quantity, total FROM (
          SELECT r.sku, r.order_id, o.ref, sum(r.quantity)::int AS quantity,
                 count(*) OVER (PARTITION BY r.sku)::int AS total,
                 row_number() OVER (PARTITION BY r.sku ORDER BY min(r.reserved_at), r.order_id) AS n
            FROM stock_reservations r JOIN orders o ON o.order_id = r.order_id
           WHERE r.status = 'active' AND r.sku = ANY(${array(skus)}::text[])
           GROUP BY r.sku, r.order_id, o.ref) h
         WHERE n <= ${HOLDERS_LISTED}
         ORDER BY sku, n`,
  );
  for (const { sku, total, ...holder } of found) {
    const entry = bySku.get(sku) ?? { holders: [], total };
    entry.holders.push(holder);
    bySku.set(sku, entry);
  }
  return bySku;
}

/**
 * Units held by active reservations but gone from the shelf: no counter can be right, so
 * `--repair` cannot fix it. Says what will: the units put back, or orders holding them cancelled.
 */
function reservationsExceedOnHand(a: StockAudit, held: { holders: Holder[]; total: number } | undefined, named_: boolean): Violation {
  const holders = held?.holders ?? [];
  const total = held?.total ?? 0;
  const short = a.active_reserved - a.stock_quantity;
  const named = holders.slice(0, HOLDERS_NAMED).map((h) => h.order_id).join(' ');
  const more =
    total > HOLDERS_NAMED
      ? ` (${HOLDERS_NAMED} of the ${total} orders holding it; \`stockctl verify --json\` lists ${total > HOLDERS_LISTED ? `the first ${HOLDERS_LISTED}` : 'them all'} under "holders")`
      : '';
  const where = named_ ? `${a.sku} at ${a.location}` : a.sku;
  const setAt = named_ ? ` --location ${a.location}` : '';
  return {
    kind: 'reservations_exceed_on_hand',
    sku: a.sku,
    ...(named_ ? { location: a.location } : {}),
    message:
      `${where}: active reservations hold ${a.active_reserved} unit(s) but only ${a.stock_quantity} ${a.stock_quantity === 1 ? 'is' : 'are'} on hand ` +
      `(reserved_stock ${a.reserved_stock}), so reserved_stock cannot be brought in line. ` +
      `If the units are there, put them back on the books: \`stockctl stock set ${a.sku} ${a.active_reserved}${setAt}\`; ` +
      `if they are gone, cancel orders holding at least ${short} of them: \`stockctl cancel ${named}\`${more}. ` +
      `Then run \`stockctl verify --repair\`.`,
    holders,
  };
}

export async function findViolations(db: Db | Tx, skuPrefix?: string): Promise<Violation[]> {
  const violations: Violation[] = [];
  const audits = await auditStock(db, skuPrefix);
  const overcommitted = audits.filter((a) => a.active_reserved > a.stock_quantity);
  const holders = await holdersOf(db, [...new Set(overcommitted.map((a) => a.sku))]);
  const named = await severalLocations(db);
  for (const a of audits) {
    const where = named ? `${a.sku} at ${a.location}` : a.sku;
    const v = (kind: string, message: string) =>
      violations.push({ kind, sku: a.sku, ...(named ? { location: a.location } : {}), message: `${where}: ${message}` });
    if (a.active_reserved > a.stock_quantity) violations.push(reservationsExceedOnHand(a, holders.get(a.sku), named));
    else if (a.reserved_stock !== a.active_reserved)
      v('reserved_vs_reservations', `reserved_stock ${a.reserved_stock} but active reservations hold ${a.active_reserved}`);
    if (a.reserved_stock !== a.ledger_reserved)
      v('reserved_vs_ledger', `reserved_stock ${a.reserved_stock} but the ledger sums to ${a.ledger_reserved}`);
    if (a.stock_quantity !== a.ledger_stock)
      v('stock_vs_ledger', `stock_quantity ${a.stock_quantity} but the ledger sums to ${a.ledger_stock}`);
    if (a.incoming !== a.in_transit)
      v('incoming_vs_transfers', `incoming ${a.incoming} but transfers in transit carry ${a.in_transit}`);
    if (a.incoming !== a.ledger_incoming)
      v('incoming_vs_ledger', `incoming ${a.incoming} but the ledger sums to ${a.ledger_incoming}`);
    if (a.reserved_stock < 0 || a.stock_quantity < 0 || a.incoming < 0 || a.reserved_stock > a.stock_quantity)
      v('counter_bounds', `counters out of bounds (on hand ${a.stock_quantity}, reserved ${a.reserved_stock}, incoming ${a.incoming})`);
  }
  // The totals: units anywhere but at a level would be missing from every sum.
  for (const stray of await strayUnits(db, skuPrefix)) {
    violations.push({
      kind: 'units_without_level',
      sku: stray.sku,
      location: stray.location,
      message: `${stray.sku} at ${stray.location}: ${stray.what} but no stock level there, so the SKU's totals leave them out`,
    });
  }
  const orderFilter = skuPrefix
    ? sql`AND o.order_id IN (SELECT order_id FROM order_items WHERE sku LIKE ${likePrefix(skuPrefix)})`
    : sql``;
  // Set-based on purpose: right after a bulk load the statistics are stale, and a
  // correlated subquery per order turned into a quadratic nested loop.
  const orders = await rows<{ order_id: string; status: string; active: number }>(
    db,
    sql`SELECT o.order_id, o.status, coalesce(a.active, 0)::int AS active
          FROM orders o
          LEFT JOIN (SELECT order_id, count(*) AS active FROM stock_reservations
                      WHERE status = 'active' GROUP BY order_id) a ON a.order_id = o.order_id
         WHERE ((o.status = 'pending' AND a.active IS NULL) OR (o.status <> 'pending' AND a.active > 0))
           ${orderFilter}
         LIMIT 1000`,
  );
  for (const o of orders) {
    violations.push({
      kind: o.status === 'pending' ? 'pending_without_reservations' : 'closed_with_active_reservations',
      order_id: o.order_id,
      message:
        o.status === 'pending'
          ? `order ${o.order_id} is pending but holds no active reservation`
          : `order ${o.order_id} is ${o.status} but still holds ${o.active} active reservation(s)`,
    });
  }
  return violations;
}

export interface Repair {
  sku: string;
  /** The level's location, when there are several. */
  location?: string;
  /** Unrecorded change found and written into the ledger (counter minus ledger). */
  recorded_drift: { stock_delta: number; reserved_delta: number; incoming_delta?: number } | null;
  /** Correction applied to reserved_stock so that it equals the active reservations. */
  reserved_correction: number;
}

/**
 * Bring counters back in line with the reservations through the ledger, never by a
 * silent overwrite: first any change that bypassed the ledger is written down as a
 * `drift` entry, then reserved_stock is corrected by a `repair` entry.
 */
export async function repairCounters(db: Db, actor: string, skuPrefix?: string): Promise<Repair[]> {
  const repairs: Repair[] = [];
  const suspects = (await auditStock(db, skuPrefix)).filter(
    (a) =>
      a.reserved_stock !== a.active_reserved ||
      a.reserved_stock !== a.ledger_reserved ||
      a.stock_quantity !== a.ledger_stock ||
      a.incoming !== a.ledger_incoming,
  );
  const named = await severalLocations(db);
  for (const suspect of suspects) {
    await transaction(db, async (tx) => {
      await lockLevels(tx, [suspect]);
      const a = (await auditStock(tx, suspect.sku, suspect.location)).find((row) => row.sku === suspect.sku);
      if (!a) return;
      const repair: Repair = { sku: a.sku, ...(named ? { location: a.location } : {}), recorded_drift: null, reserved_correction: 0 };
      const driftStock = a.stock_quantity - a.ledger_stock;
      const driftReserved = a.reserved_stock - a.ledger_reserved;
      const driftIncoming = a.incoming - a.ledger_incoming;
      if (driftStock !== 0 || driftReserved !== 0 || driftIncoming !== 0) {
        await execute(tx, sql`INSERT INTO stock_movements (product_id, variant_id, sku, location, kind, stock_delta, reserved_delta, incoming_delta, actor, reason)
          SELECT product_id, variant_id, sku, location, 'drift', ${driftStock}, ${driftReserved}, ${driftIncoming}, ${actor}, 'verify --repair: change made outside stockctl'
            FROM stock_levels WHERE sku = ${a.sku} AND location = ${a.location}`);
        repair.recorded_drift = { stock_delta: driftStock, reserved_delta: driftReserved, ...(driftIncoming !== 0 ? { incoming_delta: driftIncoming } : {}) };
      }
      const correction = a.active_reserved - a.reserved_stock;
      // Units held by pending orders but gone from the shelf: no counter can be right;
      // record the drift and leave the SKU to a person (`reservations_exceed_on_hand`
      // stays in `remaining`, saying what to do).
      if (correction !== 0 && a.active_reserved <= a.stock_quantity) {
        await applyStockChanges(
          tx,
          [{ sku: a.sku, location: a.location, stockDelta: 0, reservedDelta: correction, kind: 'repair', reason: 'verify --repair: reserved_stock to match active reservations' }],
          actor,
        );
        repair.reserved_correction = correction;
      }
      // Only what was written: a SKU left to a person is no repair.
      if (repair.recorded_drift || repair.reserved_correction !== 0) repairs.push(repair);
    });
  }
  return repairs;
}
