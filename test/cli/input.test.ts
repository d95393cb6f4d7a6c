/**
 * Text a user types, and what stockctl says back (issue 6, items 6, 7, 10, 11, 12):
 * control characters refused everywhere text comes in, echoed input quoted and
 * shortened, one rule for payment windows, readable order output, and naming an
 * order by a unique id prefix.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { startCli } from '../helpers/cli.js';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();

const SKU = 'INPUT-TEE';
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
// Anything but the newline that ends a line of output.
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]|\n(?!$)/;

interface Reserved {
  order_id: string;
  ref: string | null;
}

async function reserve(...args: string[]): Promise<Reserved> {
  const res = await t.cliJson<Reserved>(['reserve', `${SKU}:1`, ...args]);
  expect(res, res.stdout).toMatchObject({ code: 0, stderr: '' });
  return res.json;
}

async function snapshot() {
  const [row] = await t.sql`
    SELECT (SELECT count(*)::int FROM orders) AS orders,
           (SELECT count(*)::int FROM products) AS products,
           (SELECT count(*)::int FROM stock_movements) AS movements,
           (SELECT string_agg(coalesce(cancel_reason, '') || coalesce(payment_ref, ''), ',') FROM orders) AS texts`;
  return row;
}

/** An invalid-input refusal as a user sees it: exit 2, one line on stderr, nothing raw. */
function expectRefused(res: { code: number | null; stdout: string; stderr: string }, what: string) {
  expect(res.code, `${what}\nstderr: ${JSON.stringify(res.stderr)}`).toBe(2);
  expect(res.stdout, what).toBe('');
  expect(res.stderr, what).toMatch(/^error: [^\n]*\n$/);
  expect(res.stderr, what).not.toMatch(RAW_CONTROL);
}

beforeAll(async () => {
  const added = await t.cli(['product', 'add', SKU, '--name', 'Tee', '--price', '10', '--stock', '100']);
  expect(added, added.stderr).toMatchObject({ code: 0, stderr: '' });
  await reserve('--ref', 'input-pending');
});

describe('control characters are refused wherever text comes in (item 6)', () => {
  const cases: { args: string[]; env?: Record<string, string>; input?: string; names: string }[] = [
    { args: ['reserve', `${SKU}:1`, '--ref', 'a\nb'], names: 'Invalid ref "a\\nb": it contains a control character ("\\n" at position 2)' },
    { args: ['reserve', `${SKU}:1`, '--customer', '\x1b[31mRED'], names: 'Invalid customer id "\\u001b[31mRED"' },
    { args: ['pay', 'input-pending', '--payment-ref', 'pi\x07'], names: 'Invalid payment ref "pi\\u0007"' },
    { args: ['cancel', 'input-pending', '--reason', 'asked\r\x1b[2K'], names: 'Invalid reason "asked\\r\\u001b[2K"' },
    { args: ['stock', 'set', SKU, '3', '--reason', 'count\x7f'], names: 'Invalid reason "count\\u007f"' },
    { args: ['stock', 'adjust', SKU, '+1', '--reason', 'evil\u202etxt'], names: 'Invalid reason "evil\\u202etxt"' },
    { args: ['product', 'add', 'INPUT-NEW', '--name', 'Tee\nshirt'], names: 'Invalid name "Tee\\nshirt"' },
    { args: ['orders', 'show', 'x\x1b]0;title\x07'], names: 'Invalid order id or ref "x\\u001b]0;title\\u0007"' },
    { args: ['orders', 'list', '--customer', 'c\t42'], names: 'Invalid customer id "c\\t42"' },
    { args: ['extend', 'input\x1bpending', '--ttl', '5m'], names: 'Invalid order id or ref "input\\u001bpending"' },
    { args: ['stock', 'adjust', SKU, '+1', '--actor', 'ops\nroot'], names: 'Invalid actor (--actor) "ops\\nroot"' },
    { args: ['stock', 'adjust', SKU, '+1'], env: { STOCKCTL_ACTOR: '\x1b[1mops' }, names: 'Invalid actor (STOCKCTL_ACTOR) "\\u001b[1mops"' },
    { args: ['stock', 'adjust', SKU, '+1', '--actor', '   '], names: 'Invalid actor (--actor): it is blank; give a name, or leave it out to record the OS user.' },
    {
      args: ['cancel', '--from-file', '-'],
      input: 'input-pending\nx\x1b[2Jy\n',
      names: 'Invalid order id or ref "x\\u001b[2Jy"',
    },
  ];

  it('exits 2 naming the value with the character escaped, and writes nothing', async () => {
    const before = await snapshot();
    const results = await Promise.all(cases.map(({ args, env, input }) => t.cli(args, { env, input })));
    results.forEach((res, i) => {
      const what = `stockctl ${JSON.stringify(cases[i].args)}`;
      expectRefused(res, what);
      expect(res.stderr, what).toContain(cases[i].names);
    });
    expect(await snapshot()).toEqual(before);
  });

  it('with --json: one JSON error document, invalid_input, the value escaped', async () => {
    const res = await t.cliJson<{ error: { code: string; message: string } }>(['reserve', `${SKU}:1`, '--customer', '\x1b[31mRED']);
    expect(res.code).toBe(2);
    expect(res.stderr).toBe('');
    expect(res.json).toEqual({
      error: {
        code: 'invalid_input',
        message: 'Invalid customer id "\\u001b[31mRED": it contains a control character ("\\u001b" at position 1); use printable text.',
      },
    });
  });
});

