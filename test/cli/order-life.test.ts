/**
 * The README's "one order's life", and what support staff do with orders, through the
 * CLI: a spawned bin/stockctl, stdout, stderr and exit code asserted separately, and the
 * database checked afterwards.
 *
 * The tests share one database and run in file order. Only the sweep tests let an order's
 * window pass; every other test leaves no order due, so the sweep counts are exact.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const SHOP = { env: { STOCKCTL_ACTOR: 'shop' } };

interface Reserved {
  order_id: string;
  ref: string | null;
  payment_expires_at: string;
  items: { sku: string; quantity: number; reservation_id: string; allocations: { location: string; quantity: number; reservation_id: string }[] }[];
}

async function ok(args: string[], opts = SHOP) {
  const res = await t.cli(args, opts);
  expect(res, `stockctl ${args.join(' ')}: ${res.stderr}`).toMatchObject({ code: 0, stderr: '' });
  return res;
}

async function reserve(args: string[]): Promise<Reserved> {
  const res = await t.cliJson<Reserved>(['reserve', ...args], SHOP);
  expect(res, `stockctl reserve ${args.join(' ')}: ${res.stdout}`).toMatchObject({ code: 0, stderr: '' });
  return res.json;
}

async function stockRow(sku: string) {
  const [row] = await t.sql<{ stock_quantity: number; reserved_stock: number }[]>`
    SELECT stock_quantity, reserved_stock FROM stock_items WHERE sku = ${sku}`;
  return row;
}

async function orderRow(ref: string) {
  const [row] = await t.sql<{ status: string; payment_status: string }[]>`
    SELECT status, payment_status FROM orders WHERE ref = ${ref}`;
  return row;
}

async function counts() {
  const [row] = await t.sql`
    SELECT (SELECT count(*)::int FROM orders) AS orders,
           (SELECT count(*)::int FROM stock_reservations) AS reservations,
           (SELECT count(*)::int FROM stock_movements) AS movements,
           (SELECT coalesce(sum(reserved_stock), 0)::int FROM stock_items) AS reserved`;
  return row;
}

/** Move an order's window (and its reservations') into the past, as if its TTL had run out. */
async function letExpire(ref: string) {
  await t.sql`UPDATE orders SET payment_expires_at = now() - interval '1 minute' WHERE ref = ${ref}`;
  await t.sql`UPDATE stock_reservations SET expires_at = now() - interval '1 minute'
               WHERE status = 'active' AND order_id = (SELECT order_id FROM orders WHERE ref = ${ref})`;
}

beforeAll(async () => {
  await Promise.all([
    ok(['product', 'add', 'TEE', '--name', 'T-shirt', '--price', '19.99', '--stock', '10']),
    ok(['product', 'add', 'MUG', '--name', 'Mug', '--price', '7.50', '--stock', '20']),
    ok(['product', 'add', 'SHORT-A', '--name', 'Short A', '--stock', '3']),
    ok(['product', 'add', 'SHORT-B', '--name', 'Short B', '--stock', '1']),
  ]);
});

