/**
 * The database itself refuses to oversell: even a hand-written UPDATE that bypasses
 * every line of stockctl's code cannot leave a stock level (a SKU at a location) in an
 * impossible state, nor borrow another location's units to look possible.
 */
import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();

/** Run a statement that must fail, and return the PostgreSQL error it failed with. */
async function refusal(statement: Promise<unknown>): Promise<{ code?: string; constraint_name?: string }> {
  try {
    await statement;
  } catch (err) {
    return err as { code?: string; constraint_name?: string };
  }
  throw new Error('the statement succeeded, but the database should have refused it');
}

/** A product (no stock of its own: products carry none) and, optionally, its level at `location`. */
async function product(sku: string) {
  const [row] = await t.sql<{ product_id: string }[]>`
    INSERT INTO products (sku, name) VALUES (${sku}, ${`Product ${sku}`}) RETURNING product_id`;
  return row.product_id;
}

async function location(code: string) {
  await t.sql`INSERT INTO locations (code, name) VALUES (${code}, ${code}) ON CONFLICT DO NOTHING`;
}

async function level(sku: string, at: string, stock: number, reserved = 0, incoming = 0) {
  const [p] = await t.sql<{ product_id: string }[]>`SELECT product_id FROM products WHERE sku = ${sku}`;
  const productId = p?.product_id ?? (await product(sku));
  await location(at);
  await t.sql`
    INSERT INTO stock_levels (sku, location, product_id, stock_quantity, reserved_stock, incoming)
    VALUES (${sku}, ${at}, ${productId}, ${stock}, ${reserved}, ${incoming})`;
}

async function levelOf(sku: string, at = 'default') {
  const [row] = await t.sql<{ stock_quantity: number; reserved_stock: number; incoming: number; in_stock: boolean }[]>`
    SELECT stock_quantity, reserved_stock, incoming, in_stock FROM stock_levels WHERE sku = ${sku} AND location = ${at}`;
  return row;
}

