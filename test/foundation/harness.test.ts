/**
 * The test harness itself: each file gets a migrated database of its own, and a pool
 * left open fails the file instead of passing silently.
 */
import postgres from 'postgres';
import { describe, expect, inject, it } from 'vitest';
import { schemaState } from '../../src/db/migrate.js';
import { createTestDatabase } from '../helpers/db.js';
import { adminClient } from '../helpers/pg.js';
import { insertProduct } from '../helpers/stock.js';

async function databaseExists(name: string): Promise<boolean> {
  const admin = adminClient(inject('testServer').adminUrl);
  try {
    const rows = await admin`SELECT 1 FROM pg_database WHERE datname = ${name}`;
    return rows.length === 1;
  } finally {
    await admin.end({ timeout: 5 });
  }
}

describe('test databases', () => {
  it('are migrated clones that do not share rows, and are dropped afterwards', async () => {
    const a = await createTestDatabase();
    const b = await createTestDatabase();
    try {
      expect(a.name).not.toBe(b.name);
      expect(await schemaState(a.sql)).toMatchObject({ migrated: true, unknown: 0 });
      await insertProduct(a.sql, { sku: 'ONLY-A', name: 'a', stock: 1 });
      expect(await a.sql`SELECT sku, stock_quantity FROM stock_items WHERE sku = 'ONLY-A'`).toEqual([{ sku: 'ONLY-A', stock_quantity: 1 }]);
      const inB = await b.sql`SELECT sku FROM products WHERE sku = 'ONLY-A'`;
      expect(inB).toHaveLength(0);
      expect(await b.sql`SELECT sku FROM stock_levels WHERE sku = 'ONLY-A'`).toHaveLength(0);
    } finally {
      await a.drop();
      await b.drop();
    }
    expect(await databaseExists(a.name)).toBe(false);
    expect(await databaseExists(b.name)).toBe(false);
  });

  it('refuse to be dropped quietly while a pool is still connected, naming it', async () => {
    const database = await createTestDatabase();
    const leaky = postgres(database.url, { max: 1, onnotice: () => {}, connection: { application_name: 'leaky-pool' } });
    try {
      await leaky`SELECT 1`;
      await expect(database.drop()).rejects.toThrow(/leaky-pool.*Every pool must be closed/s);
      // ...but the database is still cleaned up.
      expect(await databaseExists(database.name)).toBe(false);
    } finally {
      await leaky.end({ timeout: 1 }).catch(() => {});
    }
  });
});