describe('reserve, then pay', () => {
  let order: Reserved;

  it('reserve --json prints the documented fields; the window is the --ttl on the database clock', async () => {
    const res = await t.cliJson<Reserved & Record<string, unknown>>(
      ['reserve', 'TEE:2', '--customer', 'c42', '--ref', 'cart-1001', '--ttl', '15m'],
      SHOP,
    );
    expect(res.code).toBe(0);
    expect(res.stderr).toBe('');
    order = res.json;
    expect(Object.keys(res.json)).toEqual([
      'order_id',
      'ref',
      'status',
      'customer_id',
      'payment_expires_at',
      'payment_method',
      'payment_window_seconds',
      'priority',
      'total',
      'strategy',
      'attempts',
      'replay',
      'items',
      'retries',
      'expired_orders_released',
    ]);
    expect(res.json).toEqual({
      order_id: expect.stringMatching(UUID),
      ref: 'cart-1001',
      status: 'pending',
      customer_id: 'c42',
      payment_expires_at: expect.stringMatching(ISO),
      payment_method: null,
      payment_window_seconds: 900,
      priority: null,
      total: 3998,
      strategy: 'guarded',
      attempts: 1,
      replay: false,
      items: [
        {
          sku: 'TEE',
          quantity: 2,
          reservation_id: expect.stringMatching(UUID),
          // One location: the whole line from 'default', under the line's own reservation.
          allocations: [{ location: 'default', quantity: 2, reservation_id: res.json.items[0]?.reservation_id }],
        },
      ],
      retries: 0,
      expired_orders_released: 0,
    });
    const [db] = await t.sql`
      SELECT status, customer_id, created_by, extract(epoch FROM payment_expires_at - created_at)::int AS ttl,
             to_char(payment_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS expires
        FROM orders WHERE order_id = ${order.order_id}`;
    expect(db).toEqual({ status: 'pending', customer_id: 'c42', created_by: 'shop', ttl: 900, expires: order.payment_expires_at });
    expect(await stockRow('TEE')).toEqual({ stock_quantity: 10, reserved_stock: 2 });

    // The same request again: the same order, nothing more reserved. The ref covers the
    // whole request, so the same items for another customer are a conflict (exit 5).
    const replay = await t.cliJson<Reserved & { replay: boolean }>(['reserve', 'TEE:2', '--customer', 'c42', '--ttl', '15m', '--ref', 'cart-1001'], SHOP);
    expect(replay.code).toBe(0);
    const other = await t.cliJson<{ error: { code: string } }>(['reserve', 'TEE:2', '--ref', 'cart-1001'], SHOP);
    expect(other).toMatchObject({ code: 5, json: { error: { code: 'ref_conflict' } } });
    expect(replay.json).toMatchObject({ order_id: order.order_id, replay: true, status: 'pending' });
    expect(await stockRow('TEE')).toEqual({ stock_quantity: 10, reserved_stock: 2 });
  });

  it('pay converts the reservation into a sale; paying again is exit 0 and changes nothing', async () => {
    const paid = await t.cliJson(['pay', 'cart-1001', '--payment-ref', 'pi_123'], SHOP);
    expect(paid.code).toBe(0);
    expect(paid.stderr).toBe('');
    expect(paid.json).toEqual({
      order_id: order.order_id,
      ref: 'cart-1001',
      status: 'paid',
      paid_at: expect.stringMatching(ISO),
      payment_ref: 'pi_123',
      replay: false,
      late: false,
      units_sold: 2,
    });
    const paidAt = (paid.json as { paid_at: string }).paid_at;
    expect(await stockRow('TEE')).toEqual({ stock_quantity: 8, reserved_stock: 0 });
    expect(await orderRow('cart-1001')).toEqual({ status: 'paid', payment_status: 'paid' });
    const before = await counts();

    const again = await t.cliJson(['pay', 'cart-1001', '--payment-ref', 'pi_123'], SHOP);
    expect(again.code).toBe(0);
    expect(again.stderr).toBe('');
    expect(again.json).toEqual({ ...(paid.json as object), replay: true, units_sold: 0 });

    const human = await t.cli(['pay', order.order_id], SHOP);
    expect(human.code).toBe(0);
    expect(human.stderr).toBe('');
    expect(human.stdout).toBe(`Order ${order.order_id} (ref cart-1001) was already paid at ${paidAt}; nothing changed.\n`);

    expect(await counts()).toEqual(before);
    expect(await stockRow('TEE')).toEqual({ stock_quantity: 8, reserved_stock: 0 });
  });
});

describe('reserve, then cancel by hand', () => {
  it('cancel --reason releases the units and records who and why', async () => {
    const reserved = await t.cli(['reserve', 'TEE:1', '--ref', 'cart-1002'], SHOP);
    expect(reserved.code).toBe(0);
    expect(reserved.stderr).toBe('');
    const [line1, line2, rest] = reserved.stdout.split('\n');
    expect(line1).toMatch(/^Reserved TEE×1 as order [0-9a-f-]{36} \(ref cart-1002\), total 19\.99\.$/);
    expect(line2).toMatch(/^Pay before \d{4}-\d{2}-\d{2}T[\d:.]+Z: stockctl pay cart-1002$/);
    expect(rest).toBe('');
    expect(await stockRow('TEE')).toEqual({ stock_quantity: 8, reserved_stock: 1 });

    const cancelled = await t.cli(['cancel', 'cart-1002', '--reason', 'customer asked', '--actor', 'alice'], {
      env: { STOCKCTL_ACTOR: 'not-alice' },
    });
    expect(cancelled).toMatchObject({ code: 0, stderr: '', stdout: 'cancelled  cart-1002: released 1 unit(s)\n' });
    expect(await stockRow('TEE')).toEqual({ stock_quantity: 8, reserved_stock: 0 });

    const [shown, human] = await Promise.all([
      t.cliJson<Record<string, unknown>>(['orders', 'show', 'cart-1002']),
      t.cli(['orders', 'show', 'cart-1002']),
    ]);
    expect(shown.code).toBe(0);
    expect(shown.stderr).toBe('');
    expect(shown.json).toMatchObject({
      ref: 'cart-1002',
      status: 'cancelled',
      payment_status: 'void',
      cancel_reason: 'customer asked',
      cancelled_by: 'alice',
      cancelled_at: expect.stringMatching(ISO),
      created_by: 'shop',
      seconds_left: null,
      items: [{ sku: 'TEE', name: 'T-shirt', unit_price: 1999, quantity: 1, line_total: 1999 }],
      reservations: [expect.objectContaining({ sku: 'TEE', quantity: 1, status: 'cancelled', released_at: expect.stringMatching(ISO) })],
      movements: [
        expect.objectContaining({ sku: 'TEE', kind: 'reserve', stock_delta: 0, reserved_delta: 1, actor: 'shop', reason: null }),
        expect.objectContaining({ sku: 'TEE', kind: 'release', stock_delta: 0, reserved_delta: -1, actor: 'alice', reason: 'customer asked' }),
      ],
    });

    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^Cancelled \S+ by alice: customer asked$/m);

    // Again: exit 0, nothing changes.
    const before = await counts();
    const again = await t.cli(['cancel', 'cart-1002', '--reason', 'twice']);
    expect(again).toMatchObject({ code: 0, stderr: '', stdout: 'unchanged  cart-1002: already cancelled\n' });
    expect(await counts()).toEqual(before);

    // A cancelled order cannot be paid.
    const pay = await t.cli(['pay', 'cart-1002']);
    expect(pay.code).toBe(5);
    expect(pay.stdout).toBe('');
    expect(pay.stderr).toMatch(/^error: Order [0-9a-f-]{36} was cancelled \(customer asked\); it cannot be paid\.\n$/);
  });
});