describe('stock levels', () => {
  it('refuse to reserve more than is on hand (23514), and the level is unchanged', async () => {
    await level('OVER', 'default', 5, 2);
    const err = await refusal(t.sql`UPDATE stock_levels SET reserved_stock = stock_quantity + 1 WHERE sku = 'OVER'`);
    expect(err.code).toBe('23514');
    expect(err.constraint_name).toBe('stock_levels_reserved_within_stock');
    expect(await levelOf('OVER')).toEqual({ stock_quantity: 5, reserved_stock: 2, incoming: 0, in_stock: true });
  });

  it('refuse to sell reserved units from under a reservation (on hand below reserved)', async () => {
    await level('HELD', 'default', 3, 3);
    const err = await refusal(t.sql`UPDATE stock_levels SET stock_quantity = 2 WHERE sku = 'HELD'`);
    expect(err.code).toBe('23514');
    expect(err.constraint_name).toBe('stock_levels_reserved_within_stock');
    expect(await levelOf('HELD')).toMatchObject({ stock_quantity: 3, reserved_stock: 3 });
  });

  it('refuse negative on hand, negative reservations and negative incoming (23514)', async () => {
    await level('NEG', 'default', 1);
    // Negative stock breaks two CHECKs at once; PostgreSQL names the first it tests.
    const negativeStock = ['stock_levels_stock_nonnegative', 'stock_levels_reserved_within_stock'];
    const stock = await refusal(t.sql`UPDATE stock_levels SET stock_quantity = -1, reserved_stock = 0 WHERE sku = 'NEG'`);
    expect(stock.code).toBe('23514');
    expect(negativeStock).toContain(stock.constraint_name);

    const reserved = await refusal(t.sql`UPDATE stock_levels SET reserved_stock = -1 WHERE sku = 'NEG'`);
    expect(reserved.code).toBe('23514');
    expect(reserved.constraint_name).toBe('stock_levels_reserved_nonnegative');

    const incoming = await refusal(t.sql`UPDATE stock_levels SET incoming = -1 WHERE sku = 'NEG'`);
    expect(incoming.code).toBe('23514');
    expect(incoming.constraint_name).toBe('stock_levels_incoming_nonnegative');

    const insert = await refusal(level('NEG2', 'default', -5));
    expect(insert.code).toBe('23514');
    expect(negativeStock).toContain(insert.constraint_name);
    expect(await levelOf('NEG')).toEqual({ stock_quantity: 1, reserved_stock: 0, incoming: 0, in_stock: true });
  });

  it('guard each level on its own: another location of the same SKU cannot cover it', async () => {
    await level('TWO', 'default', 5, 0);
    await level('TWO', 'L2', 1, 1);
    // The SKU has 6 on hand in all and 1 reserved, yet L2 cannot hold 2.
    const err = await refusal(t.sql`UPDATE stock_levels SET reserved_stock = 2 WHERE sku = 'TWO' AND location = 'L2'`);
    expect(err.code).toBe('23514');
    expect(err.constraint_name).toBe('stock_levels_reserved_within_stock');
    // One statement moving units between the levels is refused whole.
    const moved = await refusal(t.sql`UPDATE stock_levels SET reserved_stock = reserved_stock + 2 WHERE sku = 'TWO'`);
    expect(moved.code).toBe('23514');
    expect(await levelOf('TWO')).toMatchObject({ stock_quantity: 5, reserved_stock: 0 });
    expect(await levelOf('TWO', 'L2')).toMatchObject({ stock_quantity: 1, reserved_stock: 1 });
  });

  it('refuse a level at a location that does not exist (23503) and a second level at the same place (23505)', async () => {
    const productId = await product('NOWHERE');
    const fk = await refusal(t.sql`INSERT INTO stock_levels (sku, location, product_id) VALUES ('NOWHERE', 'no-such-place', ${productId})`);
    expect(fk.code).toBe('23503');
    await level('TWICE', 'default', 1);
    const dup = await refusal(level('TWICE', 'default', 2));
    expect(dup.code).toBe('23505');
  });

  it('derive in_stock from available units, and nobody can write it', async () => {
    await level('GEN', 'default', 2);
    expect((await levelOf('GEN')).in_stock).toBe(true);
    await t.sql`UPDATE stock_levels SET reserved_stock = 1 WHERE sku = 'GEN'`;
    expect((await levelOf('GEN')).in_stock).toBe(true);
    await t.sql`UPDATE stock_levels SET reserved_stock = 2 WHERE sku = 'GEN'`;
    expect(await levelOf('GEN')).toEqual({ stock_quantity: 2, reserved_stock: 2, incoming: 0, in_stock: false });
    // Units on their way are not in stock.
    await t.sql`UPDATE stock_levels SET reserved_stock = 0, stock_quantity = 0, incoming = 4 WHERE sku = 'GEN'`;
    expect(await levelOf('GEN')).toEqual({ stock_quantity: 0, reserved_stock: 0, incoming: 4, in_stock: false });

    const write = await refusal(t.sql`UPDATE stock_levels SET in_stock = true WHERE sku = 'GEN'`);
    expect(write.code).toBe('428C9'); // generated column
    expect((await levelOf('GEN')).in_stock).toBe(false);
  });
});

describe('products', () => {
  it('carry no stock of their own any more', async () => {
    const columns = await t.sql<{ table_name: string; column_name: string }[]>`
      SELECT table_name, column_name FROM information_schema.columns
       WHERE table_schema = 'public' AND table_name IN ('products', 'product_variants')
         AND column_name IN ('stock_quantity', 'reserved_stock', 'version', 'in_stock')`;
    expect(columns).toEqual([]);
  });

  it('refuse a negative price (23514)', async () => {
    const err = await refusal(t.sql`INSERT INTO products (sku, name, price) VALUES ('CHEAP', 'x', -1)`);
    expect(err.code).toBe('23514');
    expect(err.constraint_name).toBe('products_price_nonnegative');
  });

  it('refuse a duplicate SKU (23505)', async () => {
    await product('DUP');
    const err = await refusal(product('DUP'));
    expect(err.code).toBe('23505');
    expect(err.constraint_name).toBe('products_sku_key');
    const [{ count }] = await t.sql<{ count: number }[]>`SELECT count(*)::int AS count FROM products WHERE sku = 'DUP'`;
    expect(count).toBe(1);
  });
});

