/**
 * `stockctl verify [--repair]` as ops meet it: a spawned bin/stockctl, its stdout, stderr
 * and exit code asserted separately, and the ledger checked afterwards. Each test leaves
 * the database consistent again, so the tests can run in any order.
 */
import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();

const OK_LINE = 'Every invariant holds: counters, reservations, orders and the ledger agree.\n';

async function addProduct(sku: string, stock: number) {
  const res = await t.cli(['product', 'add', sku, '--name', `Product ${sku}`, '--stock', String(stock)], {
    env: { STOCKCTL_ACTOR: 'setup' },
  });
  expect(res, res.stderr).toMatchObject({ code: 0, stderr: '' });
}

async function reserve(args: string[]) {
  const res = await t.cliJson<{ order_id: string }>(['reserve', ...args], { env: { STOCKCTL_ACTOR: 'setup' } });
  expect(res, res.stderr).toMatchObject({ code: 0, stderr: '' });
  return res.json;
}

async function stockRow(sku: string) {
  const [row] = await t.sql<{ stock_quantity: number; reserved_stock: number }[]>`
    SELECT stock_quantity, reserved_stock FROM stock_items WHERE sku = ${sku}`;
  return row;
}

async function ledger(sku: string) {
  return t.sql<{ kind: string; stock_delta: number; reserved_delta: number; actor: string; reason: string | null }[]>`
    SELECT kind, stock_delta, reserved_delta, actor, reason FROM stock_movements WHERE sku = ${sku} ORDER BY movement_id`;
}

async function expectClean() {
  const res = await t.cli(['verify']);
  expect(res, res.stdout + res.stderr).toEqual(expect.objectContaining({ code: 0, stdout: OK_LINE, stderr: '' }));
}

describe('verify on a consistent database', () => {
  it('exits 0 and says so, on stdout only', async () => {
    await addProduct('CLEAN', 7);
    await reserve(['CLEAN:2', '--ref', 'clean-1']);
    const [, json, repair] = await Promise.all([expectClean(), t.cliJson(['verify']), t.cliJson(['verify', '--repair'])]);
    expect(json.code).toBe(0);
    expect(json.stderr).toBe('');
    expect(json.json).toEqual({ ok: true, violations: [], repairs: [] });

    expect(repair.code).toBe(0);
    expect(repair.stderr).toBe('');
    expect(repair.json).toEqual({ ok: true, violations: [], repairs: [], remaining: [] });
  });
});

