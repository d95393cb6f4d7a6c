/**
 * The migration to stock in several locations (0005_locations), on a database that was
 * in use: built at the schema before it (migrations 0000–0004 only, recorded as the
 * runner records them), with products, variants and pending, paid and expired orders
 * written in the old shape (counters on products and variants), then `stockctl migrate`.
 * Every stock row must become a level at `default` with the same counters and version,
 * every reservation and ledger row must be at `default`, and the pending orders must
 * still pay, cancel and expire.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type postgres from 'postgres';
import { readMigrationFiles } from 'drizzle-orm/migrator';
import { afterAll, describe, expect, it } from 'vitest';
import { MIGRATIONS_FOLDER } from '../../src/db/migrate.js';
import { runCli, runCliJson } from '../helpers/cli.js';
import { useTestDatabase, type TestDatabase } from '../helpers/db.js';

const t = useTestDatabase();
const LOCATIONS_TAG = '0005_locations';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'stockctl-migrate-locations-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** The migrations folder as it was before the locations migration: a copy with a trimmed journal. */
function foldersBefore(tag: string): string {
  const folder = path.join(scratch, 'drizzle');
  fs.cpSync(MIGRATIONS_FOLDER, folder, { recursive: true });
  const journalPath = path.join(folder, 'meta', '_journal.json');
  const journal = JSON.parse(fs.readFileSync(journalPath, 'utf8')) as { entries: { tag: string }[] };
  const at = journal.entries.findIndex((e) => e.tag === tag);
  expect(at, `${tag} is in the journal`).toBeGreaterThan(0);
  journal.entries = journal.entries.slice(0, at);
  fs.writeFileSync(journalPath, JSON.stringify(journal, null, 2));
  return folder;
}

/** Apply every migration of `folder` to an empty database, each in its own transaction, recorded as src/db/migrate.ts records it. */
async function migrateFrom(sql: postgres.Sql, folder: string): Promise<number> {
  const migrations = readMigrationFiles({ migrationsFolder: folder });
  await sql`CREATE SCHEMA IF NOT EXISTS drizzle`;
  await sql`CREATE TABLE IF NOT EXISTS drizzle.__drizzle_migrations (id serial PRIMARY KEY, hash text NOT NULL, created_at bigint)`;
  for (const m of migrations) {
    await sql.begin(async (tx) => {
      for (const statement of m.sql) if (statement.trim()) await tx.unsafe(statement);
      await tx`INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES (${m.hash}, ${m.folderMillis})`;
    });
  }
  return migrations.length;
}

/**
 * The old engine's moves, as it wrote them: the counters on the product (or variant)
 * row, its version bumped, and one ledger row per change.
 */
class OldShape {
  constructor(private readonly sql: postgres.Sql) {}

  private ids = new Map<string, { productId: string; variantId: string | null }>();

  async product(sku: string, stock: number, price = 1000): Promise<void> {
    const [p] = await this.sql<{ product_id: string }[]>`
      INSERT INTO products (sku, name, price, stock_quantity, version) VALUES (${sku}, ${`Product ${sku}`}, ${price}, ${stock}, 1) RETURNING product_id`;
    this.ids.set(sku, { productId: p.product_id, variantId: null });
    await this.ledger(sku, 'initial', stock, 0);
  }

  async parent(sku: string): Promise<void> {
    const [p] = await this.sql<{ product_id: string }[]>`INSERT INTO products (sku, name, price) VALUES (${sku}, ${`Product ${sku}`}, 500) RETURNING product_id`;
    this.ids.set(sku, { productId: p.product_id, variantId: null });
  }

  async variant(parent: string, sku: string, stock: number): Promise<void> {
    const productId = this.ids.get(parent)!.productId;
    const [v] = await this.sql<{ variant_id: string }[]>`
      INSERT INTO product_variants (product_id, sku, name, price, stock_quantity, version)
      VALUES (${productId}, ${sku}, ${`Variant ${sku}`}, 1500, ${stock}, 1) RETURNING variant_id`;
    this.ids.set(sku, { productId, variantId: v.variant_id });
    await this.ledger(sku, 'initial', stock, 0);
  }

  private async bump(sku: string, stockDelta: number, reservedDelta: number): Promise<void> {
    const { variantId } = this.ids.get(sku)!;
    if (variantId) {
      await this.sql`UPDATE product_variants SET stock_quantity = stock_quantity + ${stockDelta}, reserved_stock = reserved_stock + ${reservedDelta},
                     version = version + 1 WHERE variant_id = ${variantId}`;
    } else {
      await this.sql`UPDATE products SET stock_quantity = stock_quantity + ${stockDelta}, reserved_stock = reserved_stock + ${reservedDelta},
                     version = version + 1 WHERE sku = ${sku}`;
    }
  }

