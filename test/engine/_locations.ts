/**
 * Shared pieces of the tests of stock in several locations: locations and levels seeded
 * through the engine, each level's counters read back, the deadlock counter, the
 * invariants `verify` checks (the engine's findViolations) plus those of each level.
 */
import type postgres from 'postgres';
import type { Db } from '../../src/db/client.js';
import { addProduct, changeStock } from '../../src/engine/catalogue.js';
import { addLocation, setLocation } from '../../src/engine/locations.js';
import { findViolations } from '../../src/engine/verify.js';
import type { CliResult } from '../helpers/cli.js';
import { ACTOR, sleep } from './_support.js';

export interface LocationSpec {
  code: string;
  priority: number;
  active?: boolean;
}

/** Add these locations (those already there are left as they are, but set active as asked). */
export async function ensureLocations(db: Db, sql: postgres.Sql, specs: LocationSpec[]): Promise<void> {
  for (const s of specs) {
    const [exists] = await sql`SELECT 1 FROM locations WHERE code = ${s.code}`;
    if (!exists) await addLocation(db, { code: s.code, name: `Location ${s.code}`, priority: s.priority });
    else await setLocation(db, { code: s.code, priority: s.priority, active: true, actor: ACTOR });
    if (s.active === false) await setLocation(db, { code: s.code, active: false, actor: ACTOR });
  }
}

/** A product with these units on hand at these locations (a level at each, even of 0). */
export async function seedSku(db: Db, sku: string, at: Record<string, number>, price = 1000): Promise<void> {
  await addProduct(db, { sku, name: `Product ${sku}`, price, stock: 0, actor: ACTOR });
  for (const [location, quantity] of Object.entries(at)) await changeStock(db, { sku, quantity, location, actor: ACTOR });
}

export interface Level {
  stock: number;
  reserved: number;
  incoming: number;
}

/** Each level of the SKU, by location. */
export async function levelsOf(sql: postgres.Sql, sku: string): Promise<Record<string, Level>> {
  const rows = await sql<{ location: string; stock: number; reserved: number; incoming: number }[]>`
    SELECT location, stock_quantity AS stock, reserved_stock AS reserved, incoming FROM stock_levels WHERE sku = ${sku} ORDER BY location`;
  return Object.fromEntries(rows.map((r) => [r.location, { stock: r.stock, reserved: r.reserved, incoming: r.incoming }]));
}

/** Active reservations of the SKU summed per location. */
export async function activeReservedAt(sql: postgres.Sql, sku: string): Promise<Record<string, number>> {
  const rows = await sql<{ location: string; n: number }[]>`
    SELECT location, sum(quantity)::int AS n FROM stock_reservations WHERE sku = ${sku} AND status = 'active' GROUP BY location ORDER BY location`;
  return Object.fromEntries(rows.map((r) => [r.location, r.n]));
}

/**
 * Deadlocks PostgreSQL has detected in this database so far. A backend reports its
 * counts when its transaction ends (at most once a second) and when it exits, so the
 * sessions of a finished race are waited out first (`settle`).
 */
export async function deadlocks(sql: postgres.Sql): Promise<number> {
  const [{ n }] = await sql<{ n: number }[]>`SELECT deadlocks::int AS n FROM pg_stat_database WHERE datname = current_database()`;
  return n;
}