describe('verify after a change made outside stockctl', () => {
  it('exits 6 naming the SKU; --repair records the drift and corrects reserved through the ledger', async () => {
    await addProduct('DRIFT', 10);
    await reserve(['DRIFT:2', '--ref', 'drift-1']);
    await t.sql`UPDATE stock_levels SET reserved_stock = reserved_stock + 1, stock_quantity = stock_quantity + 3 WHERE sku = 'DRIFT' AND location = 'default'`;

    const [human, json] = await Promise.all([t.cli(['verify']), t.cliJson(['verify'])]);
    expect(human.code).toBe(6);
    expect(human.stderr).toBe('');
    expect(human.stdout).toBe(
      [
        '✗ DRIFT: reserved_stock 3 but active reservations hold 2',
        '✗ DRIFT: reserved_stock 3 but the ledger sums to 2',
        '✗ DRIFT: stock_quantity 13 but the ledger sums to 10',
        '3 problem(s). Run `stockctl verify --repair` to fix counters through the ledger.',
        '',
      ].join('\n'),
    );

    expect(json.code).toBe(6);
    expect(json.stderr).toBe('');
    expect(json.json).toEqual({
      ok: false,
      violations: [
        { kind: 'reserved_vs_reservations', sku: 'DRIFT', message: 'DRIFT: reserved_stock 3 but active reservations hold 2' },
        { kind: 'reserved_vs_ledger', sku: 'DRIFT', message: 'DRIFT: reserved_stock 3 but the ledger sums to 2' },
        { kind: 'stock_vs_ledger', sku: 'DRIFT', message: 'DRIFT: stock_quantity 13 but the ledger sums to 10' },
      ],
      repairs: [],
    });
    // Looking changes nothing.
    expect(await ledger('DRIFT')).toHaveLength(2);
    expect(await stockRow('DRIFT')).toEqual({ stock_quantity: 13, reserved_stock: 3 });

    const repaired = await t.cliJson(['verify', '--repair', '--actor', 'night-ops'], { env: { STOCKCTL_ACTOR: 'someone-else' } });
    expect(repaired.code).toBe(0);
    expect(repaired.stderr).toBe('');
    expect(repaired.json).toEqual({
      ok: true,
      violations: (json.json as { violations: unknown[] }).violations,
      repairs: [{ sku: 'DRIFT', recorded_drift: { stock_delta: 3, reserved_delta: 1 }, reserved_correction: -1 }],
      remaining: [],
    });

    // Exactly one drift and one repair row, with the right deltas and the actor; never a silent overwrite.
    expect(await ledger('DRIFT')).toEqual([
      { kind: 'initial', stock_delta: 10, reserved_delta: 0, actor: 'setup', reason: 'initial stock' },
      { kind: 'reserve', stock_delta: 0, reserved_delta: 2, actor: 'setup', reason: null },
      { kind: 'drift', stock_delta: 3, reserved_delta: 1, actor: 'night-ops', reason: 'verify --repair: change made outside stockctl' },
      { kind: 'repair', stock_delta: 0, reserved_delta: -1, actor: 'night-ops', reason: 'verify --repair: reserved_stock to match active reservations' },
    ]);
    // reserved back in line with the active reservation; the extra units on hand are now on the books.
    expect(await stockRow('DRIFT')).toEqual({ stock_quantity: 13, reserved_stock: 2 });

    await expectClean();

    // A second repair has nothing to do and writes nothing.
    const again = await t.cli(['verify', '--repair']);
    expect(again).toMatchObject({ code: 0, stdout: OK_LINE, stderr: '' });
    expect(await ledger('DRIFT')).toHaveLength(4);
  });

  it('verify --repair in human form says what it changed', async () => {
    await addProduct('DRIFT-H', 4);
    await t.sql`UPDATE stock_levels SET reserved_stock = reserved_stock + 1, stock_quantity = stock_quantity + 3 WHERE sku = 'DRIFT-H' AND location = 'default'`;

    const res = await t.cli(['verify', '--repair'], { env: { STOCKCTL_ACTOR: 'cron' } });
    expect(res.code).toBe(0);
    expect(res.stderr).toBe('');
    expect(res.stdout).toBe(
      [
        '✗ DRIFT-H: reserved_stock 1 but active reservations hold 0',
        '✗ DRIFT-H: reserved_stock 1 but the ledger sums to 0',
        '✗ DRIFT-H: stock_quantity 7 but the ledger sums to 4',
        'repaired DRIFT-H: recorded an outside change (on hand 3, reserved 1) in the ledger; corrected reserved by -1',
        'All repaired.',
        '',
      ].join('\n'),
    );
    const rows = await ledger('DRIFT-H');
    expect(rows.filter((r) => r.kind === 'drift')).toEqual([
      expect.objectContaining({ stock_delta: 3, reserved_delta: 1, actor: 'cron' }),
    ]);
    expect(rows.filter((r) => r.kind === 'repair')).toEqual([
      expect.objectContaining({ stock_delta: 0, reserved_delta: -1, actor: 'cron' }),
    ]);
    expect(await stockRow('DRIFT-H')).toEqual({ stock_quantity: 7, reserved_stock: 0 });
    await expectClean();
  });

  it('verify --repair cannot raise reserved above on hand: it names the SKU and exits 6 instead of crashing', async () => {
    // Units held by a pending order were lost outside stockctl: reserved cannot be put
    // back to 2 with only 1 on hand. That needs a person (exit 6), not an internal error (exit 1).
    await addProduct('LOST', 2);
    const order = await reserve(['LOST:2', '--ref', 'lost-1']);
    await t.sql`UPDATE stock_levels SET reserved_stock = 0, stock_quantity = 1 WHERE sku = 'LOST' AND location = 'default'`;

    const res = await t.cliJson<{ ok: boolean; remaining: { sku?: string }[] }>(['verify', '--repair']);
    try {
      expect(res.stderr).toBe('');
      expect(res.json, 'verify --repair must report the SKU it cannot repair, not fail with an internal error').toMatchObject({ ok: false });
      expect(res.json.remaining.map((v) => v.sku)).toContain('LOST');
      expect(res.code).toBe(6);
    } finally {
      // Put things back in line for the other tests, whatever happened above.
      await t.sql`DELETE FROM stock_movements WHERE sku = 'LOST' AND kind IN ('drift', 'repair')`;
      await t.sql`UPDATE stock_levels SET reserved_stock = 2, stock_quantity = 2 WHERE sku = 'LOST' AND location = 'default'`;
      const cancelled = await t.cli(['cancel', order.order_id]);
      expect(cancelled.code).toBe(0);
    }
  });
});