  private async ledger(sku: string, kind: string, stockDelta: number, reservedDelta: number, orderId?: string, reservationId?: string): Promise<void> {
    const { productId, variantId } = this.ids.get(sku)!;
    await this.sql`
      INSERT INTO stock_movements (product_id, variant_id, sku, kind, stock_delta, reserved_delta, order_id, reservation_id, actor)
      VALUES (${productId}, ${variantId}, ${sku}, ${kind}, ${stockDelta}, ${reservedDelta}, ${orderId ?? null}, ${reservationId ?? null}, 'old-stockctl')`;
  }

  /** A pending order holding its lines, its window ending in `seconds` (negative: already passed). */
  async reserve(lines: { sku: string; quantity: number }[], seconds: number, ref?: string): Promise<string> {
    const orderId = randomUUID();
    const units = lines.reduce((n, l) => n + l.quantity, 0);
    await this.sql`
      INSERT INTO orders (order_id, ref, status, payment_expires_at, subtotal, total, item_count, strategy, created_by, payment_window_seconds)
      VALUES (${orderId}, ${ref ?? null}, 'pending', now() + make_interval(secs => ${seconds}), ${units * 1000}, ${units * 1000}, ${units}, 'guarded', 'old-stockctl', 900)`;
    for (const l of lines) {
      const { productId, variantId } = this.ids.get(l.sku)!;
      const itemId = randomUUID();
      const reservationId = randomUUID();
      await this.sql`
        INSERT INTO order_items (order_item_id, order_id, product_id, variant_id, sku, name, unit_price, quantity, line_total)
        VALUES (${itemId}, ${orderId}, ${productId}, ${variantId}, ${l.sku}, ${l.sku}, 1000, ${l.quantity}, ${l.quantity * 1000})`;
      await this.sql`
        INSERT INTO stock_reservations (reservation_id, order_id, order_item_id, product_id, variant_id, sku, quantity, expires_at)
        VALUES (${reservationId}, ${orderId}, ${itemId}, ${productId}, ${variantId}, ${l.sku}, ${l.quantity}, now() + make_interval(secs => ${seconds}))`;
      await this.bump(l.sku, 0, l.quantity);
      await this.ledger(l.sku, 'reserve', 0, l.quantity, orderId, reservationId);
    }
    return orderId;
  }

  private async reservations(orderId: string) {
    return this.sql<{ reservation_id: string; sku: string; quantity: number }[]>`
      SELECT reservation_id, sku, quantity FROM stock_reservations WHERE order_id = ${orderId} AND status = 'active'`;
  }

  async pay(orderId: string): Promise<void> {
    for (const r of await this.reservations(orderId)) {
      await this.sql`UPDATE stock_reservations SET status = 'converted', released_at = now() WHERE reservation_id = ${r.reservation_id}`;
      await this.bump(r.sku, -r.quantity, -r.quantity);
      await this.ledger(r.sku, 'sale', -r.quantity, -r.quantity, orderId, r.reservation_id);
    }
    await this.sql`UPDATE orders SET status = 'paid', payment_status = 'paid', paid_at = now(), payment_expires_at = NULL WHERE order_id = ${orderId}`;
  }

  async expire(orderId: string): Promise<void> {
    for (const r of await this.reservations(orderId)) {
      await this.sql`UPDATE stock_reservations SET status = 'expired', released_at = now() WHERE reservation_id = ${r.reservation_id}`;
      await this.bump(r.sku, 0, -r.quantity);
      await this.ledger(r.sku, 'expire', 0, -r.quantity, orderId, r.reservation_id);
    }
    await this.sql`UPDATE orders SET status = 'cancelled', payment_status = 'expired', cancelled_at = now(), cancel_reason = 'payment window expired'
                    WHERE order_id = ${orderId}`;
  }
}

interface OldRow {
  sku: string;
  stock_quantity: number;
  reserved_stock: number;
  version: number;
  product_id: string;
  variant_id: string | null;
}