describe('reserve, let it expire, sweep', () => {
  it('sweep --quiet prints nothing at all; the order is cancelled with "Payment timeout" and its units are back', async () => {
    await reserve(['TEE:1', '--ref', 'cart-1003', '--ttl', '1s']);
    expect(await stockRow('TEE')).toEqual({ stock_quantity: 8, reserved_stock: 1 });
    await new Promise((resolve) => setTimeout(resolve, 1300));

    const swept = await t.cli(['sweep', '--quiet'], { env: { STOCKCTL_ACTOR: 'cron' } });
    expect(swept.code).toBe(0);
    expect(swept.stdout).toBe('');
    expect(swept.stderr).toBe('');

    const [shown, human] = await Promise.all([
      t.cliJson<{ admin_notes: string; reservations: { status: string }[] }>(['orders', 'show', 'cart-1003']),
      t.cli(['orders', 'show', 'cart-1003']),
    ]);
    expect(shown.code).toBe(0);
    expect(shown.json).toMatchObject({
      status: 'cancelled',
      payment_status: 'expired',
      cancelled_by: 'cron',
      cancel_reason: 'Payment timeout',
      reservations: [expect.objectContaining({ status: 'expired' })],
      movements: [
        expect.objectContaining({ kind: 'reserve', reserved_delta: 1 }),
        expect.objectContaining({ kind: 'expire', stock_delta: 0, reserved_delta: -1, actor: 'cron', reason: 'Payment timeout' }),
      ],
    });
    expect(shown.json.admin_notes).toContain('Payment timeout');
    expect(await stockRow('TEE')).toEqual({ stock_quantity: 8, reserved_stock: 0 });

    expect(human.code).toBe(0);
    expect(human.stderr).toBe('');
    expect(human.stdout).toContain('\nStatus: cancelled (payment expired)  total 19.99  customer -\n');
    expect(human.stdout).toContain('\nNotes: Payment timeout\n');

    // The sweep was recorded.
    const runs = await t.sql`SELECT dry_run, actor, orders_expired, units_released, error FROM sweep_runs ORDER BY run_id`;
    expect(runs).toEqual([{ dry_run: false, actor: 'cron', orders_expired: 1, units_released: 1, error: null }]);

    // Paying it now is refused (exit 5), pointing at --allow-late.
    const late = await t.cli(['pay', 'cart-1003']);
    expect(late.code).toBe(5);
    expect(late.stdout).toBe('');
    expect(late.stderr).toContain('--allow-late');
  });

  it('sweep --dry-run counts without changing anything; sweep --json has the documented shape', async () => {
    await Promise.all([
      reserve(['TEE:2', '--ref', 'due-1']),
      reserve(['MUG:1', '--ref', 'due-2']),
      reserve(['MUG:4', '--ref', 'not-due']),
    ]);
    try {
      await letExpire('due-1');
      await letExpire('due-2');
      const before = await counts();

      const [dry, dryHuman] = await Promise.all([
        t.cliJson<Record<string, unknown>>(['sweep', '--dry-run']),
        t.cli(['sweep', '--dry-run']),
      ]);
      expect(dry.code).toBe(0);
      expect(dry.stderr).toBe('');
      expect(dry.json).toEqual({
        run_id: expect.any(Number),
        dry_run: true,
        expired_orders: 2,
        released_units: 3,
        batches: 0,
        remaining_due: 0,
        interrupted: false,
        duration_ms: expect.any(Number),
      });
      expect(dryHuman).toMatchObject({ code: 0, stderr: '', stdout: 'Would expire 2 order(s), releasing 3 unit(s).\n' });
      expect(await counts()).toEqual(before);
      expect(await orderRow('due-1')).toEqual({ status: 'pending', payment_status: 'awaiting' });

      const res = await t.cliJson<Record<string, unknown>>(['sweep'], { env: { STOCKCTL_ACTOR: 'cron' } });
      expect(res.code).toBe(0);
      expect(res.stderr).toBe('');
      expect(Object.keys(res.json)).toEqual([
        'run_id',
        'dry_run',
        'expired_orders',
        'released_units',
        'batches',
        'remaining_due',
        'interrupted',
        'duration_ms',
      ]);
      expect(res.json).toEqual({
        run_id: expect.any(Number),
        dry_run: false,
        expired_orders: 2,
        released_units: 3,
        batches: 1,
        remaining_due: 0,
        interrupted: false,
        duration_ms: expect.any(Number),
      });
      expect(res.json.run_id).toBeGreaterThan(dry.json.run_id as number);
      expect(await orderRow('due-1')).toEqual({ status: 'cancelled', payment_status: 'expired' });
      expect(await orderRow('due-2')).toEqual({ status: 'cancelled', payment_status: 'expired' });
      expect(await orderRow('not-due')).toEqual({ status: 'pending', payment_status: 'awaiting' });
      expect(await stockRow('TEE')).toEqual({ stock_quantity: 8, reserved_stock: 0 });
      expect(await stockRow('MUG')).toEqual({ stock_quantity: 20, reserved_stock: 4 });

      // Nothing left: the human line says so.
      const nothing = await t.cli(['sweep']);
      expect(nothing.code).toBe(0);
      expect(nothing.stderr).toBe('');
      expect(nothing.stdout).toMatch(/^Expired 0 order\(s\), released 0 unit\(s\) in 0 batch\(es\), \d+ ms\.\n$/);
    } finally {
      await t.cli(['cancel', 'not-due']);
      await t.cli(['sweep', '--quiet']); // leave nothing due, whatever happened above
    }
  });

  it('sweep --batch-size N expires at most N orders per transaction', async () => {
    const refs = ['batch-1', 'batch-2', 'batch-3', 'batch-4', 'batch-5'];
    try {
      await Promise.all(refs.map((ref) => reserve(['MUG:1', '--ref', ref])));
      // Windows passed an hour ago, in the order the orders were created.
      await t.sql`UPDATE orders SET payment_expires_at = created_at - interval '1 hour' WHERE ref LIKE 'batch-%'`;
      await t.sql`UPDATE stock_reservations r SET expires_at = o.payment_expires_at
                    FROM orders o WHERE o.order_id = r.order_id AND o.ref LIKE 'batch-%'`;

      const res = await t.cliJson<Record<string, unknown>>(['sweep', '--batch-size', '2']);
      expect(res.code).toBe(0);
      expect(res.json).toMatchObject({ expired_orders: 5, released_units: 5, remaining_due: 0 });
      // Five orders, at most two per transaction: 2 + 2 + 1, three batches. (The sweep claims
      // its orders with LIMIT n ... FOR UPDATE SKIP LOCKED; a batch must not take more than n.)
      expect(res.json.batches, 'batches for 5 due orders with --batch-size 2').toBe(3);
    } finally {
      await t.cli(['sweep', '--quiet']);
    }
  });

  it('sweep --batch-size 0 is a usage error (exit 2) and records no run', async () => {
    const [{ n }] = await t.sql`SELECT count(*)::int AS n FROM sweep_runs`;
    const res = await t.cli(['sweep', '--batch-size', '0', '--quiet']);
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    expect(res.stderr).toBe('error: Invalid --batch-size "0": must be between 1 and 10000.\n');
    expect((await t.sql`SELECT count(*)::int AS n FROM sweep_runs`)[0].n).toBe(n);
  });
});

