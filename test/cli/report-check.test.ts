/**
 * `stockctl report` and `stockctl check` after a small, known day of trading: two orders
 * reserved (one paid, one cancelled by hand) and one left to expire and swept. The
 * figures are asserted exactly; the alert rules are pushed over their thresholds one at
 * a time (each test puts the database back as it found it).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

async function ok(args: string[], env: Record<string, string> = {}) {
  const res = await t.cli(args, { env: { STOCKCTL_ACTOR: 'setup', ...env } });
  expect(res, `stockctl ${args.join(' ')}: ${res.stderr}`).toMatchObject({ code: 0, stderr: '' });
  return res;
}

interface Alert {
  rule: string;
  firing: boolean;
  value: number | string[] | null;
  threshold: number | null;
  message: string;
}
interface CheckResult {
  ok: boolean;
  firing: string[];
  alerts: Alert[];
}

async function check(env: Record<string, string> = {}) {
  return t.cliJson<CheckResult>(['check'], { env });
}

/** The alerts when nothing fires, with the default thresholds, after the scenario. */
const QUIET_ALERTS: Alert[] = [
  {
    rule: 'expired_reservations',
    firing: false,
    value: 1,
    threshold: 50,
    message: '1 reservations expired in the last hour (alert above 50)',
  },
  {
    rule: 'conflict_rate',
    firing: false,
    value: 0,
    threshold: 0.1,
    message: '0.0 % of orders in the last hour needed a stock retry (alert above 10 %)',
  },
  { rule: 'failed_sweeps', firing: false, value: 0, threshold: 3, message: '0 failed sweep(s) in a row (alert at 3)' },
  { rule: 'low_stock', firing: false, value: [], threshold: 0, message: 'no SKU at or below 0 available' },
  // The scenario swept seconds ago.
  { rule: 'sweep_age', firing: false, value: expect.any(Number) as unknown as number, threshold: 900, message: 'a sweep started within the last 15m' },
];

beforeAll(async () => {
  await Promise.all([
    ok(['product', 'add', 'TEE', '--name', 'T-shirt', '--price', '19.99', '--stock', '10']),
    ok(['product', 'add', 'MUG', '--name', 'Mug', '--price', '7.50', '--stock', '5']),
  ]);
  await Promise.all([
    ok(['reserve', 'TEE:2', '--ref', 'paid-1']),
    ok(['reserve', 'MUG:1', '--ref', 'cancel-1']),
    ok(['reserve', 'TEE:1', '--ref', 'expire-1', '--ttl', '15m']),
  ]);
  await Promise.all([ok(['pay', 'paid-1', '--payment-ref', 'pi_1']), ok(['cancel', 'cancel-1', '--reason', 'customer asked'])]);
  // Let its window pass without waiting for it (the database clock decides expiry).
  await t.sql`UPDATE orders SET payment_expires_at = now() - interval '1 minute' WHERE ref = 'expire-1'`;
  await t.sql`UPDATE stock_reservations SET expires_at = now() - interval '1 minute'
               WHERE order_id = (SELECT order_id FROM orders WHERE ref = 'expire-1')`;
  const swept = await t.cliJson<{ expired_orders: number; released_units: number }>(['sweep'], { env: { STOCKCTL_ACTOR: 'cron' } });
  expect(swept.code).toBe(0);
  expect(swept.json).toMatchObject({ expired_orders: 1, released_units: 1 });
});

