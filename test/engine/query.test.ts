/**
 * The query layer: statements are prepared by default, and never when the pool is opened
 * with prepare: false (STOCKCTL_PREPARE=0), as PgBouncer in transaction mode needs.
 */
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/client.js';
import { rows } from '../../src/db/query.js';
import { reserveOrder } from '../../src/engine/orders.js';
import { useTestDatabase } from '../helpers/db.js';
import { ACTOR, SETTINGS, addProducts } from './_support.js';

const t = useTestDatabase();

describe('prepared statements', () => {
  it('the reserve statement is prepared by default, and not with prepare: false', async () => {
    await addProducts(t.db, { PREP: 10 });
    const prepared: Record<string, number> = {};
    for (const prepare of [true, false]) {
      // One connection: pg_prepared_statements shows only the session's own.
      const database = await openDatabase({ url: t.url, max: 1, prepare });
      try {
        await reserveOrder(database.db, { lines: [{ sku: 'PREP', quantity: 1 }], actor: ACTOR }, SETTINGS);
        const [{ n }] = await rows<{ n: number }>(
          database.db,
          sql`SELECT count(*)::int AS n FROM pg_prepared_statements WHERE statement LIKE '%INSERT INTO orders%'`,
        );
        prepared[String(prepare)] = n;
      } finally {
        await database.close();
      }
    }
    expect(prepared).toEqual({ true: 1, false: 0 });
  });
});