describe('cancelling several orders', () => {
  it('one unknown order: the others are cancelled, each is reported, and the exit code is 4', async () => {
    await Promise.all([reserve(['MUG:1', '--ref', 'many-1']), reserve(['MUG:2', '--ref', 'many-2'])]);

    const res = await t.cli(['cancel', 'many-1', 'nope', 'many-2', '--reason', 'batch'], SHOP);
    expect(res.code).toBe(4);
    expect(res.stdout).toBe('cancelled  many-1: released 1 unit(s)\ncancelled  many-2: released 2 unit(s)\n');
    expect(res.stderr).toBe('failed  nope: No order has id or ref "nope".\n');
    expect(await orderRow('many-1')).toEqual({ status: 'cancelled', payment_status: 'void' });
    expect(await orderRow('many-2')).toEqual({ status: 'cancelled', payment_status: 'void' });
    expect(await stockRow('MUG')).toEqual({ stock_quantity: 20, reserved_stock: 0 });
  });

  it('--json reports each order with its own exit code', async () => {
    const a = await reserve(['MUG:1', '--ref', 'many-3']);
    const res = await t.cliJson<Record<string, unknown>>(['cancel', 'many-3', 'nope', 'many-1'], SHOP);
    expect(res.code).toBe(4);
    expect(res.stderr).toBe('');
    expect(res.json).toEqual({
      dry_run: false,
      cancelled: 1,
      already_cancelled: 1,
      failed: 1,
      results: [
        {
          order: 'many-3',
          order_id: a.order_id,
          ref: 'many-3',
          previous_status: 'pending',
          released_units: 1,
          restocked_units: 0,
          outcome: 'cancelled',
          exit_code: 0,
        },
        {
          order: 'nope',
          outcome: 'error',
          exit_code: 4,
          error: { code: 'order_not_found', message: 'No order has id or ref "nope".' },
        },
        expect.objectContaining({ order: 'many-1', ref: 'many-1', previous_status: 'cancelled', outcome: 'already_cancelled', exit_code: 0 }),
      ],
      error: { code: 'order_not_found', message: '1 of 3 orders were not cancelled (see results); nope: No order has id or ref "nope".' },
    });
  });

  it('--json for one order that cannot be cancelled carries the one error document every command gives', async () => {
    const paid = await reserve(['MUG:1', '--ref', 'paid-json']);
    await ok(['pay', 'paid-json']);
    const res = await t.cliJson<{ error: { code: string; message: string } }>(['cancel', 'paid-json'], SHOP);
    expect(res.code).toBe(5);
    expect(res.stderr).toBe('');
    expect(res.json.error).toEqual({
      code: 'order_paid',
      message: `Order ${paid.order_id} is paid; add --restock to cancel it and put its units back on hand.`,
    });
    const unknown = await t.cliJson<{ error: { code: string } }>(['cancel', 'no-such-order'], SHOP);
    expect(unknown.code).toBe(4);
    expect(unknown.json.error.code).toBe('order_not_found');
  });

  it('the exit code is the worst of them: a paid order without --restock (5) beats an unknown one (4)', async () => {
    const [paid] = await Promise.all([reserve(['MUG:1', '--ref', 'paid-2']), reserve(['MUG:1', '--ref', 'many-4'])]);
    await ok(['pay', 'paid-2']);

    const res = await t.cli(['cancel', 'nope', 'paid-2', 'many-4'], SHOP);
    expect(res.code).toBe(5);
    expect(res.stdout).toBe('cancelled  many-4: released 1 unit(s)\n');
    expect(res.stderr).toBe(
      'failed  nope: No order has id or ref "nope".\n' +
        `failed  paid-2: Order ${paid.order_id} is paid; add --restock to cancel it and put its units back on hand.\n`,
    );
    expect(await orderRow('paid-2')).toEqual({ status: 'paid', payment_status: 'paid' });
  });

  it('--from-file - reads ids and refs from stdin, skipping comments, blank lines and repeats', async () => {
    const [f1] = await Promise.all([reserve(['MUG:1', '--ref', 'file-1']), reserve(['MUG:2', '--ref', 'file-2'])]);
    const input = `# stuck orders, from the support queue\n${f1.order_id}\n\n   file-2   # asked twice\nfile-2\n`;

    const dry = await t.cli(['cancel', '--from-file', '-', '--dry-run'], { input });
    expect(dry.code).toBe(0);
    expect(dry.stderr).toBe('');
    expect(dry.stdout).toBe(`would cancel  ${f1.order_id}: would release 1 unit(s)\nwould cancel  file-2: would release 2 unit(s)\n`);
    expect(await orderRow('file-1')).toEqual({ status: 'pending', payment_status: 'awaiting' });

    const res = await t.cli(['cancel', '--from-file', '-', '--reason', 'stuck'], { input, env: { STOCKCTL_ACTOR: 'support' } });
    expect(res.code).toBe(0);
    expect(res.stderr).toBe('');
    expect(res.stdout).toBe(`cancelled  ${f1.order_id}: released 1 unit(s)\ncancelled  file-2: released 2 unit(s)\n`);
    const rows = await t.sql`SELECT ref, status, cancel_reason, cancelled_by FROM orders WHERE ref IN ('file-1', 'file-2') ORDER BY ref`;
    expect(rows).toEqual([
      { ref: 'file-1', status: 'cancelled', cancel_reason: 'stuck', cancelled_by: 'support' },
      { ref: 'file-2', status: 'cancelled', cancel_reason: 'stuck', cancelled_by: 'support' },
    ]);
  });

  it('--from-file of a missing file, or no order and no --from-file at all, is a usage error (exit 2)', async () => {
    const [missing, none] = await Promise.all([t.cli(['cancel', '--from-file', '/nonexistent/stuck.txt']), t.cli(['cancel'])]);
    expect(missing.code).toBe(2);
    expect(missing.stdout).toBe('');
    expect(missing.stderr).toMatch(/^error: Cannot read orders from "\/nonexistent\/stuck\.txt": .*\n$/);

    expect(none.code).toBe(2);
    expect(none.stdout).toBe('');
    expect(none.stderr).toBe('error: Name at least one order (id or ref), or use --from-file FILE (- for stdin).\n');
  });

  it('an empty --from-file (or only comments and blank lines) is exit 0, "nothing to cancel", and changes nothing', async () => {
    await reserve(['MUG:1', '--ref', 'empty-file-bystander']);
    const before = await counts();
    let after: typeof before | undefined;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stockctl-cancel-'));
    const emptyFile = path.join(dir, 'empty.txt');
    fs.writeFileSync(emptyFile, '');
    const [stdin, comments, file, json] = await Promise.all([
      t.cli(['cancel', '--from-file', '-'], { input: '' }),
      t.cli(['cancel', '--from-file', '-', '--reason', 'stuck'], { input: '# nothing here\n\n   \n' }),
      t.cli(['cancel', '--from-file', emptyFile, '--dry-run']),
      t.cliJson(['cancel', '--from-file', '-'], { input: '# nothing pending\n' }),
    ])
      .then(async (results) => ((after = await counts()), results))
      .finally(() => t.cli(['cancel', 'empty-file-bystander']).then(() => fs.rmSync(dir, { recursive: true })));
    for (const res of [stdin, comments, file]) {
      expect(res).toMatchObject({ code: 0, stdout: '', stderr: 'Nothing to cancel: the list of orders is empty.\n' });
    }
    expect(json).toMatchObject({ code: 0, stderr: '' });
    expect(json.json).toEqual({ dry_run: false, cancelled: 0, already_cancelled: 0, failed: 0, results: [] });
    expect(after).toEqual(before);
  });
});