/** The stock rows of the old shape: products without variants, and variants. */
async function oldStockRows(sql: postgres.Sql): Promise<OldRow[]> {
  return sql<OldRow[]>`
    SELECT sku, stock_quantity, reserved_stock, version, product_id, NULL::uuid AS variant_id FROM products p
     WHERE NOT EXISTS (SELECT 1 FROM product_variants v WHERE v.product_id = p.product_id)
    UNION ALL
    SELECT sku, stock_quantity, reserved_stock, version, product_id, variant_id FROM product_variants
     ORDER BY sku`;
}

/** What the old `verify` checked, per stock row: counters = active reservations = ledger. */
async function oldViolations(sql: postgres.Sql): Promise<string[]> {
  const rows = await sql<{ sku: string; stock: number; reserved: number; active: number; ls: number; lr: number }[]>`
    SELECT s.sku, s.stock_quantity AS stock, s.reserved_stock AS reserved,
           coalesce((SELECT sum(quantity) FROM stock_reservations r WHERE r.sku = s.sku AND r.status = 'active'), 0)::int AS active,
           coalesce((SELECT sum(stock_delta) FROM stock_movements m WHERE m.sku = s.sku), 0)::int AS ls,
           coalesce((SELECT sum(reserved_delta) FROM stock_movements m WHERE m.sku = s.sku), 0)::int AS lr
      FROM stock_items s`;
  const problems: string[] = [];
  for (const r of rows) {
    if (r.reserved !== r.active) problems.push(`${r.sku}: reserved ${r.reserved} != active ${r.active}`);
    if (r.stock !== r.ls) problems.push(`${r.sku}: stock ${r.stock} != ledger ${r.ls}`);
    if (r.reserved !== r.lr) problems.push(`${r.sku}: reserved ${r.reserved} != ledger ${r.lr}`);
  }
  return problems;
}

