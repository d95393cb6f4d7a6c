/**
 * Payment windows (issue 11, item 1): the window of a new order comes from its payment
 * method (PAYMENT_TIMEOUTS) plus its customer tier's extra time (PRIORITY_WINDOWS); an
 * explicit TTL wins. Each window is measured on the database clock (payment_expires_at -
 * created_at), through the CLI and over HTTP, in every reserve path; bad configuration is
 * exit 2 naming the entry; `report` splits conversion and expiry by payment method.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { laneOf } from '../../src/engine/reserve/batched.js';
import { useTestDatabase } from '../helpers/db.js';
import { runCli } from '../helpers/cli.js';
import { api, startServer, type RunningServer } from '../server/_server.js';

const t = useTestDatabase();

const MIN = 60;
const HOUR = 3600;
const DAY = 86400;
const WINDOWS = { PAYMENT_TIMEOUTS: 'card=15m,bank_transfer=3d,default=20m', PRIORITY_WINDOWS: 'vip=45m,staff=2h' };

interface Reserved {
  order_id: string;
  payment_method: string | null;
  payment_window_seconds: number | null;
  priority: string | null;
  strategy: string;
}

/** What the database recorded for the order, and its window on the database clock. */
async function stored(ref: string) {
  const [row] = await t.sql<{ measured: number; payment_method: string | null; payment_window_seconds: number | null; priority: string | null }[]>`
    SELECT extract(epoch FROM payment_expires_at - created_at)::float8 AS measured,
           payment_method, payment_window_seconds, priority
      FROM orders WHERE ref = ${ref}`;
  return row;
}

/** The order under `ref` was given `seconds`, recorded with its method and tier. */
async function expectWindow(ref: string, seconds: number, paymentMethod: string | null, priority: string | null) {
  const row = await stored(ref);
  expect(row, ref).toBeDefined();
  const { measured, ...recorded } = row;
  expect(Math.abs(measured - seconds), `${ref}: measured ${measured}s, expected ${seconds}s`).toBeLessThan(1);
  expect(recorded, ref).toEqual({ payment_method: paymentMethod, payment_window_seconds: seconds, priority });
}

async function reserveJson(args: string[], env: Record<string, string> = WINDOWS) {
  const res = await t.cliJson<Reserved>(['reserve', ...args], { env });
  expect(res.code, `reserve ${args.join(' ')}: ${res.stdout}${res.stderr}`).toBe(0);
  expect(res.stderr).toBe('');
  return res.json;
}

beforeAll(async () => {
  for (const [sku, stock] of [['WIN', 1000], ['MUG', 1000], ['BLOCK', 100], ['BLOCK-WIN', 100]] as const) {
    const res = await t.cli(['product', 'add', sku, '--name', `Item ${sku}`, '--price', '5', '--stock', String(stock)]);
    expect(res.code, res.stderr).toBe(0);
  }
});

