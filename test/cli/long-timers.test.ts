/**
 * Durations longer than a Node timer can hold (2^31 - 1 ms, about 24.8 days) are waited
 * in full: `sweep --every`, `serve --sweep-every` and `serve --grace` accept up to 366d,
 * and a value past 24.8 days must neither fire at once (Node turns it into 1 ms) nor print
 * a TimeoutOverflowWarning.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { addProduct } from '../../src/engine/catalogue.js';
import { reserveOrder } from '../../src/engine/orders.js';
import { DEFAULT_SETTINGS } from '../../src/engine/settings.js';
import { startCli } from '../helpers/cli.js';
import { useTestDatabase } from '../helpers/db.js';
import { holdStockLevel } from '../helpers/locks.js';
import { api, startServer } from '../server/_server.js';

const t = useTestDatabase();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Long enough for a timer turned into 1 ms to have fired many times. */
const WATCH_MS = 2000;

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A pending order whose 1 s window has passed, left for a sweep to find. */
async function expiredOrder(sku: string): Promise<string> {
  const order = await reserveOrder(t.db, { lines: [{ sku, quantity: 1 }], ttlSeconds: 1, actor: 'test' }, DEFAULT_SETTINGS);
  await sleep(1200);
  return order.order_id;
}

async function statusOf(orderId: string): Promise<string> {
  const [row] = await t.sql<{ status: string }[]>`SELECT status FROM orders WHERE order_id = ${orderId}`;
  return row.status;
}

beforeAll(async () => {
  await addProduct(t.db, { sku: 'LONG', name: 'Long', stock: 100, actor: 'test' });
});

describe('sweep --every past 24.8 days', () => {
  for (const { name, args, env } of [
    { name: '--every 366d', args: ['--every', '366d'], env: {} },
    { name: '--every with CLEANUP_INTERVAL_MINUTES=36000 (25 days)', args: ['--every'], env: { CLEANUP_INTERVAL_MINUTES: '36000' } },
  ]) {
    it(`${name}: one sweep, then it waits; no TimeoutOverflowWarning`, async () => {
      let stdout = '';
      const proc = startCli(['sweep', ...args, '--json'], { databaseUrl: t.url, env, timeoutMs: 60_000 });
      proc.child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
      await until('the first run', () => stdout.includes('\n'));
      await sleep(WATCH_MS);
      const runs = stdout.split('\n').filter(Boolean);
      proc.child.kill('SIGTERM');
      const res = await proc.result;
      expect(runs).toHaveLength(1);
      expect(JSON.parse(runs[0])).toMatchObject({ interrupted: false });
      expect(res.stderr).not.toMatch(/TimeoutOverflowWarning/);
      expect(res.code, res.stderr).toBe(143);
    });
  }
});

describe('serve with durations past 24.8 days', () => {
  it('--sweep-every 366d: no sweep runs meanwhile (an expired order stays pending); no TimeoutOverflowWarning', async () => {
    const orderId = await expiredOrder('LONG');
    const sweepRuns = async () => (await t.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM sweep_runs`)[0].n;
    const before = await sweepRuns();
    const server = await startServer(t.url, ['--sweep-every', '366d', '--strategy', 'guarded']);
    let res;
    try {
      await sleep(WATCH_MS);
      expect(await statusOf(orderId)).toBe('pending');
    } finally {
      res = await server.stop();
    }
    expect(res.stderr).not.toMatch(/TimeoutOverflowWarning/);
    expect(res.code, res.stderr).toBe(0);
    expect(await sweepRuns()).toBe(before);
  });

  it('--grace 366d: a request in flight at SIGTERM is answered, not cut off', async () => {
    const token = await t.cliJson<{ token: string }>(['token', 'create', 'grace-shop', '--role', 'shop']);
    expect(token.code, token.stdout).toBe(0);
    await addProduct(t.db, { sku: 'GRACE', name: 'Grace', stock: 5, actor: 'test' });
    const server = await startServer(t.url, ['--grace', '366d', '--strategy', 'guarded']);
    // Hold GRACE's row, so that an order for it is in flight (waiting for the lock) at SIGTERM.
    const lock = await holdStockLevel(t.url, 'GRACE');
    let exit;
    let answer;
    try {
      const order = api(server, 'POST', '/orders', { token: token.json.token, body: { items: [{ sku: 'GRACE', quantity: 1 }] } });
      order.catch(() => {});
      await until('the order waiting for the row lock', async () => {
        const waiting = await t.sql`SELECT 1 FROM pg_stat_activity
                                     WHERE application_name = 'stockctl-serve' AND wait_event_type = 'Lock'`;
        return waiting.length > 0;
      });
      server.proc.child.kill('SIGTERM');
      await sleep(WATCH_MS);
      await lock.release();
      answer = await order;
      exit = await server.proc.result;
    } finally {
      await lock.release();
      server.proc.child.kill('SIGKILL');
    }
    expect(answer.status, answer.text).toBe(201);
    expect(await statusOf(answer.body.order_id)).toBe('pending');
    expect(exit.stderr).not.toMatch(/TimeoutOverflowWarning/);
    expect(exit.code, exit.stderr).toBe(0);
  });
});