describe('report', () => {
  it('--format json has the exact figures of the scenario', async () => {
    const res = await t.cli(['report', '--format', 'json']);
    expect(res.code).toBe(0);
    expect(res.stderr).toBe('');
    const report = JSON.parse(res.stdout);
    expect(report).toEqual({
      window_seconds: 3600,
      orders_created: 3,
      orders_paid: 1,
      orders_expired: 1,
      orders_cancelled_by_hand: 1,
      orders_pending: 0,
      conversion_rate: 0.3333,
      expired_reservations: 1,
      conflict_rate: 0,
      avg_seconds_to_payment: expect.any(Number),
      // No order named a payment method: all of them report under "none".
      by_payment_method: {
        none: {
          orders_created: 3,
          orders_paid: 1,
          orders_expired: 1,
          orders_cancelled_by_hand: 1,
          orders_pending: 0,
          conversion_rate: 0.3333,
          expired_reservations: 1,
        },
      },
      sweeps: {
        runs: 1,
        failed_runs: 0,
        orders_expired: 1,
        units_released: 1,
        consecutive_failures: 0,
        last_run_at: expect.stringMatching(ISO),
        last_error: null,
        seconds_since_last_run: expect.any(Number),
      },
    });
    // Generous bounds only: the scenario ran seconds ago.
    expect(report.avg_seconds_to_payment).toBeGreaterThanOrEqual(0);
    expect(report.avg_seconds_to_payment).toBeLessThan(120);
    expect(report.sweeps.seconds_since_last_run).toBeGreaterThanOrEqual(0);
    expect(report.sweeps.seconds_since_last_run).toBeLessThan(300);

    // --json gives the same document; --since changes only the window.
    const [json, day] = await Promise.all([t.cliJson<typeof report>(['report']), t.cliJson<typeof report>(['report', '--since', '1d'])]);
    expect(json.code).toBe(0);
    expect(json.json).toEqual({ ...report, avg_seconds_to_payment: expect.any(Number), sweeps: { ...report.sweeps, seconds_since_last_run: expect.any(Number) } });
    expect(day.code).toBe(0);
    expect(day.json).toMatchObject({ window_seconds: 86400, orders_created: 3, orders_paid: 1, orders_expired: 1 });
  });

  it('dry-run sweeps are not counted as sweep runs', async () => {
    const dry = await t.cli(['sweep', '--dry-run']);
    expect(dry).toMatchObject({ code: 0, stderr: '', stdout: 'Would expire 0 order(s), releasing 0 unit(s).\n' });
    const res = await t.cliJson<{ sweeps: { runs: number } }>(['report']);
    expect(res.json.sweeps.runs).toBe(1);
  });

  it('--format prometheus prints only well-formed metric and comment lines: counters since the start, a ratio over the window', async () => {
    const res = await t.cli(['report', '--format', 'prometheus']);
    expect(res.code).toBe(0);
    expect(res.stderr).toBe('');
    expect(res.stdout.endsWith('\n')).toBe(true);
    const lines = res.stdout.slice(0, -1).split('\n');
    for (const line of lines) {
      expect(line).toMatch(/^(stockctl_[a-z_]+(\{(payment_method|sku)="[^"]+"\})? [0-9.e+]+|# (HELP|TYPE) stockctl_[a-z_]+ .+)$/);
    }
    const metrics = Object.fromEntries(
      lines.filter((l) => !l.startsWith('#')).map((l) => l.split(' ') as [string, string]),
    );
    const counters = {
      stockctl_orders_created_total: '3',
      stockctl_orders_paid_total: '1',
      stockctl_orders_expired_total: '1',
      stockctl_orders_cancelled_total: '1',
      stockctl_orders_retried_total: '0',
      stockctl_reservations_expired_total: '1',
      stockctl_sweep_runs_total: '1',
      stockctl_sweep_failures_total: '0',
      'stockctl_payment_method_orders_created_total{payment_method="none"}': '3',
      'stockctl_payment_method_reservations_expired_total{payment_method="none"}': '1',
    };
    const gauges = {
      stockctl_window_seconds: '3600',
      stockctl_conversion_ratio: '0.3333',
      stockctl_orders_pending: '0',
      stockctl_sweep_consecutive_failures: '0',
      'stockctl_payment_method_conversion_ratio{payment_method="none"}': '0.3333',
      'stockctl_stock_available{sku="MUG"}': '5',
      'stockctl_stock_available{sku="TEE"}': '8',
    };
    expect(metrics).toMatchObject({ ...counters, ...gauges });
    // A timestamp, not an age: it keeps its value in a textfile, and `time() - it` grows.
    expect(Number(metrics.stockctl_sweep_last_run_timestamp_seconds)).toBeGreaterThan(Date.now() / 1000 - 300);
    // Every metric is announced by its HELP and TYPE lines, once, with its type.
    for (const [series, type] of [...Object.keys(counters).map((s) => [s, 'counter']), ...Object.keys(gauges).map((s) => [s, 'gauge'])]) {
      const name = series.replace(/\{.*/, '');
      expect(lines.filter((l) => l === `# TYPE ${name} ${type}`), series).toHaveLength(1);
      expect(lines.filter((l) => l.startsWith(`# HELP ${name} `)), series).toHaveLength(1);
      expect(lines.filter((l) => l.startsWith(`${series} `)), series).toHaveLength(1);
    }
  });

  it('the table shows the same figures', async () => {
    const res = await t.cli(['report']);
    expect(res.code).toBe(0);
    expect(res.stderr).toBe('');
    expect(res.stdout).toMatch(/│ Orders created\s+│ 3\s+│/);
    expect(res.stdout).toMatch(/│ Paid \/ expired \/ cancelled \/ pending │ 1 \/ 1 \/ 1 \/ 0\s+│/);
    expect(res.stdout).toMatch(/│ Conversion rate\s+│ 33\.3 %\s+│/);
    expect(res.stdout).toMatch(/│ Sweeps \(failed\)\s+│ 1 \(0\)\s+│/);
  });

  it('an invalid --since is a usage error (exit 2) naming the value', async () => {
    const res = await t.cli(['report', '--since', '5x']);
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    expect(res.stderr).toBe('error: Invalid --since "5x": use a number and a unit, like 90s, 15m, 2h or 1d.\n');
  });

  it('an order paid and then refunded is counted once: the outcome buckets add up to the orders created', async () => {
    // Uses its own database so that the scenario's figures above stay exact.
    const other = await t.createDatabase();
    const run = (args: string[]) => t.cli(['--database-url', other.url, ...args]);
    expect((await run(['product', 'add', 'REF', '--name', 'Refund me', '--stock', '3'])).code).toBe(0);
    expect((await run(['reserve', 'REF:1', '--ref', 'refund-1'])).code).toBe(0);
    expect((await run(['pay', 'refund-1'])).code).toBe(0);
    expect((await run(['cancel', 'refund-1', '--restock', '--reason', 'refund'])).code).toBe(0);

    const res = await run(['report', '--format', 'json']);
    expect(res.code).toBe(0);
    const r = JSON.parse(res.stdout);
    expect(r.orders_created).toBe(1);
    expect(r.orders_paid + r.orders_expired + r.orders_cancelled_by_hand + r.orders_pending).toBe(1);
    expect(r.conversion_rate).toBe(r.orders_paid / (r.orders_created - r.orders_pending));
  });
});

describe('check', () => {
  it('exits 0 when no rule fires, listing every rule on stdout', async () => {
    const [human, json] = await Promise.all([t.cli(['check']), check()]);
    expect(human.code).toBe(0);
    expect(human.stderr).toBe('');
    expect(human.stdout).toBe(
      [
        'ok      expired_reservations: 1 reservations expired in the last hour (alert above 50)',
        'ok      conflict_rate: 0.0 % of orders in the last hour needed a stock retry (alert above 10 %)',
        'ok      failed_sweeps: 0 failed sweep(s) in a row (alert at 3)',
        'ok      low_stock: no SKU at or below 0 available',
        'ok      sweep_age: a sweep started within the last 15m',
        '',
      ].join('\n'),
    );

    expect(json.code).toBe(0);
    expect(json.stderr).toBe('');
    expect(json.json).toEqual({ ok: true, firing: [], alerts: QUIET_ALERTS });
  });

  it('CHECK_MAX_EXPIRED_PER_HOUR: fires only above the threshold', async () => {
    const [atThreshold, over, human] = await Promise.all([
      check({ CHECK_MAX_EXPIRED_PER_HOUR: '1' }),
      check({ CHECK_MAX_EXPIRED_PER_HOUR: '0' }),
      t.cli(['check'], { env: { CHECK_MAX_EXPIRED_PER_HOUR: '0' } }),
    ]);
    expect(atThreshold.code).toBe(0);
    expect(atThreshold.json.firing).toEqual([]);

    expect(over.code).toBe(6);
    expect(over.stderr).toBe('');
    expect(over.json.ok).toBe(false);
    expect(over.json.firing).toEqual(['expired_reservations']);
    expect(over.json.alerts[0]).toEqual({
      rule: 'expired_reservations',
      firing: true,
      value: 1,
      threshold: 0,
      message: '1 reservations expired in the last hour (alert above 0)',
    });

    expect(human.code).toBe(6);
    expect(human.stderr).toBe('');
    expect(human.stdout.split('\n')[0]).toBe('FIRING  expired_reservations: 1 reservations expired in the last hour (alert above 0)');
  });

  it('low stock fires (exit 6) when a SKU has nothing left, and names it; CHECK_LOW_STOCK raises the bar', async () => {
    await ok(['stock', 'set', 'MUG', '0', '--reason', 'sold out at the fair']);
    try {
      const [res, human] = await Promise.all([check(), t.cli(['check'])]);
      expect(res.code).toBe(6);
      expect(res.stderr).toBe('');
      expect(res.json.firing).toEqual(['low_stock']);
      expect(res.json.alerts[3]).toEqual({
        rule: 'low_stock',
        firing: true,
        value: ['MUG=0'],
        threshold: 0,
        message: '1 SKU(s) at or below 0 available: MUG (0)',
      });
      expect(human.code).toBe(6);
      expect(human.stdout).toContain('FIRING  low_stock: 1 SKU(s) at or below 0 available: MUG (0)\n');
      // A shop that restocks by hand may turn the rule off, and keep the other three.
      const off = await check({ CHECK_LOW_STOCK: 'off' });
      expect(off.code).toBe(0);
      expect(off.json.alerts[3]).toEqual({ rule: 'low_stock', firing: false, value: [], threshold: null, message: 'off (CHECK_LOW_STOCK=off)' });
    } finally {
      await ok(['stock', 'set', 'MUG', '5']);
    }
    // MUG has 5 available, TEE 8.
    const [restored, five, four, eight] = await Promise.all([
      check(),
      check({ CHECK_LOW_STOCK: '5' }),
      check({ CHECK_LOW_STOCK: '4' }),
      check({ CHECK_LOW_STOCK: '8' }),
    ]);
    expect(restored.code).toBe(0);
    expect(five.code).toBe(6);
    expect(five.json.alerts[3]).toMatchObject({ firing: true, value: ['MUG=5'], threshold: 5 });
    expect(four.code).toBe(0);
    expect(eight.json.alerts[3]).toMatchObject({ firing: true, value: ['MUG=5', 'TEE=8'] });
  });

  it('the conflict rate fires above CHECK_MAX_CONFLICT_RATE', async () => {
    await t.sql`UPDATE orders SET reserve_attempts = 2 WHERE ref = 'paid-1'`;
    try {
      const [res, tolerant] = await Promise.all([check(), check({ CHECK_MAX_CONFLICT_RATE: '0.5' })]);
      expect(res.code).toBe(6);
      expect(res.json.firing).toEqual(['conflict_rate']);
      expect(res.json.alerts[1]).toEqual({
        rule: 'conflict_rate',
        firing: true,
        value: 0.3333,
        threshold: 0.1,
        message: '33.3 % of orders in the last hour needed a stock retry (alert above 10 %)',
      });
      expect(tolerant.code).toBe(0);
    } finally {
      await t.sql`UPDATE orders SET reserve_attempts = 1 WHERE ref = 'paid-1'`;
    }
  });

  it('three failed sweeps in a row fire; a dry run does not hide them; a good sweep clears them', async () => {
    const error = 'could not connect to the database: connection refused';
    await t.sql`INSERT INTO sweep_runs (started_at, finished_at, actor, error)
                VALUES (now(), now(), 'cron', ${error}), (now(), now(), 'cron', ${error})`;
    const two = await check();
    expect(two.code).toBe(0);
    expect(two.json.alerts[2]).toMatchObject({ firing: false, value: 2 });

    await t.sql`INSERT INTO sweep_runs (started_at, finished_at, actor, error) VALUES (now(), now(), 'cron', ${error})`;
    const [three, lenient, report] = await Promise.all([
      check(),
      check({ CHECK_MAX_FAILED_SWEEPS: '4' }),
      t.cliJson<{ sweeps: Record<string, unknown> }>(['report']),
    ]);
    expect(three.code).toBe(6);
    expect(three.stderr).toBe('');
    expect(three.json.firing).toEqual(['failed_sweeps']);
    expect(three.json.alerts[2]).toEqual({
      rule: 'failed_sweeps',
      firing: true,
      value: 3,
      threshold: 3,
      message: `3 failed sweep(s) in a row (alert at 3); last error: ${error}`,
    });

    expect(lenient.code).toBe(0);
    expect(report.json.sweeps).toMatchObject({ runs: 4, failed_runs: 3, consecutive_failures: 3, last_error: error });

    await ok(['sweep', '--dry-run']);
    expect((await check()).code).toBe(6);

    await ok(['sweep', '--quiet']);
    const cleared = await check();
    expect(cleared.code).toBe(0);
    expect(cleared.json.alerts[2]).toMatchObject({ firing: false, value: 0 });
  });

  it('an invalid threshold is a usage error (exit 2) naming the variable', async () => {
    const res = await t.cli(['check'], { env: { CHECK_LOW_STOCK: 'abc' } });
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    expect(res.stderr).toBe('error: CHECK_LOW_STOCK must be a whole number of 0 or more, or off, got "abc".\n');
  });
});

describe('check thresholds that cannot mean anything', () => {
  it('a rate above 1, no failed sweeps, a negative or fractional low-stock bar: exit 2 naming the variable', async () => {
    const cases: [Record<string, string>, string][] = [
      [{ CHECK_MAX_CONFLICT_RATE: '2' }, 'CHECK_MAX_CONFLICT_RATE must be a rate between 0 and 1 (0.1 is 10 %), got "2".'],
      [{ CHECK_MAX_FAILED_SWEEPS: '0' }, 'CHECK_MAX_FAILED_SWEEPS must be a whole number of 1 or more, got "0".'],
      [{ CHECK_LOW_STOCK: '-1' }, 'CHECK_LOW_STOCK must be a whole number of 0 or more, or off, got "-1".'],
      [{ CHECK_LOW_STOCK: '2.5' }, 'CHECK_LOW_STOCK must be a whole number of 0 or more, or off, got "2.5".'],
    ];
    for (const [env, message] of cases) {
      const res = await t.cli(['check'], { env });
      expect(res, JSON.stringify(env)).toMatchObject({ code: 2, stdout: '', stderr: `error: ${message}\n` });
    }
  });
});