describe('one rule for payment windows: 1s to 366d (item 7)', () => {
  it('refuses PAYMENT_TIMEOUT_MINUTES=0 and beyond 366 days, as --ttl does', async () => {
    for (const value of ['0', '527041', '1000000']) {
      const res = await t.cli(['reserve', `${SKU}:1`], { env: { PAYMENT_TIMEOUT_MINUTES: value } });
      expectRefused(res, value);
      expect(res.stderr).toBe(`error: Invalid PAYMENT_TIMEOUT_MINUTES "${value}": must be between 1s and 366d (1 to 527040 minutes).\n`);
    }
  });

  it('accepts PAYMENT_TIMEOUT_MINUTES=527040 (366 days) as the window', async () => {
    const res = await t.cliJson<Reserved>(['reserve', `${SKU}:1`, '--ref', 'input-366d'], { env: { PAYMENT_TIMEOUT_MINUTES: '527040' } });
    expect(res).toMatchObject({ code: 0, stderr: '' });
    const [row] = await t.sql`SELECT extract(epoch FROM payment_expires_at - created_at)::int AS window FROM orders WHERE ref = 'input-366d'`;
    expect(row.window).toBe(366 * 86400);
  });

  it('says "must be between 1s and 366d" for an out-of-range --ttl, however many digits', async () => {
    for (const ttl of ['99999999s', '0s', '367d', `${'9'.repeat(30)}m`]) {
      const res = await t.cli(['reserve', `${SKU}:1`, '--ttl', ttl]);
      expectRefused(res, ttl);
      expect(res.stderr).toMatch(/^error: Invalid --ttl "[0-9]+[smd]…?": must be between 1s and 366d\.\n$/);
    }
  });
});

describe('long input is quoted and shortened when echoed (item 10)', () => {
  it('a 5000-digit quantity is named in a short message', async () => {
    const res = await t.cli(['reserve', `${SKU}:${'9'.repeat(5000)}`]);
    expectRefused(res, 'quantity');
    expect(res.stderr).toBe(`error: Invalid quantity for ${SKU} "${'9'.repeat(40)}…": must be between 1 and 1000000.\n`);
  });

  it('a 10,000-character ref is "too long", like customer and reason', async () => {
    const ref = 'r'.repeat(10_000);
    for (const args of [['reserve', `${SKU}:1`, '--ref', ref], ['orders', 'show', ref], ['pay', ref]]) {
      const res = await t.cli(args);
      expectRefused(res, args[0]);
      expect(res.stderr).toMatch(/^error: The (ref|order id or ref) is too long \(10000 characters; at most 200\)\.\n$/);
    }
  });

  it('a long line from stdin is quoted and cut, its raw bytes never echoed', async () => {
    const res = await t.cli(['cancel', '--from-file', '-'], { input: `\x1b[31m${'x'.repeat(150)}\n` });
    expectRefused(res, 'stdin');
    expect(res.stderr).toBe(`error: Invalid order id or ref "\\u001b[31m${'x'.repeat(35)}…": it contains a control character ("\\u001b" at position 1); use printable text.\n`);
  });

  it("commander's usage errors escape and shorten what was typed", async () => {
    const res = await t.cli(['reserve', `${SKU}:1`, '--strategy', `\x1b[31m${'s'.repeat(100)}`]);
    expect(res).toMatchObject({ code: 2, stdout: '' });
    expect(res.stderr).toBe(
      `error: option '--strategy <name>' argument '\\u001b[31m${'s'.repeat(30)}…' is invalid. Allowed choices are guarded, optimistic, locking, batched.\n(run with --help for usage)\n`,
    );
  });
});