describe('reserve picks the window from the payment method and the priority tier', () => {
  const cases: { ref: string; args: string[]; seconds: number; method: string | null; priority: string | null }[] = [
    { ref: 'm-card', args: ['--payment-method', 'card'], seconds: 15 * MIN, method: 'card', priority: null },
    { ref: 'm-bank', args: ['--payment-method', 'bank_transfer'], seconds: 3 * DAY, method: 'bank_transfer', priority: null },
    { ref: 'm-other', args: ['--payment-method', 'paypal'], seconds: 20 * MIN, method: 'paypal', priority: null },
    { ref: 'm-none', args: [], seconds: 20 * MIN, method: null, priority: null },
    { ref: 'm-card-vip', args: ['--payment-method', 'card', '--priority', 'vip'], seconds: 15 * MIN + 45 * MIN, method: 'card', priority: 'vip' },
    { ref: 'm-bank-staff', args: ['--payment-method', 'bank_transfer', '--priority', 'staff'], seconds: 3 * DAY + 2 * HOUR, method: 'bank_transfer', priority: 'staff' },
    { ref: 'm-none-vip', args: ['--priority', 'vip'], seconds: 20 * MIN + 45 * MIN, method: null, priority: 'vip' },
  ];

  it.each(cases)('$ref: $args gets $seconds s', async ({ ref, args, seconds, method, priority }) => {
    const order = await reserveJson(['WIN:1', '--ref', ref, ...args]);
    expect(order).toMatchObject({ payment_method: method, payment_window_seconds: seconds, priority });
    await expectWindow(ref, seconds, method, priority);
  });

  it('every strategy and a multi-line order record the same window', async () => {
    for (const strategy of ['guarded', 'optimistic', 'locking', 'batched']) {
      const ref = `s-${strategy}`;
      const order = await reserveJson(['WIN:1', 'MUG:2', '--ref', ref, '--strategy', strategy, '--payment-method', 'card', '--priority', 'staff']);
      expect(order).toMatchObject({ strategy, payment_method: 'card', payment_window_seconds: 15 * MIN + 2 * HOUR, priority: 'staff' });
      await expectWindow(ref, 15 * MIN + 2 * HOUR, 'card', 'staff');
      const [{ n }] = await t.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM stock_reservations r JOIN orders o USING (order_id)
         WHERE o.ref = ${ref} AND r.expires_at = o.payment_expires_at`;
      expect(n, `${ref}: both reservations expire with the order`).toBe(2);
    }
  });

  it('an explicit --ttl wins over the method and the tier, which are still recorded', async () => {
    const order = await reserveJson(['WIN:1', '--ref', 'ttl-wins', '--payment-method', 'bank_transfer', '--priority', 'vip', '--ttl', '90s']);
    expect(order).toMatchObject({ payment_method: 'bank_transfer', payment_window_seconds: 90, priority: 'vip' });
    await expectWindow('ttl-wins', 90, 'bank_transfer', 'vip');
  });

  it('without PAYMENT_TIMEOUTS, every method gets PAYMENT_TIMEOUT_MINUTES (15 by default)', async () => {
    await reserveJson(['WIN:1', '--ref', 'plain-card', '--payment-method', 'card'], {});
    await expectWindow('plain-card', 15 * MIN, 'card', null);
    await reserveJson(['WIN:1', '--ref', 'plain-7'], { PAYMENT_TIMEOUT_MINUTES: '7' });
    await expectWindow('plain-7', 7 * MIN, null, null);
  });

  it('a method PAYMENT_TIMEOUTS does not list, with no default= entry, gets PAYMENT_TIMEOUT_MINUTES', async () => {
    const env = { PAYMENT_TIMEOUTS: 'card=15m', PAYMENT_TIMEOUT_MINUTES: '7', PRIORITY_WINDOWS: 'vip=45m' };
    await reserveJson(['WIN:1', '--ref', 'unlisted', '--payment-method', 'paypal'], env);
    await expectWindow('unlisted', 7 * MIN, 'paypal', null);
    await reserveJson(['WIN:1', '--ref', 'unlisted-vip', '--priority', 'vip'], env);
    await expectWindow('unlisted-vip', 7 * MIN + 45 * MIN, null, 'vip');
  });

  it('a replay answers with the window the order was given; the ref with another payment method is a conflict (exit 5)', async () => {
    const first = await reserveJson(['WIN:1', '--ref', 'replayed', '--payment-method', 'bank_transfer']);
    const again = await reserveJson(['WIN:1', '--ref', 'replayed', '--payment-method', 'bank_transfer']);
    expect(again).toMatchObject({ order_id: first.order_id, replay: true, payment_method: 'bank_transfer', payment_window_seconds: 3 * DAY });
    // The ref covers the whole request, not only its items.
    const other = await t.cliJson<{ error: { code: string; message: string } }>(['reserve', 'WIN:1', '--ref', 'replayed', '--payment-method', 'card'], { env: WINDOWS });
    expect(other.code).toBe(5);
    expect(other.json.error).toMatchObject({ code: 'ref_conflict', message: expect.stringContaining('payment method "bank_transfer", not "card"') });
  });

  it('the human output says which window the order got', async () => {
    const res = await t.cli(['reserve', 'WIN:1', '--ref', 'human-1', '--payment-method', 'card', '--priority', 'vip'], { env: WINDOWS });
    expect(res.code).toBe(0);
    expect(res.stderr).toBe('');
    expect(res.stdout.split('\n')[1]).toBe('Payment method card, priority vip: a 1h window to pay.');
  });
});

describe('orders show', () => {
  it('shows the method, the window and the tier (human and --json)', async () => {
    await reserveJson(['WIN:1', '--ref', 'shown', '--payment-method', 'bank_transfer', '--priority', 'staff']);
    const [json, human] = await Promise.all([t.cliJson<Record<string, unknown>>(['orders', 'show', 'shown']), t.cli(['orders', 'show', 'shown'])]);
    expect(json.code).toBe(0);
    expect(json.json).toMatchObject({ ref: 'shown', payment_method: 'bank_transfer', payment_window_seconds: 3 * DAY + 2 * HOUR, priority: 'staff' });
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^Payment window 3d2h \(bank_transfer, priority staff\)$/m);

    await reserveJson(['WIN:1', '--ref', 'shown-plain']);
    const plain = await t.cli(['orders', 'show', 'shown-plain']);
    expect(plain.stdout).toMatch(/^Payment window 20m \(no payment method\)$/m);
    const plainJson = await t.cliJson<Record<string, unknown>>(['orders', 'show', 'shown-plain']);
    expect(plainJson.json).toMatchObject({ payment_method: null, payment_window_seconds: 20 * MIN, priority: null });
  });
});

describe('refusals (exit 2, nothing written)', () => {
  const orderCount = async () => (await t.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM orders`)[0].n;

  it('an unknown priority tier names the tier and the known ones', async () => {
    const before = await orderCount();
    const res = await t.cli(['reserve', 'WIN:1', '--priority', 'gold'], { env: WINDOWS });
    expect(res).toMatchObject({ code: 2, stdout: '', stderr: 'error: Unknown priority tier "gold": the tiers are vip, staff (PRIORITY_WINDOWS).\n' });
    const json = await t.cliJson<{ error: Record<string, unknown> }>(['reserve', 'WIN:1', '--priority', 'gold'], { env: WINDOWS });
    expect(json.code).toBe(2);
    expect(json.json.error).toEqual({
      code: 'unknown_priority',
      message: 'Unknown priority tier "gold": the tiers are vip, staff (PRIORITY_WINDOWS).',
      priority: 'gold',
      tiers: ['vip', 'staff'],
    });
    const none = await t.cli(['reserve', 'WIN:1', '--priority', 'vip'], { env: {} });
    expect(none).toMatchObject({ code: 2, stderr: 'error: Unknown priority tier "vip": no tiers are configured (PRIORITY_WINDOWS, e.g. "vip=45m").\n' });
    // An explicit --ttl does not excuse an unknown tier.
    const withTtl = await t.cli(['reserve', 'WIN:1', '--priority', 'gold', '--ttl', '5m'], { env: WINDOWS });
    expect(withTtl.code).toBe(2);
    expect(await orderCount()).toBe(before);
  });

  it('a payment method that cannot be a name, or is "none", is refused', async () => {
    const bad = await t.cli(['reserve', 'WIN:1', '--payment-method', 'credit card'], { env: WINDOWS });
    expect(bad).toMatchObject({
      code: 2,
      stderr: 'error: Invalid payment method "credit card": a name is 1 to 50 letters, digits, dots, dashes or underscores, starting with a letter or digit.\n',
    });
    const none = await t.cli(['reserve', 'WIN:1', '--payment-method', 'none'], { env: WINDOWS });
    expect(none).toMatchObject({ code: 2, stderr: 'error: Invalid payment method "none": "none" is reserved for orders without a payment method.\n' });
  });

  it('a window over 366 days (method plus tier) is refused', async () => {
    const res = await t.cli(['reserve', 'WIN:1', '--payment-method', 'bank_transfer', '--priority', 'vip'], {
      env: { PAYMENT_TIMEOUTS: 'bank_transfer=366d', PRIORITY_WINDOWS: 'vip=45m' },
    });
    expect(res).toMatchObject({
      code: 2,
      stderr: 'error: The payment window for bank_transfer with priority vip would be 366d45m, more than 366d; shorten PAYMENT_TIMEOUTS or PRIORITY_WINDOWS.\n',
    });
  });

  const badConfig: [Record<string, string>, string][] = [
    [{ PAYMENT_TIMEOUTS: 'card=15x' }, 'PAYMENT_TIMEOUTS entry "card=15x": use a number and a unit, like 90s, 15m, 2h or 1d.'],
    [{ PAYMENT_TIMEOUTS: 'card=15m,bank_transfer' }, 'PAYMENT_TIMEOUTS entry "bank_transfer": use NAME=DURATION, like card=15m.'],
    [{ PAYMENT_TIMEOUTS: 'card=367d' }, 'PAYMENT_TIMEOUTS entry "card=367d": the duration must be between 1s and 366d.'],
    [{ PAYMENT_TIMEOUTS: 'card=0s' }, 'PAYMENT_TIMEOUTS entry "card=0s": the duration must be between 1s and 366d.'],
    [{ PAYMENT_TIMEOUTS: 'card=1m,card=2m' }, 'PAYMENT_TIMEOUTS entry "card=2m": card is listed twice.'],
    [{ PAYMENT_TIMEOUTS: 'none=1m' }, 'PAYMENT_TIMEOUTS entry "none=1m": "none" is reserved for orders without a payment method.'],
    [{ PRIORITY_WINDOWS: 'vip=45' }, 'PRIORITY_WINDOWS entry "vip=45": use a number and a unit, like 90s, 15m, 2h or 1d.'],
    [
      { PRIORITY_WINDOWS: 'gold tier=1h' },
      'PRIORITY_WINDOWS entry "gold tier=1h": a name is 1 to 50 letters, digits, dots, dashes or underscores, starting with a letter or digit.',
    ],
    [{ PRIORITY_WINDOWS: 'default=5m' }, 'PRIORITY_WINDOWS entry "default=5m": there is no default tier; name each tier, like vip=45m.'],
  ];

  it.each(badConfig)('%o is exit 2 naming the entry', async (env, message) => {
    const res = await t.cli(['reserve', 'WIN:1'], { env });
    expect(res).toMatchObject({ code: 2, stdout: '', stderr: `error: ${message}\n` });
    const json = await t.cliJson<{ error: Record<string, unknown> }>(['stock'], { env });
    expect(json.code).toBe(2);
    expect(json.json).toEqual({ error: { code: 'invalid_input', message } });
  });

  it('--help lists both variables', async () => {
    const res = await runCli(['--help'], { databaseUrl: null });
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^ {2}PAYMENT_TIMEOUTS +window per payment method/m);
    expect(res.stdout).toMatch(/^ {2}PRIORITY_WINDOWS +extra time per customer tier/m);
  });
});

describe('over HTTP (stockctl serve)', () => {
  let server: RunningServer;
  let shop: string;
  const reserve = (body: object, key: string) =>
    api(server, 'POST', '/orders', { token: shop, body: { items: [{ sku: 'WIN', quantity: 1 }], ...body }, headers: { 'idempotency-key': key } });

  beforeAll(async () => {
    const token = await t.cliJson<{ token: string }>(['token', 'create', 'checkout', '--role', 'shop']);
    expect(token.code).toBe(0);
    shop = token.json.token;
    server = await startServer(t.url, [], WINDOWS);
  });
  afterAll(async () => {
    const res = await server?.stop();
    if (res) expect(res.code, res.stderr).toBe(0);
  });

  it('payment_method and priority pick the window; ttl wins; GET /orders/{id} shows them', async () => {
    const cases = [
      { key: 'h-card', body: { payment_method: 'card' }, seconds: 15 * MIN, method: 'card', priority: null },
      { key: 'h-bank-vip', body: { payment_method: 'bank_transfer', priority: 'vip' }, seconds: 3 * DAY + 45 * MIN, method: 'bank_transfer', priority: 'vip' },
      { key: 'h-none', body: {}, seconds: 20 * MIN, method: null, priority: null },
      { key: 'h-ttl', body: { payment_method: 'card', priority: 'staff', ttl: '90s' }, seconds: 90, method: 'card', priority: 'staff' },
    ];
    for (const c of cases) {
      const res = await reserve(c.body, c.key);
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      expect(res.body).toMatchObject({ payment_method: c.method, payment_window_seconds: c.seconds, priority: c.priority });
      await expectWindow(c.key, c.seconds, c.method, c.priority);
      const shown = await api(server, 'GET', `/orders/${c.key}`, { token: shop });
      expect(shown.body).toMatchObject({ payment_method: c.method, payment_window_seconds: c.seconds, priority: c.priority });
    }
  });

  it('an unknown tier or a bad method name is 422 naming it', async () => {
    const gold = await reserve({ priority: 'gold' }, 'h-gold');
    expect(gold.status).toBe(422);
    expect(gold.body).toMatchObject({
      code: 'unknown_priority',
      detail: 'Unknown priority tier "gold": the tiers are vip, staff (PRIORITY_WINDOWS).',
      tiers: ['vip', 'staff'],
    });
    const bad = await reserve({ payment_method: 'credit card' }, 'h-bad');
    expect(bad.status).toBe(422);
    expect(bad.body).toMatchObject({ code: 'invalid_payment_method' });
    expect(await stored('h-gold')).toBeUndefined();
  });

  it('buyers that go together in one batch each get their own window', async () => {
    // Hold the ledger table so that a first buyer of WIN's batch lane waits in flight while
    // the others queue up behind it; released, the queued buyers go as one batch (one
    // statement). A held row would not do: the lane passes over it.
    const blocker = ['BLOCK', 'BLOCK-WIN'].find((sku) => laneOf(sku) === laneOf('WIN'));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const held = t.sql.begin(async (tx) => {
      await tx`LOCK TABLE stock_movements IN SHARE MODE`;
      locked();
      await released;
    });
    const batch = [
      { key: 'b-card', body: { payment_method: 'card' }, seconds: 15 * MIN, method: 'card', priority: null },
      { key: 'b-bank', body: { payment_method: 'bank_transfer' }, seconds: 3 * DAY, method: 'bank_transfer', priority: null },
      { key: 'b-vip', body: { priority: 'vip' }, seconds: 20 * MIN + 45 * MIN, method: null, priority: 'vip' },
      { key: 'b-card-staff', body: { payment_method: 'card', priority: 'staff' }, seconds: 15 * MIN + 2 * HOUR, method: 'card', priority: 'staff' },
      { key: 'b-ttl', body: { payment_method: 'bank_transfer', ttl: '2h' }, seconds: 2 * HOUR, method: 'bank_transfer', priority: null },
    ];
    try {
      await isLocked;
      const first = api(server, 'POST', '/orders', { token: shop, body: { items: [{ sku: blocker, quantity: 1 }] } });
      await new Promise((resolve) => setTimeout(resolve, 300));
      const rest = batch.map((c) => reserve(c.body, c.key));
      await new Promise((resolve) => setTimeout(resolve, 300));
      release();
      const answers = await Promise.all([first, ...rest]);
      expect(answers.map((a) => a.status)).toEqual([201, 201, 201, 201, 201, 201]);
    } finally {
      release();
      await held;
    }
    for (const c of batch) await expectWindow(c.key, c.seconds, c.method, c.priority);
    // One statement: every order of the batch has its transaction's start time.
    const [{ commits }] = await t.sql<{ commits: number }[]>`
      SELECT count(DISTINCT created_at)::int AS commits FROM orders WHERE ref = ANY(${batch.map((c) => c.key)})`;
    expect(commits).toBe(1);
  });

  it('a bad PRIORITY_WINDOWS stops serve before it listens (exit 2 naming the entry)', async () => {
    const res = await runCli(['serve', '--port', '0'], { databaseUrl: t.url, env: { PRIORITY_WINDOWS: 'vip=soon' } });
    expect(res).toMatchObject({ code: 2, stdout: '', stderr: 'error: PRIORITY_WINDOWS entry "vip=soon": use a number and a unit, like 90s, 15m, 2h or 1d.\n' });
  });
});

describe('report splits conversion and expiry by payment method', () => {
  it('exact figures per method, orders without one under "none" (json, table, prometheus)', async () => {
    const other = await t.createDatabase();
    const run = async (args: string[]) => {
      const res = await t.cli(['--database-url', other.url, ...args], { env: WINDOWS });
      expect(res.code, `${args.join(' ')}: ${res.stderr}`).toBe(0);
      return res;
    };
    await run(['product', 'add', 'TEE', '--name', 'Tee', '--stock', '50']);
    await run(['product', 'add', 'CUP', '--name', 'Cup', '--stock', '50']);
    await Promise.all([
      run(['reserve', 'TEE:1', '--ref', 'card-paid', '--payment-method', 'card']),
      run(['reserve', 'TEE:1', '--ref', 'card-expired', '--payment-method', 'card']),
      run(['reserve', 'TEE:1', '--ref', 'card-pending', '--payment-method', 'card', '--priority', 'vip']),
      run(['reserve', 'TEE:1', '--ref', 'bank-pending', '--payment-method', 'bank_transfer']),
      run(['reserve', 'TEE:1', '--ref', 'bank-cancelled', '--payment-method', 'bank_transfer']),
      run(['reserve', 'TEE:1', '--ref', 'none-paid']),
      run(['reserve', 'TEE:1', 'CUP:1', '--ref', 'none-expired']),
    ]);
    await Promise.all([run(['pay', 'card-paid']), run(['pay', 'none-paid']), run(['cancel', 'bank-cancelled'])]);
    // Let two windows pass without waiting for them (the database clock decides expiry).
    await other.sql`UPDATE orders SET payment_expires_at = now() - interval '1 minute' WHERE ref IN ('card-expired', 'none-expired')`;
    await other.sql`UPDATE stock_reservations SET expires_at = now() - interval '1 minute'
                     WHERE order_id IN (SELECT order_id FROM orders WHERE ref IN ('card-expired', 'none-expired'))`;
    await run(['sweep']);

    const json = JSON.parse((await run(['report', '--format', 'json'])).stdout);
    expect(json).toMatchObject({ orders_created: 7, orders_paid: 2, orders_expired: 2, orders_cancelled_by_hand: 1, orders_pending: 2, expired_reservations: 3 });
    expect(json.by_payment_method).toEqual({
      bank_transfer: { orders_created: 2, orders_paid: 0, orders_expired: 0, orders_cancelled_by_hand: 1, orders_pending: 1, conversion_rate: 0, expired_reservations: 0 },
      card: { orders_created: 3, orders_paid: 1, orders_expired: 1, orders_cancelled_by_hand: 0, orders_pending: 1, conversion_rate: 0.5, expired_reservations: 1 },
      none: { orders_created: 2, orders_paid: 1, orders_expired: 1, orders_cancelled_by_hand: 0, orders_pending: 0, conversion_rate: 0.5, expired_reservations: 2 },
    });
    expect(Object.keys(json.by_payment_method)).toEqual(['bank_transfer', 'card', 'none']);

    const table = (await run(['report'])).stdout;
    expect(table).toMatch(/│ Payment method │ Orders │ Paid \/ expired \/ cancelled \/ pending │ Conversion rate │ Expired reservations │/);
    expect(table).toMatch(/│ bank_transfer +│ 2 +│ 0 \/ 0 \/ 1 \/ 1 +│ 0\.0 % +│ 0 +│/);
    expect(table).toMatch(/│ card +│ 3 +│ 1 \/ 1 \/ 0 \/ 1 +│ 50\.0 % +│ 1 +│/);
    expect(table).toMatch(/│ none +│ 2 +│ 1 \/ 1 \/ 0 \/ 0 +│ 50\.0 % +│ 2 +│/);

    const prom = (await run(['report', '--format', 'prometheus'])).stdout.split('\n');
    const series = (name: string) => prom.filter((l) => l.startsWith(`stockctl_payment_method_${name}{`));
    // The ratio over the window; the counts as counters, since the first order (rate() works on them).
    expect(series('conversion_ratio')).toEqual([
      'stockctl_payment_method_conversion_ratio{payment_method="bank_transfer"} 0',
      'stockctl_payment_method_conversion_ratio{payment_method="card"} 0.5',
      'stockctl_payment_method_conversion_ratio{payment_method="none"} 0.5',
    ]);
    expect(series('reservations_expired_total')).toEqual([
      'stockctl_payment_method_reservations_expired_total{payment_method="bank_transfer"} 0',
      'stockctl_payment_method_reservations_expired_total{payment_method="card"} 1',
      'stockctl_payment_method_reservations_expired_total{payment_method="none"} 2',
    ]);
    expect(series('orders_created_total')).toEqual([
      'stockctl_payment_method_orders_created_total{payment_method="bank_transfer"} 2',
      'stockctl_payment_method_orders_created_total{payment_method="card"} 3',
      'stockctl_payment_method_orders_created_total{payment_method="none"} 2',
    ]);
    const i = prom.indexOf(series('conversion_ratio')[0]);
    expect(prom.slice(i - 2, i)).toEqual([
      '# HELP stockctl_payment_method_conversion_ratio Paid orders out of the settled orders created in the window, by payment method (0 to 1).',
      '# TYPE stockctl_payment_method_conversion_ratio gauge',
    ]);
  });
});
