/**
 * `verify --repair` when units held by pending orders are gone from the shelf: no counter
 * can be right, so it must say what will fix it (the SKU, the figures, the commands, the
 * orders holding the units), and each of those commands must then work: `stock set`, or
 * cancelling (or expiring) the orders that hold the units. Never an internal error.
 *
 * Reached as a user would: reserved_stock cleared by hand in SQL (within the CHECKs), then
 * `stockctl stock set` below what the pending orders still hold.
 */
import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();

const OK_LINE = 'Every invariant holds: counters, reservations, orders and the ledger agree.\n';

interface Violation {
  kind: string;
  sku?: string;
  message: string;
  holders?: { order_id: string; ref: string | null; quantity: number }[];
}
interface VerifyJson {
  ok: boolean;
  violations: Violation[];
  repairs: unknown[];
  remaining?: Violation[];
}

async function addProduct(sku: string, stock: number) {
  const res = await t.cli(['product', 'add', sku, '--name', `Product ${sku}`, '--stock', String(stock)], { env: { STOCKCTL_ACTOR: 'setup' } });
  expect(res, res.stderr).toMatchObject({ code: 0, stderr: '' });
}

async function reserve(args: string[]) {
  const res = await t.cliJson<{ order_id: string }>(['reserve', ...args], { env: { STOCKCTL_ACTOR: 'setup' } });
  expect(res, res.stderr).toMatchObject({ code: 0, stderr: '' });
  return res.json.order_id;
}

/** Units gone from the shelf while orders hold them: reserved cleared by hand, then on hand set below the holds. */
async function loseUnits(sku: string, onHand: number) {
  await t.sql`UPDATE stock_levels SET reserved_stock = 0 WHERE sku = ${sku} AND location = 'default'`;
  const set = await t.cli(['stock', 'set', sku, String(onHand), '--reason', 'count'], { env: { STOCKCTL_ACTOR: 'setup' } });
  expect(set, set.stderr).toMatchObject({ code: 0, stderr: '' });
}

async function stockRow(sku: string) {
  const [row] = await t.sql<{ stock_quantity: number; reserved_stock: number }[]>`
    SELECT stock_quantity, reserved_stock FROM stock_items WHERE sku = ${sku}`;
  return row;
}

async function expectClean() {
  const res = await t.cli(['verify']);
  expect(res, res.stdout + res.stderr).toMatchObject({ code: 0, stdout: OK_LINE, stderr: '' });
}

const advice = (sku: string, held: number, onHand: number, short: number, orders: string[]) =>
  `${sku}: active reservations hold ${held} unit(s) but only ${onHand} ${onHand === 1 ? 'is' : 'are'} on hand (reserved_stock 0), ` +
  'so reserved_stock cannot be brought in line. ' +
  `If the units are there, put them back on the books: \`stockctl stock set ${sku} ${held}\`; ` +
  `if they are gone, cancel orders holding at least ${short} of them: \`stockctl cancel ${orders.join(' ')}\`. ` +
  'Then run `stockctl verify --repair`.';