describe('what orders show, pay, stock --watch and a bare command say (item 11)', () => {
  it('orders show: a pending order past its window says how long ago it expired', async () => {
    const order = await reserve('--ref', 'input-late');
    await t.sql`UPDATE orders SET payment_expires_at = now() - interval '3 minutes' WHERE order_id = ${order.order_id}`;
    const res = await t.cli(['orders', 'show', 'input-late']);
    expect(res).toMatchObject({ code: 0, stderr: '' });
    expect(res.stdout).toMatch(/\nPay by \S+ \(expired 3m\d\ds ago\)\n/);
    expect(res.stdout).not.toContain('left)');
    const pendingShow = await t.cli(['orders', 'show', 'input-pending']);
    expect(pendingShow.stdout).toMatch(/\nStatus: pending  total 10\.00  customer -\n/);
    expect(pendingShow.stdout).toMatch(/\nPay by \S+ \(1[45]m\d\ds left\)\n/);
  });

  it('pay names the order by id and ref; orders show of a paid order does not repeat "paid"', async () => {
    const order = await reserve('--ref', 'input-paid');
    const paid = await t.cli(['pay', 'input-paid']);
    expect(paid).toMatchObject({ code: 0, stderr: '', stdout: `Order ${order.order_id} (ref input-paid) paid: 1 unit(s) sold.\n` });
    const again = await t.cli(['pay', order.order_id]);
    expect(again.stdout).toMatch(new RegExp(`^Order ${order.order_id} \\(ref input-paid\\) was already paid at \\S+; nothing changed\\.\\n$`));
    const show = await t.cli(['orders', 'show', 'input-paid']);
    expect(show.stdout).toContain('\nStatus: paid  total 10.00  customer -\n');
    const bare = await reserve();
    const paidBare = await t.cli(['pay', bare.order_id]);
    expect(paidBare.stdout).toBe(`Order ${bare.order_id} paid: 1 unit(s) sold.\n`);
  });

  it('stock --watch stamps each screen with ISO UTC time', async () => {
    const watch = startCli(['stock', SKU, '--watch'], { databaseUrl: t.url });
    try {
      await watch.waitForStdout(/Ctrl-C to stop/);
    } finally {
      watch.child.kill('SIGINT');
    }
    const res = await watch.result;
    expect(res.code).toBe(130);
    const [first] = res.stdout.split('\n');
    const [stamp, rest] = first.split('  ');
    expect(stamp).toMatch(ISO);
    expect(rest).toBe('(Ctrl-C to stop)');
  });

  it('a command group named without a command: help on a terminal, a JSON usage error with --json', async () => {
    for (const [args, path] of [
      [['--json'], 'stockctl'],
      [['orders', '--json'], 'stockctl orders'],
    ] as const) {
      const res = await t.cliJson<unknown>(args.filter((a) => a !== '--json'));
      expect(res.code).toBe(2);
      expect(res.stderr).toBe('');
      expect(res.json).toEqual({ error: { code: 'usage', message: `Name a command: run ${path} --help to list them.` } });
    }
    const human = await t.cli([]);
    expect(human.code).toBe(2);
    expect(human.stdout).toBe('');
    expect(human.stderr).toMatch(/^Usage: stockctl \[options\] \[command\]\n/);
  });
});