describe('migrating a database in use to stock in several locations', () => {
  let old: TestDatabase;

  it('every stock row becomes a level at default with its counters and version; pending orders still pay, cancel and expire', async () => {
    old = await t.createDatabase({ migrated: false });
    const applied = await migrateFrom(old.sql, foldersBefore(LOCATIONS_TAG));
    expect(applied).toBe(5);
    // The old shape: counters on products.
    const [{ has }] = await old.sql<{ has: boolean }[]>`
      SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'products' AND column_name = 'stock_quantity') AS has`;
    expect(has).toBe(true);
    // This stockctl sees one migration to apply, and refuses to work until it is.
    const dry = await runCliJson<{ pending: string[] }>(['migrate', '--dry-run'], { databaseUrl: old.url });
    expect(dry.json.pending).toEqual([LOCATIONS_TAG]);
    expect((await runCli(['stock', '--json'], { databaseUrl: old.url })).code).toBe(7);

    const w = new OldShape(old.sql);
    await w.product('MUG', 10);
    await w.product('CAP', 4);
    await w.product('EMPTY', 0);
    await w.parent('TEE');
    await w.variant('TEE', 'TEE-S', 5);
    await w.variant('TEE', 'TEE-M', 3);
    const toPay = await w.reserve([{ sku: 'MUG', quantity: 2 }, { sku: 'TEE-S', quantity: 1 }], 900, 'cart-pay');
    const toCancel = await w.reserve([{ sku: 'CAP', quantity: 1 }, { sku: 'TEE-M', quantity: 1 }], 900, 'cart-cancel');
    const toSweep = await w.reserve([{ sku: 'MUG', quantity: 1 }, { sku: 'TEE-M', quantity: 2 }], -60, 'cart-late');
    const paid = await w.reserve([{ sku: 'MUG', quantity: 1 }], 900);
    await w.pay(paid);
    const expired = await w.reserve([{ sku: 'CAP', quantity: 2 }], 900);
    await w.expire(expired);
    expect(await oldViolations(old.sql)).toEqual([]);
    const before = await oldStockRows(old.sql);
    expect(before.map((r) => [r.sku, r.stock_quantity, r.reserved_stock])).toEqual([
      ['CAP', 4, 1],
      ['EMPTY', 0, 0],
      ['MUG', 9, 3],
      ['TEE-M', 3, 3],
      ['TEE-S', 5, 1],
    ]);
    const counts = async () => {
      const [c] = await old.sql<{ reservations: number; movements: number; orders: number }[]>`
        SELECT (SELECT count(*) FROM stock_reservations)::int AS reservations, (SELECT count(*) FROM stock_movements)::int AS movements,
               (SELECT count(*) FROM orders)::int AS orders`;
      return c;
    };
    const rowsBefore = await counts();

    const migrated = await runCliJson<{ applied: string[] }>(['migrate'], { databaseUrl: old.url });
    expect(migrated.code, migrated.stderr).toBe(0);
    expect(migrated.json.applied).toEqual([LOCATIONS_TAG]);

    // Every stock row is one level at default, with the same counters, version and ids.
    const levels = await old.sql<(OldRow & { location: string; incoming: number })[]>`
      SELECT sku, location, stock_quantity, reserved_stock, incoming, version, product_id, variant_id FROM stock_levels ORDER BY sku, location`;
    expect(levels).toEqual(before.map((r) => ({ ...r, location: 'default', incoming: 0 })));
    // The parent of variants has no level of its own.
    expect(levels.find((l) => l.sku === 'TEE')).toBeUndefined();
    // Totals read the same as before.
    const totals = await old.sql<{ sku: string; stock_quantity: number; reserved_stock: number; version: number; locations: number }[]>`
      SELECT sku, stock_quantity, reserved_stock, version, locations FROM stock_items ORDER BY sku`;
    expect(totals).toEqual(before.map((r) => ({ sku: r.sku, stock_quantity: r.stock_quantity, reserved_stock: r.reserved_stock, version: r.version, locations: 1 })));
    // Nothing lost or added; every reservation and ledger row is at default.
    expect(await counts()).toEqual(rowsBefore);
    const [{ elsewhere }] = await old.sql<{ elsewhere: number }[]>`
      SELECT ((SELECT count(*) FROM stock_reservations WHERE location IS DISTINCT FROM 'default')
            + (SELECT count(*) FROM stock_movements WHERE location IS DISTINCT FROM 'default' OR incoming_delta <> 0 OR transfer_id IS NOT NULL))::int AS elsewhere`;
    expect(elsewhere).toBe(0);
    expect(await old.sql`SELECT code, active FROM locations`).toEqual([{ code: 'default', active: true }]);

    const verify = await runCliJson<{ ok: boolean; violations: unknown[] }>(['verify'], { databaseUrl: old.url });
    expect(verify.code, verify.stdout).toBe(0);
    expect(verify.json).toMatchObject({ ok: true, violations: [] });

    // The pending orders made before the migration still end as orders do.
    const pay = await runCliJson<{ status: string }>(['pay', 'cart-pay'], { databaseUrl: old.url });
    expect(pay.code, pay.stdout).toBe(0);
    const cancel = await runCli(['cancel', 'cart-cancel', '--json'], { databaseUrl: old.url });
    expect(cancel.code, cancel.stdout).toBe(0);
    const sweep = await runCliJson<{ expired_orders: number }>(['sweep'], { databaseUrl: old.url });
    expect(sweep.code).toBe(0);
    expect(sweep.json.expired_orders).toBe(1);
    const states = await old.sql<{ order_id: string; status: string; payment_status: string }[]>`
      SELECT order_id, status, payment_status FROM orders WHERE order_id = ANY(${[toPay, toCancel, toSweep]}::uuid[]) ORDER BY ref`;
    expect(Object.fromEntries(states.map((s) => [s.order_id, `${s.status}/${s.payment_status}`]))).toEqual({
      [toPay]: 'paid/paid',
      [toCancel]: 'cancelled/void',
      [toSweep]: 'cancelled/expired',
    });
    const after = await old.sql<{ sku: string; stock_quantity: number; reserved_stock: number }[]>`
      SELECT sku, stock_quantity, reserved_stock FROM stock_levels WHERE location = 'default' ORDER BY sku`;
    expect(after).toEqual([
      { sku: 'CAP', stock_quantity: 4, reserved_stock: 0 },
      { sku: 'EMPTY', stock_quantity: 0, reserved_stock: 0 },
      { sku: 'MUG', stock_quantity: 7, reserved_stock: 0 },
      { sku: 'TEE-M', stock_quantity: 3, reserved_stock: 0 },
      { sku: 'TEE-S', stock_quantity: 4, reserved_stock: 0 },
    ]);
    // And new ones reserve from the migrated levels.
    const fresh = await runCliJson<{ items: { allocations: { location: string; quantity: number }[] }[] }>(['reserve', 'TEE-M:3', 'MUG:7'], { databaseUrl: old.url });
    expect(fresh.code, fresh.stdout).toBe(0);
    expect(fresh.json.items.flatMap((i) => i.allocations.map((a) => a.location))).toEqual(['default', 'default']);
    const finalVerify = await runCli(['verify'], { databaseUrl: old.url });
    expect(finalVerify.code, finalVerify.stdout).toBe(0);
  }, 120_000);
});