describe('extend', () => {
  it('extend --ttl 30m moves the window and the reservations together', async () => {
    const order = await reserve(['MUG:1', 'TEE:1', '--ref', 'ext-1', '--ttl', '1m']);
    const res = await t.cliJson<{ payment_expires_at: string }>(['extend', 'ext-1', '--ttl', '30m'], { env: { STOCKCTL_ACTOR: 'support' } });
    expect(res.code).toBe(0);
    expect(res.stderr).toBe('');
    expect(res.json).toEqual({
      order_id: order.order_id,
      ref: 'ext-1',
      payment_expires_at: expect.stringMatching(ISO),
      reservations_extended: 2,
    });
    expect(res.json.payment_expires_at > order.payment_expires_at).toBe(true);

    const [o] = await t.sql`
      SELECT extract(epoch FROM payment_expires_at - updated_at)::int AS ttl, admin_notes,
             to_char(payment_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS expires
        FROM orders WHERE order_id = ${order.order_id}`;
    expect(o).toEqual({ ttl: 1800, admin_notes: 'Extended by support', expires: res.json.payment_expires_at });
    const reservations = await t.sql`
      SELECT DISTINCT to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS expires
        FROM stock_reservations WHERE order_id = ${order.order_id}`;
    expect(reservations).toEqual([{ expires: res.json.payment_expires_at }]);

    const human = await t.cli(['extend', order.order_id, '--ttl', '2h']);
    expect(human.code).toBe(0);
    expect(human.stderr).toBe('');
    expect(human.stdout).toMatch(new RegExp(`^Order ${order.order_id} \\(ref ext-1\\) now expires at \\S+Z \\(2 reservation\\(s\\) moved\\)\\.\\n$`));

    await ok(['cancel', 'ext-1']);
  });

  it('extend only gives more time: a shorter window is refused (exit 5) and nothing moves', async () => {
    const order = await reserve(['MUG:1', '--ref', 'ext-short', '--ttl', '2h']);
    const res = await t.cli(['extend', 'ext-short', '--ttl', '1s']);
    expect(res).toMatchObject({
      code: 5,
      stdout: '',
      stderr: `error: Order ${order.order_id} already has until ${order.payment_expires_at} to pay, more than the 1s asked for; extend only gives more time.\n`,
    });
    const json = await t.cliJson(['extend', 'ext-short', '--ttl', '30m']);
    expect(json).toMatchObject({ code: 5, json: { error: { code: 'window_not_extended' } } });
    const [o] = await t.sql`SELECT to_char(payment_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS expires, admin_notes
                              FROM orders WHERE order_id = ${order.order_id}`;
    expect(o).toEqual({ expires: order.payment_expires_at, admin_notes: null });
    await ok(['cancel', 'ext-short']);
  });

  it('a bad --ttl is exit 2 naming the value, and nothing is written', async () => {
    await reserve(['MUG:1', '--ref', 'ext-2']);
    const before = await counts();
    const [{ expires: was }] = await t.sql`SELECT payment_expires_at::text AS expires FROM orders WHERE ref = 'ext-2'`;
    const message = 'Invalid --ttl "5x": use a number and a unit, like 90s, 15m, 2h or 1d.';

    const [extend, json, reserveBad] = await Promise.all([
      t.cli(['extend', 'ext-2', '--ttl', '5x']),
      t.cliJson(['extend', 'ext-2', '--ttl', '5x']),
      t.cli(['reserve', 'MUG:1', '--ttl', '5x']),
    ]);
    expect(extend).toMatchObject({ code: 2, stdout: '', stderr: `error: ${message}\n` });

    expect(json.code).toBe(2);
    expect(json.stderr).toBe('');
    expect(json.json).toEqual({ error: { code: 'invalid_input', message } });

    expect(reserveBad).toMatchObject({ code: 2, stdout: '', stderr: `error: ${message}\n` });

    expect(await counts()).toEqual(before);
    expect((await t.sql`SELECT payment_expires_at::text AS expires FROM orders WHERE ref = 'ext-2'`)[0].expires).toBe(was);
    await ok(['cancel', 'ext-2']);
  });

  it('an order past its window, or no longer pending, cannot be extended (exit 5)', async () => {
    await reserve(['MUG:1', '--ref', 'ext-3']);
    await letExpire('ext-3');
    const late = await t.cli(['extend', 'ext-3', '--ttl', '30m']);
    expect(late.code).toBe(5);
    expect(late.stdout).toBe('');
    expect(late.stderr).toMatch(/^error: Order [0-9a-f-]{36} already missed its payment window; it can no longer be extended\.\n$/);
    await ok(['cancel', 'ext-3']); // leave nothing due

    const paid = await t.cliJson(['extend', 'paid-2', '--ttl', '30m']);
    expect(paid.code).toBe(5);
    expect(paid.json).toMatchObject({ error: { code: 'order_state' } });
  });
});