describe('support: --customer and order id prefixes (item 12)', () => {
  it('orders list --customer shows only that customer', async () => {
    const mine = await reserve('--customer', 'c-input-1');
    await reserve('--customer', 'c-input-2');
    const res = await t.cliJson<{ orders: { order_id: string; customer_id: string }[] }>(['orders', 'list', '--customer', 'c-input-1']);
    expect(res).toMatchObject({ code: 0, stderr: '' });
    expect(res.json.orders.map((o) => [o.order_id, o.customer_id])).toEqual([[mine.order_id, 'c-input-1']]);
  });

  it('pay, extend, orders show and cancel take a unique id prefix of 8 or more hex digits', async () => {
    const a = await reserve();
    const b = await reserve();
    const shown = await t.cliJson<{ order_id: string }>(['orders', 'show', a.order_id.slice(0, 8)]);
    expect(shown).toMatchObject({ code: 0, stderr: '', json: { order_id: a.order_id } });
    const upper = await t.cliJson<{ order_id: string }>(['orders', 'show', a.order_id.slice(0, 13).toUpperCase()]);
    expect(upper.json.order_id).toBe(a.order_id);
    const extended = await t.cliJson<{ order_id: string }>(['extend', a.order_id.slice(0, 11), '--ttl', '30m']);
    expect(extended).toMatchObject({ code: 0, json: { order_id: a.order_id } });
    const paid = await t.cliJson<{ order_id: string }>(['pay', a.order_id.slice(0, 8)]);
    expect(paid).toMatchObject({ code: 0, json: { order_id: a.order_id, status: 'paid' } });
    const cancelled = await t.cli(['cancel', b.order_id.slice(0, 10)]);
    expect(cancelled).toMatchObject({ code: 0, stderr: '', stdout: `cancelled  ${b.order_id.slice(0, 10)}: released 1 unit(s)\n` });
  });

  it('an ambiguous prefix is exit 2 naming the matches; no match is exit 4; an exact ref wins (refs like a prefix are refused now)', async () => {
    const ids = ['abcdef01-0000-4000-8000-000000000001', 'abcdef01-0000-4000-8000-000000000002'];
    for (const id of ids) {
      await t.sql`INSERT INTO orders (order_id, status, payment_status, cancelled_at) VALUES (${id}, 'cancelled', 'void', now())`;
    }
    const ambiguous = await t.cli(['orders', 'show', 'abcdef01']);
    expectRefused(ambiguous, 'ambiguous');
    expect(ambiguous.stderr).toBe(`error: Order id prefix "abcdef01" matches several orders (${ids.join(', ')}); give more of the id.\n`);
    const json = await t.cliJson<{ error: { code: string } }>(['pay', 'abcdef01-0000']);
    expect(json).toMatchObject({ code: 2, json: { error: { code: 'order_ambiguous', matches: ids } } });
    const longer = await t.cli(['cancel', 'abcdef01-0000-4000-8000-00000000000']);
    expect(longer.code).toBe(2); // still both
    const whole = await t.cliJson<{ order_id: string }>(['orders', 'show', ids[1]]);
    expect(whole).toMatchObject({ code: 0, json: { order_id: ids[1] } });

    const none = await t.cli(['orders', 'show', 'abcdef02']);
    expect(none).toMatchObject({ code: 4, stdout: '', stderr: 'error: No order has id or ref "abcdef02".\n' });
    const short = await t.cli(['orders', 'show', 'abcdef0']);
    expect(short).toMatchObject({ code: 4, stderr: 'error: No order has id or ref "abcdef0".\n' });

    // A new ref may not look like an id prefix; one stored before that rule still wins over the prefix.
    expect((await t.cli(['reserve', `${SKU}:1`, '--ref', 'abcdef01'])).code).toBe(2);
    const byRef = 'abcdef01-0000-4000-8000-0000000000ff';
    await t.sql`INSERT INTO orders (order_id, ref, status, payment_status, cancelled_at) VALUES (${byRef}, 'abcdef01', 'cancelled', 'void', now())`;
    const exact = await t.cliJson<{ order_id: string }>(['orders', 'show', 'abcdef01']);
    expect(exact).toMatchObject({ code: 0, json: { order_id: byRef } });
  });
});