describe('verify --repair when reservations hold more than is on hand', () => {
  it('names the SKU, the figures, the commands and the holders; a second run repairs nothing and says so', async () => {
    await addProduct('GONE', 2);
    const order = await reserve(['GONE:2', '--ref', 'gone-1']);
    await loseUnits('GONE', 1);
    const message = advice('GONE', 2, 1, 1, [order]);

    const looked = await t.cliJson<VerifyJson>(['verify']);
    expect(looked.code).toBe(6);
    expect(looked.json.violations[0]).toEqual({
      kind: 'reservations_exceed_on_hand',
      sku: 'GONE',
      message,
      holders: [{ order_id: order, ref: 'gone-1', quantity: 2 }],
    });

    const first = await t.cli(['verify', '--repair'], { env: { STOCKCTL_ACTOR: 'ops' } });
    expect(first.code).toBe(6);
    expect(first.stderr).toBe('');
    expect(first.stdout).toBe(
      [
        `✗ ${message}`,
        '✗ GONE: reserved_stock 0 but the ledger sums to 2',
        'repaired GONE: recorded an outside change (on hand 0, reserved -2) in the ledger',
        'Left for a person:',
        `✗ ${message}`,
        '1 problem(s) need a person.',
        '',
      ].join('\n'),
    );

    // Nothing is left to write: no "repaired GONE: " with nothing after it.
    const second = await t.cliJson<VerifyJson>(['verify', '--repair']);
    expect(second.code).toBe(6);
    expect(second.json).toMatchObject({ ok: false, repairs: [], remaining: [{ kind: 'reservations_exceed_on_hand', sku: 'GONE', message }] });
    const secondText = await t.cli(['verify', '--repair']);
    expect(secondText).toMatchObject({ code: 6, stderr: '', stdout: `✗ ${message}\n1 problem(s) need a person: see above.\n` });

    // The units are gone: cancelling the order that holds them works (exit 0), and leaves nothing to repair.
    const cancelled = await t.cliJson<{ results: { outcome: string; released_units: number }[] }>(['cancel', 'gone-1', '--reason', 'units lost']);
    expect(cancelled.stderr).toBe('');
    expect(cancelled.code).toBe(0);
    expect(cancelled.json.results).toMatchObject([{ outcome: 'cancelled', released_units: 2 }]);
    expect(await stockRow('GONE')).toEqual({ stock_quantity: 1, reserved_stock: 0 });
    const ledger = await t.sql<{ kind: string; reserved_delta: number; order_id: string | null }[]>`
      SELECT kind, reserved_delta, order_id FROM stock_movements WHERE sku = 'GONE' ORDER BY movement_id DESC LIMIT 2`;
    expect(ledger).toEqual(
      expect.arrayContaining([
        { kind: 'release', reserved_delta: -2, order_id: order },
        { kind: 'repair', reserved_delta: 2, order_id: order },
      ]),
    );
    await expectClean();
  });

  it('`stock set` to what the orders hold, then `verify --repair`, puts it right; the order can then be paid', async () => {
    await addProduct('FOUND', 3);
    const order = await reserve(['FOUND:3', '--ref', 'found-1']);
    await loseUnits('FOUND', 1);

    // Paying sells units that are not there: a clear refusal (exit 5), not an internal error.
    const pay = await t.cliJson<{ error: { code: string; message: string } }>(['pay', 'found-1']);
    expect(pay.code).toBe(5);
    expect(pay.json.error).toMatchObject({ code: 'reservations_exceed_on_hand' });
    // Soft: a wrong sentence fails the test, and the rest still runs, putting FOUND right for the next tests.
    expect(pay.json.error.message).toBe(
      'Cannot sell 3 unit(s) of FOUND: only 1 on hand, fewer than its active reservations hold (its stock was changed outside stockctl); put the units back on hand, or cancel the order.',
    );

    expect((await t.cli(['stock', 'set', 'FOUND', '3', '--reason', 'recount'])).code).toBe(0);
    const repaired = await t.cli(['verify', '--repair']);
    expect(repaired, repaired.stdout).toMatchObject({ code: 0, stderr: '' });
    expect(repaired.stdout).toMatch(/All repaired\.\n$/);
    await expectClean();

    const paid = await t.cliJson<{ order_id: string; units_sold: number }>(['pay', 'found-1']);
    expect(paid).toMatchObject({ code: 0, json: { order_id: order, units_sold: 3 } });
    expect(await stockRow('FOUND')).toEqual({ stock_quantity: 0, reserved_stock: 0 });
    await expectClean();
  });

  it('cancelling one of several holders before any repair works too; verify --repair then finishes the job', async () => {
    await addProduct('SHARED', 3);
    const a = await reserve(['SHARED:1', '--ref', 'shared-a']);
    const b = await reserve(['SHARED:2', '--ref', 'shared-b']);
    await loseUnits('SHARED', 2);

    const looked = await t.cliJson<VerifyJson>(['verify']);
    expect(looked.json.violations[0]).toMatchObject({
      kind: 'reservations_exceed_on_hand',
      message: advice('SHARED', 3, 2, 1, [a, b]),
      holders: [
        { order_id: a, ref: 'shared-a', quantity: 1 },
        { order_id: b, ref: 'shared-b', quantity: 2 },
      ],
    });

    const cancelled = await t.cli(['cancel', 'shared-a']);
    expect(cancelled).toMatchObject({ code: 0, stderr: '' });
    // Now 2 held, 2 on hand: an ordinary drift, which --repair corrects through the ledger.
    const repaired = await t.cli(['verify', '--repair']);
    expect(repaired, repaired.stdout).toMatchObject({ code: 0, stderr: '' });
    expect(await stockRow('SHARED')).toEqual({ stock_quantity: 2, reserved_stock: 2 });
    await expectClean();
    expect((await t.cli(['cancel', 'shared-b'])).code).toBe(0);
    await expectClean();
  });

  it('with more than 5 holders, the message names 5 and says where the rest are listed', async () => {
    await addProduct('MANY', 6);
    const ids = [];
    for (let i = 0; i < 6; i++) ids.push(await reserve(['MANY:1']));
    await loseUnits('MANY', 5);
    const looked = await t.cliJson<VerifyJson>(['verify']);
    const [exceeded] = looked.json.violations;
    expect(exceeded.holders?.map((h) => h.order_id)).toEqual(ids);
    expect(exceeded.message).toContain(
      `cancel orders holding at least 1 of them: \`stockctl cancel ${ids.slice(0, 5).join(' ')}\` (5 of the 6 orders holding it; \`stockctl verify --json\` lists them all under "holders"). `,
    );
    const cancelled = await t.cli(['cancel', '--from-file', '-'], { input: ids.join('\n') });
    expect(cancelled, cancelled.stderr).toMatchObject({ code: 0, stderr: '' });
    expect((await t.cli(['verify', '--repair'])).code).toBe(0);
    await expectClean();
  });

  it('the sweep expires such an order instead of failing on it', async () => {
    await addProduct('LATE', 2);
    const order = await reserve(['LATE:2', '--ref', 'late-1']);
    await loseUnits('LATE', 0);
    await t.sql`UPDATE orders SET payment_expires_at = now() - interval '1 minute' WHERE order_id = ${order}`;
    await t.sql`UPDATE stock_reservations SET expires_at = now() - interval '1 minute' WHERE order_id = ${order}`;

    const swept = await t.cliJson<{ expired_orders: number; released_units: number }>(['sweep']);
    expect(swept.stderr).toBe('');
    expect(swept).toMatchObject({ code: 0, json: { expired_orders: 1, released_units: 2 } });
    expect(await stockRow('LATE')).toEqual({ stock_quantity: 0, reserved_stock: 0 });
    // The ledger still has the hand-made clearing of reserved_stock to record.
    expect((await t.cli(['verify', '--repair'])).code).toBe(0);
    await expectClean();
  });
});
