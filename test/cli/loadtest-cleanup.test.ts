/**
 * `loadtest --cleanup` when someone made an order that mixes a loadtest SKU with a real
 * one: that order is not the loadtest's to delete. It stays whole (with the loadtest SKUs it
 * holds), everything else goes, the exit is 0 with a note naming the order, and the next
 * run does not call what it cannot remove a leftover.
 */
import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();

interface Removed {
  runs: string[];
  skus: number;
  orders: number;
  kept: { skus: string[]; orders: number; holders: { order_id: string; ref: string | null; status: string; skus: string[]; real_skus: string[] }[] };
}

describe('loadtest --cleanup with an order that also holds a real SKU', () => {
  it('removes what is the loadtest\'s, keeps the mixed orders whole and names them, exit 0; verify passes; the next run finds no leftovers', async () => {
    expect((await t.cli(['product', 'add', 'REAL', '--name', 'Real', '--stock', '10'])).code).toBe(0);
    const kept = await t.cliJson<{ run_id: string }>(['loadtest', '--buyers', '2', '--stock', '5', '--concurrency', '2', '--keep'], { timeoutMs: 60_000 });
    expect(kept.code, kept.stderr).toBe(0);
    const sku = (strategy: string) => `loadtest-${kept.json.run_id}-${strategy}-0`;
    // Two orders of a person's, each with a loadtest SKU beside REAL: one cancelled, one pending.
    expect((await t.cli(['reserve', `${sku('guarded')}:1`, 'REAL:1', '--ref', 'mixed-cancelled'])).code).toBe(0);
    expect((await t.cli(['cancel', 'mixed-cancelled'])).code).toBe(0);
    expect((await t.cli(['reserve', `${sku('locking')}:1`, 'REAL:2', '--ref', 'mixed-pending'])).code).toBe(0);
    const [realBefore] = await t.sql`SELECT stock_quantity, reserved_stock, version FROM stock_levels WHERE sku = 'REAL'`;

    const cleanup = await t.cliJson<{ removed: Removed }>(['loadtest', '--cleanup']);
    expect(cleanup.code, cleanup.stderr).toBe(0);
    expect(cleanup.json.removed).toMatchObject({ runs: [kept.json.run_id], skus: 2, orders: 4 });
    expect(cleanup.json.removed.kept).toMatchObject({ skus: [sku('guarded'), sku('locking')], orders: 6 });
    expect(cleanup.json.removed.kept.holders.map((h) => [h.ref, h.status, h.skus, h.real_skus])).toEqual([
      ['mixed-cancelled', 'cancelled', [sku('guarded')], ['REAL']],
      ['mixed-pending', 'pending', [sku('locking')], ['REAL']],
    ]);
    const ids = await t.sql`SELECT order_id FROM orders WHERE ref IN ('mixed-cancelled', 'mixed-pending') ORDER BY ref`;
    for (const { order_id } of ids) expect(cleanup.stderr).toContain(order_id);

    const left = await t.sql`SELECT sku FROM products WHERE sku LIKE 'loadtest-%' ORDER BY sku`;
    expect(left.map((r) => r.sku)).toEqual([sku('guarded'), sku('locking')]);
    const [realAfter] = await t.sql`SELECT stock_quantity, reserved_stock, version FROM stock_levels WHERE sku = 'REAL'`;
    expect(realAfter).toEqual(realBefore);
    expect(await t.cli(['verify'])).toMatchObject({ code: 0, stderr: '' });

    // What cannot be removed is not a leftover: the next run is silent about it.
    const next = await t.cli(['loadtest', '--buyers', '2', '--stock', '1', '--strategy', 'guarded', '--json'], { timeoutMs: 60_000 });
    expect(next).toMatchObject({ code: 0, stderr: '' });
    const again = await t.cli(['loadtest', '--cleanup']);
    expect(again.code).toBe(0);
    expect(again.stdout).toBe('No loadtest leftovers found.\n');
    expect(again.stderr).toContain('mixed-pending');
  });
});