describe('product variants', () => {
  it("levels of a variant have the same guards, and a duplicate variant SKU is refused", async () => {
    const parent = await product('PARENT');
    const [v] = await t.sql<{ variant_id: string }[]>`
      INSERT INTO product_variants (product_id, sku, name) VALUES (${parent}, 'PARENT-M', 'M') RETURNING variant_id`;
    await t.sql`INSERT INTO stock_levels (sku, location, product_id, variant_id, stock_quantity) VALUES ('PARENT-M', 'default', ${parent}, ${v.variant_id}, 4)`;

    const over = await refusal(t.sql`UPDATE stock_levels SET reserved_stock = stock_quantity + 1 WHERE sku = 'PARENT-M'`);
    expect(over.code).toBe('23514');
    expect(over.constraint_name).toBe('stock_levels_reserved_within_stock');

    const negative = await refusal(t.sql`UPDATE stock_levels SET reserved_stock = -1 WHERE sku = 'PARENT-M'`);
    expect(negative.code).toBe('23514');
    expect(negative.constraint_name).toBe('stock_levels_reserved_nonnegative');

    const dup = await refusal(t.sql`INSERT INTO product_variants (product_id, sku, name) VALUES (${parent}, 'PARENT-M', 'M again')`);
    expect(dup.code).toBe('23505');
    expect(dup.constraint_name).toBe('product_variants_sku_key');

    await t.sql`UPDATE stock_levels SET reserved_stock = 4 WHERE sku = 'PARENT-M'`;
    expect((await levelOf('PARENT-M')).in_stock).toBe(false);
  });

  it('replace their product as the stock row addressed by SKU (stock_items), with totals summed over levels', async () => {
    const parent = await product('SHIRT');
    await level('MUG', 'default', 3);
    const [v] = await t.sql<{ variant_id: string }[]>`
      INSERT INTO product_variants (product_id, sku, name) VALUES (${parent}, 'SHIRT-L', 'L') RETURNING variant_id`;
    await location('L2');
    await t.sql`INSERT INTO stock_levels (sku, location, product_id, variant_id, stock_quantity, reserved_stock)
                VALUES ('SHIRT-L', 'default', ${parent}, ${v.variant_id}, 2, 1), ('SHIRT-L', 'L2', ${parent}, ${v.variant_id}, 5, 0)`;
    const items = await t.sql<{ sku: string; variant: boolean; stock_quantity: number; reserved_stock: number; available: number; locations: number }[]>`
      SELECT sku, variant_id IS NOT NULL AS variant, stock_quantity, reserved_stock, available, locations
        FROM stock_items WHERE sku IN ('SHIRT', 'SHIRT-L', 'MUG') ORDER BY sku`;
    expect(items).toEqual([
      { sku: 'MUG', variant: false, stock_quantity: 3, reserved_stock: 0, available: 3, locations: 1 },
      { sku: 'SHIRT-L', variant: true, stock_quantity: 7, reserved_stock: 1, available: 6, locations: 2 },
    ]);
    // An inactive location's units are on hand but not available.
    await t.sql`UPDATE locations SET active = false WHERE code = 'L2'`;
    const [l] = await t.sql<{ available: number; stock_quantity: number }[]>`SELECT available, stock_quantity FROM stock_items WHERE sku = 'SHIRT-L'`;
    expect(l).toEqual({ available: 1, stock_quantity: 7 });
    await t.sql`UPDATE locations SET active = true WHERE code = 'L2'`;
  });
});

describe('transfers', () => {
  it('refuse a transfer to its own source, a quantity of 0, an unknown status, and a closed one without a time (23514)', async () => {
    const productId = await product('MOVED');
    await location('L2');
    const base = { sku: 'MOVED', product_id: productId, from_location: 'default', to_location: 'L2', quantity: 1, created_by: 'test' };
    const same = await refusal(t.sql`INSERT INTO transfers ${t.sql({ ...base, to_location: 'default' })}`);
    expect(same).toMatchObject({ code: '23514', constraint_name: 'transfers_locations_differ' });
    const zero = await refusal(t.sql`INSERT INTO transfers ${t.sql({ ...base, quantity: 0 })}`);
    expect(zero).toMatchObject({ code: '23514', constraint_name: 'transfers_quantity_positive' });
    const status = await refusal(t.sql`INSERT INTO transfers ${t.sql({ ...base, status: 'lost', closed_at: '2026-01-01T00:00:00Z' })}`);
    expect(status).toMatchObject({ code: '23514', constraint_name: 'transfers_status_valid' });
    const closed = await refusal(t.sql`INSERT INTO transfers ${t.sql({ ...base, status: 'received' })}`);
    expect(closed).toMatchObject({ code: '23514', constraint_name: 'transfers_closed_has_time' });
  });
});