describe('reserve refusals', () => {
  it('an unknown SKU is exit 4 naming it, and nothing is reserved', async () => {
    const before = await counts();
    const [res, json] = await Promise.all([t.cli(['reserve', 'MUG:1', 'NOPE:1']), t.cliJson(['reserve', 'NOPE:1'])]);
    expect(res.code).toBe(4);
    expect(res.stdout).toBe('');
    expect(res.stderr).toBe('error: No stock row has SKU "NOPE"; list them with `stockctl stock`.\n');

    expect(json.code).toBe(4);
    expect(json.stderr).toBe('');
    expect(json.json).toEqual({
      error: { code: 'sku_not_found', message: 'No stock row has SKU "NOPE"; list them with `stockctl stock`.', skus: ['NOPE'] },
    });
    expect(await counts()).toEqual(before);
  });

  it('insufficient stock is exit 3, all or nothing, naming every short SKU with requested and available', async () => {
    const before = await counts();
    const [one, both] = await Promise.all([
      t.cliJson(['reserve', 'SHORT-A:2', 'SHORT-B:2']),
      t.cli(['reserve', 'SHORT-B:2', 'SHORT-A:5']),
    ]);
    expect(one.code).toBe(3);
    expect(one.stderr).toBe('');
    expect(one.json).toEqual({
      error: {
        code: 'insufficient_stock',
        message: 'Insufficient stock: SHORT-B (requested 2, available 1).',
        shortages: [{ sku: 'SHORT-B', requested: 2, available: 1 }],
      },
    });
    // SHORT-A could have been reserved alone, but the order is all or nothing.
    expect(await stockRow('SHORT-A')).toEqual({ stock_quantity: 3, reserved_stock: 0 });

    expect(both.code).toBe(3);
    expect(both.stdout).toBe('');
    expect(both.stderr).toBe('error: Insufficient stock: SHORT-A (requested 5, available 3), SHORT-B (requested 2, available 1).\n');
    expect(await counts()).toEqual(before);
  });
});

