/**
 * `sweep --every`: a sweep loop for hosts without cron. SIGTERM lets the current run
 * finish and record itself; a database that goes away and comes back costs failed ticks,
 * never the loop.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addProduct } from '../../src/engine/catalogue.js';
import { reserveOrder } from '../../src/engine/orders.js';
import { DEFAULT_SETTINGS } from '../../src/engine/settings.js';
import { startCli, type CliProcess } from '../helpers/cli.js';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Orders whose 1 s window will have passed by the time this resolves. */
async function expiredOrders(sku: string, n: number) {
  for (let i = 0; i < n; i++) {
    await reserveOrder(t.db, { lines: [{ sku, quantity: 1 }], ttlSeconds: 1, actor: 'test' }, DEFAULT_SETTINGS);
  }
  await sleep(1200);
}

/** The JSON lines printed so far. */
function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

beforeAll(async () => {
  await addProduct(t.db, { sku: 'LOOP', name: 'Loop', stock: 100, actor: 'test' });
});

describe('sweep --every', () => {
  it('sweeps on every tick; SIGTERM ends it with exit 143 and every run recorded', async () => {
    await expiredOrders('LOOP', 3);
    let stdout = '';
    const proc = startCli(['sweep', '--every', '1s', '--json'], { databaseUrl: t.url, timeoutMs: 60_000 });
    proc.child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    await until('two runs', () => jsonLines(stdout).length >= 2);
    const [first] = jsonLines(stdout);
    expect(first).toMatchObject({ expired_orders: 3, released_units: 3, interrupted: false });
    proc.child.kill('SIGTERM');
    const res = await proc.result;
    expect(res.code, res.stderr).toBe(143);
    const runs = await t.sql`SELECT count(*)::int AS n, count(finished_at)::int AS finished FROM sweep_runs`;
    expect(runs[0].n).toBe(runs[0].finished);
    expect(runs[0].n).toBeGreaterThanOrEqual(2);
    const [row] = await t.sql`SELECT reserved_stock FROM stock_levels WHERE sku = 'LOOP' AND location = 'default'`;
    expect(row.reserved_stock).toBe(0);
  });

  it('a table gone missing under it (a database recreated) is a failed tick naming `stockctl migrate`, not an internal error', async () => {
    let stdout = '';
    const proc = startCli(['sweep', '--every', '1s', '--json'], { databaseUrl: t.url, timeoutMs: 60_000 });
    proc.child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    await until('a first run', () => jsonLines(stdout).length >= 1);
    await t.sql`ALTER TABLE sweep_runs RENAME TO sweep_runs_away`;
    try {
      await until('a failed tick', () => jsonLines(stdout).some((l) => l.error !== undefined));
    } finally {
      await t.sql`ALTER TABLE sweep_runs_away RENAME TO sweep_runs`;
    }
    const failed = jsonLines(stdout).find((l) => l.error !== undefined)!;
    expect(failed.error).toEqual({
      code: 'not_migrated',
      message: 'The database is missing a stockctl table (relation "sweep_runs" does not exist): its schema is not migrated; run `stockctl migrate` first.',
    });
    const lines = jsonLines(stdout).length;
    await until('a run once it is back', () => jsonLines(stdout).slice(lines).some((l) => l.error === undefined));
    proc.child.kill('SIGTERM');
    expect((await proc.result).code).toBe(143);
  });

  describe('a database that goes away and comes back', () => {
    let proxy: net.Server | undefined;
    const sockets = new Set<net.Socket>();
    let port = 0;

    /** A TCP proxy to the test server on a fixed port, that can be cut and restored. */
    async function openProxy() {
      const target = new URL(t.url);
      proxy = net.createServer((client) => {
        const upstream = net.connect(Number(target.port || 5432), target.hostname);
        sockets.add(client).add(upstream);
        client.pipe(upstream).pipe(client);
        const end = () => {
          client.destroy();
          upstream.destroy();
        };
        client.on('error', end).on('close', end);
        upstream.on('error', end).on('close', end);
      });
      await new Promise<void>((resolve) => proxy!.listen(port, '127.0.0.1', resolve));
      port = (proxy.address() as net.AddressInfo).port;
    }
    async function cutProxy() {
      for (const s of sockets) s.destroy();
      sockets.clear();
      await new Promise((resolve) => proxy!.close(resolve));
    }

    beforeAll(openProxy);
    afterAll(async () => {
      if (proxy?.listening) await cutProxy();
    });

    it('reports the failed ticks and sweeps again once it is back', async () => {
      const via = new URL(t.url);
      via.host = `127.0.0.1:${port}`;
      let stdout = '';
      const proc: CliProcess = startCli(['sweep', '--every', '1s', '--json'], { databaseUrl: via.toString(), timeoutMs: 90_000 });
      proc.child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
      await until('a first run', () => jsonLines(stdout).length >= 1);

      await cutProxy();
      await until('a failed tick', () => jsonLines(stdout).some((l) => l.error));
      const failure = jsonLines(stdout).find((l) => l.error) as { error: { code: string } };
      expect(failure.error.code).toMatch(/database_unavailable|timeout/);

      await expiredOrders('LOOP', 2);
      await openProxy();
      await until('a run that sweeps the new orders', () => jsonLines(stdout).some((l) => l.expired_orders === 2), 45_000);
      proc.child.kill('SIGTERM');
      const res = await proc.result;
      expect(res.code, res.stderr).toBe(143);
      const [row] = await t.sql`SELECT reserved_stock FROM stock_levels WHERE sku = 'LOOP' AND location = 'default'`;
      expect(row.reserved_stock).toBe(0);
    }, 120_000);
  });
});