/** Wait until no other session is connected to this database, then a little more for stats to land. */
export async function settle(sql: postgres.Sql, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [{ n }] = await sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
         AND backend_type = 'client backend' AND application_name <> 'stockctl-test'`;
    if (n === 0 || Date.now() > deadline) break;
    await sleep(50);
  }
  // Backend stats reach shared memory at exit; clear this session's snapshot of them.
  await sql`SELECT pg_stat_clear_snapshot()`;
  await sleep(200);
}

/**
 * Every problem `verify` would report (the engine's findViolations), and on top of it,
 * at every level: reserved within [0, on hand], reserved = its active reservations, on
 * hand / reserved / incoming = its ledger, incoming = its transfers in transit; and each
 * SKU's totals (stock_items) = the sums of its levels.
 */
export async function locationViolations(db: Db, sql: postgres.Sql): Promise<string[]> {
  const problems = (await findViolations(db)).map((v) => `verify: ${v.kind}: ${v.message}`);
  const levels = await sql<
    { sku: string; location: string; stock: number; reserved: number; incoming: number; active: number; transit: number; ls: number; lr: number; li: number }[]
  >`
    SELECT l.sku, l.location, l.stock_quantity AS stock, l.reserved_stock AS reserved, l.incoming,
           coalesce((SELECT sum(quantity) FROM stock_reservations r WHERE r.sku = l.sku AND r.location = l.location AND r.status = 'active'), 0)::int AS active,
           coalesce((SELECT sum(quantity) FROM transfers t WHERE t.sku = l.sku AND t.to_location = l.location AND t.status = 'in_transit'), 0)::int AS transit,
           coalesce((SELECT sum(stock_delta) FROM stock_movements m WHERE m.sku = l.sku AND m.location = l.location), 0)::int AS ls,
           coalesce((SELECT sum(reserved_delta) FROM stock_movements m WHERE m.sku = l.sku AND m.location = l.location), 0)::int AS lr,
           coalesce((SELECT sum(incoming_delta) FROM stock_movements m WHERE m.sku = l.sku AND m.location = l.location), 0)::int AS li
      FROM stock_levels l ORDER BY l.sku, l.location`;
  for (const l of levels) {
    const at = `${l.sku}@${l.location}`;
    if (l.reserved < 0 || l.reserved > l.stock) problems.push(`${at}: reserved ${l.reserved} outside [0, ${l.stock}]`);
    if (l.reserved !== l.active) problems.push(`${at}: reserved ${l.reserved} != active reservations ${l.active}`);
    if (l.stock !== l.ls) problems.push(`${at}: on hand ${l.stock} != ledger ${l.ls}`);
    if (l.reserved !== l.lr) problems.push(`${at}: reserved ${l.reserved} != ledger ${l.lr}`);
    if (l.incoming !== l.li) problems.push(`${at}: incoming ${l.incoming} != ledger ${l.li}`);
    if (l.incoming !== l.transit) problems.push(`${at}: incoming ${l.incoming} != in transit ${l.transit}`);
  }
  const totals = await sql<{ sku: string; ok: boolean; detail: string }[]>`
    SELECT s.sku,
           s.stock_quantity = coalesce(x.stock, 0) AND s.reserved_stock = coalesce(x.reserved, 0)
             AND s.incoming = coalesce(x.incoming, 0) AND s.available = coalesce(x.available, 0) AS ok,
           format('totals %s/%s/%s/%s, levels %s/%s/%s/%s', s.stock_quantity, s.reserved_stock, s.incoming, s.available,
                  x.stock, x.reserved, x.incoming, x.available) AS detail
      FROM stock_items s
      LEFT JOIN LATERAL (
        SELECT sum(l.stock_quantity)::int AS stock, sum(l.reserved_stock)::int AS reserved, sum(l.incoming)::int AS incoming,
               sum(CASE WHEN loc.active THEN greatest(l.stock_quantity - l.reserved_stock, 0) ELSE 0 END)::int AS available
          FROM stock_levels l JOIN locations loc ON loc.code = l.location WHERE l.sku = s.sku) x ON true`;
  for (const t of totals) if (!t.ok) problems.push(`${t.sku}: ${t.detail}`);
  // A reservation, a ledger row or a transfer at a location with no level (nothing would count it).
  const orphans = await sql<{ what: string }[]>`
    SELECT 'reservation ' || reservation_id AS what FROM stock_reservations r
     WHERE NOT EXISTS (SELECT 1 FROM stock_levels l WHERE l.sku = r.sku AND l.location = r.location)
    UNION ALL
    SELECT 'ledger row ' || m.movement_id FROM stock_movements m
     WHERE NOT EXISTS (SELECT 1 FROM stock_levels l WHERE l.sku = m.sku AND l.location = m.location)`;
  for (const o of orphans) problems.push(`${o.what} at a location with no level`);
  return problems;
}

/** exit code and error code of a `--json` run, e.g. "exit 3 insufficient_stock" or "exit 0". */
export function outcomeOf(r: CliResult): string {
  if (r.code === 0) return 'exit 0';
  try {
    const { error } = JSON.parse(r.stdout) as { error: { code: string; message: string } };
    return `exit ${r.code} ${error.code}`;
  } catch {
    return `exit ${r.code} (no JSON: ${r.stdout.slice(0, 200)} ${r.stderr.slice(0, 300)})`;
  }
}

export function countOutcomes(results: CliResult[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of results) counts[outcomeOf(r)] = (counts[outcomeOf(r)] ?? 0) + 1;
  return counts;
}