describe('orders list', () => {
  it('--status pending --json is {"orders": [...], "next_cursor"}, newest first, with time left; the README pipeline cancels them', async () => {
    const first = await reserve(['MUG:1', '--ref', 'list-1', '--customer', 'c7']);
    const second = await reserve(['TEE:1', '--ref', 'list-2']);

    const res = await t.cliJson<{ orders: Record<string, unknown>[] }>(['orders', 'list', '--status', 'pending']);
    expect(res.code).toBe(0);
    expect(res.stderr).toBe('');
    expect(Object.keys(res.json)).toEqual(['orders', 'next_cursor']);
    expect(res.json.orders).toEqual([
      {
        order_id: second.order_id,
        ref: 'list-2',
        customer_id: null,
        status: 'pending',
        payment_status: 'awaiting',
        total: 1999,
        item_count: 1,
        created_at: expect.stringMatching(ISO),
        payment_expires_at: second.payment_expires_at,
        seconds_left: expect.any(Number),
      },
      {
        order_id: first.order_id,
        ref: 'list-1',
        customer_id: 'c7',
        status: 'pending',
        payment_status: 'awaiting',
        total: 750,
        item_count: 1,
        created_at: expect.stringMatching(ISO),
        payment_expires_at: first.payment_expires_at,
        seconds_left: expect.any(Number),
      },
    ]);
    for (const o of res.json.orders) {
      expect(o.seconds_left).toBeGreaterThan(600);
      expect(o.seconds_left).toBeLessThanOrEqual(900);
    }

    const [limited, bad, limitedText] = await Promise.all([
      t.cliJson<{ orders: { ref: string }[]; next_cursor: string | null }>(['orders', 'list', '--status', 'pending', '--limit', '1']),
      t.cli(['orders', 'list', '--status', 'bogus']),
      t.cli(['orders', 'list', '--status', 'pending', '--limit', '1']),
    ]);
    // A page that is cut says so: next_cursor in JSON, a note on stderr for a person.
    expect(limited.json.orders.map((o) => o.ref)).toEqual(['list-2']);
    expect(limited.json.next_cursor).toEqual(expect.any(String));
    expect(limited.stderr).toBe('');
    expect(limitedText.stderr).toBe(`More orders match than the 1 shown; raise --limit, or add --cursor ${limited.json.next_cursor} for the next page.\n`);
    const next = await t.cliJson<{ orders: { ref: string }[]; next_cursor: string | null }>([
      'orders', 'list', '--status', 'pending', '--limit', '1', '--cursor', limited.json.next_cursor!,
    ]);
    expect(next.json).toEqual({ orders: [expect.objectContaining({ ref: 'list-1' })], next_cursor: null });

    expect(bad.code).toBe(2);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toContain('"bogus"');
    // An empty filter (an unset shell variable) is refused, never dropped.
    for (const args of [['--status', ''], ['--customer', ''], ['--cursor', 'x']]) {
      const res = await t.cli(['orders', 'list', ...args]);
      expect(res, args.join(' ')).toMatchObject({ code: 2, stdout: '' });
    }
    // Nor is an order made for a blank customer, which no one could list it by.
    for (const customer of ['', '  ']) {
      const blank = await t.cli(['reserve', 'MUG:1', '--customer', customer]);
      expect(blank).toMatchObject({ code: 2, stdout: '', stderr: `error: Invalid customer id "${customer}": it must not be blank.\n` });
    }

    // stockctl orders list --status pending --json | jq -r '.orders[].order_id' | stockctl cancel --from-file -
    const ids = res.json.orders.map((o) => `${o.order_id}\n`).join('');
    const cancelled = await t.cli(['cancel', '--from-file', '-'], { input: ids });
    expect(cancelled.code).toBe(0);
    expect(cancelled.stderr).toBe('');
    expect(cancelled.stdout).toBe(
      `cancelled  ${second.order_id}: released 1 unit(s)\ncancelled  ${first.order_id}: released 1 unit(s)\n`,
    );
    const [after, empty] = await Promise.all([
      t.cliJson(['orders', 'list', '--status', 'pending']),
      t.cli(['orders', 'list', '--status', 'pending']),
    ]);
    expect(after.code).toBe(0);
    expect(after.json).toEqual({ orders: [], next_cursor: null });
    expect(empty).toMatchObject({ code: 0, stderr: '', stdout: 'No orders match.\n' });
  });

  it('everything the file did adds up: verify exits 0', async () => {
    const res = await t.cli(['verify']);
    expect(res).toMatchObject({ code: 0, stderr: '' });
  });
});
