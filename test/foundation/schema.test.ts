/**
 * The database itself refuses to oversell: even a hand-written UPDATE that bypasses
 * every line of stockctl's code cannot leave a stock row in an impossible state.
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

async function product(sku: string, stock: number, reserved = 0) {
  const [row] = await t.sql<{ product_id: string }[]>`
    INSERT INTO products (sku, name, stock_quantity, reserved_stock)
    VALUES (${sku}, ${`Product ${sku}`}, ${stock}, ${reserved}) RETURNING product_id`;
  return row.product_id;
}

async function stockOf(sku: string) {
  const [row] = await t.sql<{ stock_quantity: number; reserved_stock: number; in_stock: boolean }[]>`
    SELECT stock_quantity, reserved_stock, in_stock FROM products WHERE sku = ${sku}`;
  return row;
}

describe('products', () => {
  it('refuses to reserve more than is on hand (23514), and the row is unchanged', async () => {
    await product('OVER', 5, 2);
    const err = await refusal(t.sql`UPDATE products SET reserved_stock = stock_quantity + 1 WHERE sku = 'OVER'`);
    expect(err.code).toBe('23514');
    expect(err.constraint_name).toBe('products_reserved_within_stock');
    expect(await stockOf('OVER')).toEqual({ stock_quantity: 5, reserved_stock: 2, in_stock: true });
  });

  it('refuses to sell reserved units from under a reservation (stock below reserved)', async () => {
    await product('HELD', 3, 3);
    const err = await refusal(t.sql`UPDATE products SET stock_quantity = 2 WHERE sku = 'HELD'`);
    expect(err.code).toBe('23514');
    expect(err.constraint_name).toBe('products_reserved_within_stock');
  });

  it('refuses negative stock and negative reservations (23514)', async () => {
    await product('NEG', 1);
    // Negative stock breaks two CHECKs at once; PostgreSQL names the first it tests.
    const negativeStock = ['products_stock_nonnegative', 'products_reserved_within_stock'];
    const stock = await refusal(t.sql`UPDATE products SET stock_quantity = -1, reserved_stock = 0 WHERE sku = 'NEG'`);
    expect(stock.code).toBe('23514');
    expect(negativeStock).toContain(stock.constraint_name);

    const reserved = await refusal(t.sql`UPDATE products SET reserved_stock = -1 WHERE sku = 'NEG'`);
    expect(reserved.code).toBe('23514');
    expect(reserved.constraint_name).toBe('products_reserved_nonnegative');

    const insert = await refusal(t.sql`INSERT INTO products (sku, name, stock_quantity) VALUES ('NEG2', 'x', -5)`);
    expect(insert.code).toBe('23514');
    expect(negativeStock).toContain(insert.constraint_name);
    expect(await stockOf('NEG')).toEqual({ stock_quantity: 1, reserved_stock: 0, in_stock: true });
  });

  it('refuses a negative price (23514)', async () => {
    const err = await refusal(t.sql`INSERT INTO products (sku, name, price) VALUES ('CHEAP', 'x', -1)`);
    expect(err.code).toBe('23514');
    expect(err.constraint_name).toBe('products_price_nonnegative');
  });

  it('derives in_stock from available units, and nobody can write it', async () => {
    await product('GEN', 2);
    expect((await stockOf('GEN')).in_stock).toBe(true);
    await t.sql`UPDATE products SET reserved_stock = 1 WHERE sku = 'GEN'`;
    expect((await stockOf('GEN')).in_stock).toBe(true);
    await t.sql`UPDATE products SET reserved_stock = 2 WHERE sku = 'GEN'`;
    expect(await stockOf('GEN')).toEqual({ stock_quantity: 2, reserved_stock: 2, in_stock: false });
    await t.sql`UPDATE products SET reserved_stock = 0, stock_quantity = 0 WHERE sku = 'GEN'`;
    expect(await stockOf('GEN')).toEqual({ stock_quantity: 0, reserved_stock: 0, in_stock: false });

    const write = await refusal(t.sql`UPDATE products SET in_stock = true WHERE sku = 'GEN'`);
    expect(write.code).toBe('428C9'); // generated column
    expect((await stockOf('GEN')).in_stock).toBe(false);
  });

  it('refuses a duplicate SKU (23505)', async () => {
    await product('DUP', 1);
    const err = await refusal(product('DUP', 7));
    expect(err.code).toBe('23505');
    expect(err.constraint_name).toBe('products_sku_key');
    const [{ count }] = await t.sql<{ count: number }[]>`SELECT count(*)::int AS count FROM products WHERE sku = 'DUP'`;
    expect(count).toBe(1);
  });
});

describe('product variants', () => {
  it('have the same guards as products', async () => {
    const parent = await product('PARENT', 0);
    await t.sql`INSERT INTO product_variants (product_id, sku, name, stock_quantity) VALUES (${parent}, 'PARENT-M', 'M', 4)`;

    const over = await refusal(t.sql`UPDATE product_variants SET reserved_stock = stock_quantity + 1 WHERE sku = 'PARENT-M'`);
    expect(over.code).toBe('23514');
    expect(over.constraint_name).toBe('product_variants_reserved_within_stock');

    const negative = await refusal(t.sql`UPDATE product_variants SET reserved_stock = -1 WHERE sku = 'PARENT-M'`);
    expect(negative.code).toBe('23514');
    expect(negative.constraint_name).toBe('product_variants_reserved_nonnegative');

    const dup = await refusal(
      t.sql`INSERT INTO product_variants (product_id, sku, name) VALUES (${parent}, 'PARENT-M', 'M again')`,
    );
    expect(dup.code).toBe('23505');
    expect(dup.constraint_name).toBe('product_variants_sku_key');

    await t.sql`UPDATE product_variants SET reserved_stock = 4 WHERE sku = 'PARENT-M'`;
    const [variant] = await t.sql`SELECT in_stock FROM product_variants WHERE sku = 'PARENT-M'`;
    expect(variant.in_stock).toBe(false);
  });

  it('replace their product as the stock row addressed by SKU (stock_items)', async () => {
    const parent = await product('SHIRT', 0);
    await product('MUG', 3);
    await t.sql`INSERT INTO product_variants (product_id, sku, name, stock_quantity) VALUES (${parent}, 'SHIRT-L', 'L', 2)`;
    const items = await t.sql<{ sku: string; variant: boolean }[]>`
      SELECT sku, variant_id IS NOT NULL AS variant FROM stock_items WHERE sku IN ('SHIRT', 'SHIRT-L', 'MUG') ORDER BY sku`;
    expect(items).toEqual([
      { sku: 'MUG', variant: false },
      { sku: 'SHIRT-L', variant: true },
    ]);
  });
});
