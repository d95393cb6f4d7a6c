/**
 * Stock made in SQL, for tests that go round stockctl on purpose. A product's stock row
 * is its level at the location 'default' (the one location every database has).
 */
import type postgres from 'postgres';

export interface SeededProduct {
  sku: string;
  name: string;
  price?: number;
  stock?: number;
  reserved?: number;
  location?: string;
}

/**
 * A product and its stock level, and nothing else: no ledger row, as a row written by
 * another program would be (so `verify` sees units the ledger does not know).
 */
export async function insertProduct(sql: postgres.Sql, p: SeededProduct): Promise<{ product_id: string }> {
  const [product] = await sql<{ product_id: string }[]>`
    INSERT INTO products (sku, name, price) VALUES (${p.sku}, ${p.name}, ${p.price ?? 0}) RETURNING product_id`;
  await sql`
    INSERT INTO stock_levels (sku, location, product_id, stock_quantity, reserved_stock)
    VALUES (${p.sku}, ${p.location ?? 'default'}, ${product.product_id}, ${p.stock ?? 0}, ${p.reserved ?? 0})`;
  return product;
}