describe('verify and orders', () => {
  it('reports a cancelled order that still holds an active reservation (exit 6); --repair leaves it to a person', async () => {
    await addProduct('ORD', 5);
    const order = await reserve(['ORD:1', '--ref', 'ord-1']);
    await t.sql`UPDATE orders SET status = 'cancelled', cancelled_at = now() WHERE order_id = ${order.order_id}`;
    const message = `order ${order.order_id} is cancelled but still holds 1 active reservation(s)`;

    const [human, json] = await Promise.all([t.cli(['verify']), t.cliJson(['verify'])]);
    expect(human.code).toBe(6);
    expect(human.stderr).toBe('');
    expect(human.stdout).toBe(
      `✗ ${message}\n1 problem(s). Run \`stockctl verify --repair\` to fix counters through the ledger.\n`,
    );

    expect(json.code).toBe(6);
    expect(json.stderr).toBe('');
    expect(json.json).toEqual({
      ok: false,
      violations: [{ kind: 'closed_with_active_reservations', order_id: order.order_id, message }],
      repairs: [],
    });

    // The counters are right; there is nothing for --repair to change, so the problem remains.
    const movements = (await t.sql`SELECT count(*)::int AS n FROM stock_movements`)[0].n;
    const repair = await t.cliJson(['verify', '--repair']);
    expect(repair.code).toBe(6);
    expect(repair.stderr).toBe('');
    expect(repair.json).toEqual({
      ok: false,
      violations: [{ kind: 'closed_with_active_reservations', order_id: order.order_id, message }],
      repairs: [],
      remaining: [{ kind: 'closed_with_active_reservations', order_id: order.order_id, message }],
    });
    expect((await t.sql`SELECT count(*)::int AS n FROM stock_movements`)[0].n).toBe(movements);

    // Put it back and cancel it properly: consistent again.
    await t.sql`UPDATE orders SET status = 'pending', cancelled_at = NULL WHERE order_id = ${order.order_id}`;
    expect((await t.cli(['cancel', order.order_id])).code).toBe(0);
    await expectClean();
  });

  it('reports a pending order that holds no reservation (exit 6), naming the order', async () => {
    await addProduct('ORD2', 5);
    const order = await reserve(['ORD2:1', '--ref', 'ord-2']);
    // The reservation is released outside stockctl, counters and ledger included.
    await t.sql`UPDATE stock_reservations SET status = 'cancelled' WHERE order_id = ${order.order_id}`;
    await t.sql`UPDATE stock_levels SET reserved_stock = 0 WHERE sku = 'ORD2' AND location = 'default'`;
    await t.sql`INSERT INTO stock_movements (product_id, sku, location, kind, stock_delta, reserved_delta, actor, reason)
                SELECT product_id, sku, location, 'release', 0, -1, 'test', 'by hand' FROM stock_levels WHERE sku = 'ORD2' AND location = 'default'`;

    const json = await t.cliJson(['verify']);
    expect(json.code).toBe(6);
    expect(json.stderr).toBe('');
    expect(json.json).toEqual({
      ok: false,
      violations: [
        {
          kind: 'pending_without_reservations',
          order_id: order.order_id,
          message: `order ${order.order_id} is pending but holds no active reservation`,
        },
      ],
      repairs: [],
    });

    await t.sql`UPDATE orders SET status = 'cancelled', cancelled_at = now() WHERE order_id = ${order.order_id}`;
    await expectClean();
  });
});
