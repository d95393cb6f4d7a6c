/**
 * `stockctl serve` when the database goes away, caused for real: every backend of the
 * database terminated every 200 ms under HTTP load, and a database that refuses new
 * connections (ALLOW_CONNECTIONS false). The server never exits and never answers 500;
 * an outage is a 503 `database_unavailable` problem with Retry-After; it recovers by
 * itself; and every order whose answer was lost ends as exactly one order by its key.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { adminClient } from '../helpers/pg.js';
import { api, startServer, type ApiResponse, type RunningServer } from './_server.js';

const t = useTestDatabase();
let server: RunningServer;
let shop = '';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Kills come from a session on the server's admin database, named so that it spares itself. */
async function terminateAll(admin: ReturnType<typeof adminClient>): Promise<number> {
  const rows = await admin`
    SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
     WHERE datname = ${t.name} AND pid <> pg_backend_pid()`;
  return rows.filter((r) => r.killed).length;
}

type Answer = ApiResponse & { error?: string };

async function call(method: string, path: string, body?: unknown, key?: string): Promise<Answer> {
  try {
    return await api(server, method, path, { token: shop, body, headers: key ? { 'idempotency-key': key } : {} });
  } catch (err) {
    return { status: 0, headers: new Headers(), body: undefined, text: '', error: String(err) };
  }
}

const order = (key: string) =>
  call('POST', '/orders', { items: [{ sku: 'FAULT-A', quantity: 1 }, { sku: 'FAULT-B', quantity: 1 }] }, key);

/** A 503 as a client must be able to rely on: a problem document saying so, and when to come back. */
function expectOutage(answer: Answer) {
  expect(answer.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(answer.headers.get('retry-after')).toMatch(/^\d+$/);
  expect(answer.body).toMatchObject({ status: 503, code: 'database_unavailable' });
}

beforeAll(async () => {
  for (const sku of ['FAULT-A', 'FAULT-B']) {
    const res = await t.cli(['product', 'add', sku, '--name', sku, '--price', '5', '--stock', '100000']);
    expect(res.code, res.stderr).toBe(0);
  }
  const token = await t.cliJson<{ token: string }>(['token', 'create', 'fault-shop', '--role', 'shop']);
  expect(token.code, token.stdout).toBe(0);
  shop = token.json.token;
  server = await startServer(t.url);
});

afterAll(async () => {
  const res = await server?.stop();
  if (res) {
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).not.toMatch(/"internal error"|TypeError|Unhandled|uncaught/i);
  }
});

describe('serve while every backend is terminated every 200 ms', () => {
  it('stays up, answers 503 with Retry-After (never 500), recovers, and loses no acknowledged order', async () => {
    const admin = adminClient(inject('testServer').adminUrl);
    const answers: { key: string; first: Answer }[] = [];
    const followUps: Answer[] = [];
    let running = true;
    const client = async (n: number) => {
      for (let i = 0; running; i++) {
        const key = `fault-${n}-${i}-${randomUUID()}`;
        const first = await order(key);
        answers.push({ key, first });
        if (first.status === 201 && i % 3 === 1) followUps.push(await call('PATCH', `/orders/${first.body.order_id}/payment`, {}));
        if (first.status === 201 && i % 3 === 2) followUps.push(await call('DELETE', `/orders/${first.body.order_id}`));
      }
    };
    const clients = Array.from({ length: 6 }, (_, n) => client(n));
    let kills = 0;
    try {
      const until = Date.now() + 3000;
      while (Date.now() < until) {
        await sleep(200);
        kills += await terminateAll(admin);
      }
    } finally {
      running = false;
      await Promise.all(clients);
      await admin.end({ timeout: 5 });
    }
    expect(kills).toBeGreaterThan(0);
    expect(server.proc.child.exitCode).toBeNull();

    const all = [...answers.map((a) => a.first), ...followUps];
    expect(all.filter((a) => a.status === 0).map((a) => a.error)).toEqual([]);
    expect(all.filter((a) => a.status >= 500 && a.status !== 503).map((a) => a.text)).toEqual([]);
    const outages = all.filter((a) => a.status === 503);
    for (const answer of outages) expectOutage(answer);
    expect(new Set(all.map((a) => a.status))).toEqual(new Set(all.map((a) => a.status).filter((s) => [200, 201, 409, 503].includes(s))));

    // Recovered: the next requests all succeed, and readiness says so.
    const ready = await api(server, 'GET', '/readyz');
    expect(ready.status).toBe(200);
    for (let i = 0; i < 20; i++) expect((await order(`after-${i}-${randomUUID()}`)).status).toBe(201);

    // Every order whose answer was a 503 is retried with its key: exactly one order each.
    const unknown = answers.filter((a) => a.first.status === 503);
    for (const { key } of unknown) expect([200, 201]).toContain((await order(key)).status);
    const acknowledged = answers.filter((a) => a.first.status === 201).map((a) => a.key);
    const keys = answers.map((a) => a.key);
    const rows = await t.sql<{ ref: string; n: number; lines: number; reservations: number }[]>`
      SELECT o.ref, count(*) OVER (PARTITION BY o.ref)::int AS n,
             (SELECT count(*) FROM order_items i WHERE i.order_id = o.order_id)::int AS lines,
             (SELECT count(*) FROM stock_reservations r WHERE r.order_id = o.order_id)::int AS reservations
        FROM orders o WHERE o.ref = ANY(${keys})`;
    const byRef = new Map(rows.map((r) => [r.ref, r]));
    expect(acknowledged.filter((k) => !byRef.has(k))).toEqual([]);
    expect(unknown.filter((a) => !byRef.has(a.key)).map((a) => a.key)).toEqual([]);
    // One order per key, each whole: two lines, two reservations.
    expect(rows.filter((r) => r.n !== 1 || r.lines !== 2 || r.reservations !== 2)).toEqual([]);

    const verify = await t.cliJson<{ ok: boolean }>(['verify']);
    expect(verify.code, verify.stdout).toBe(0);
  }, 90_000);
});

describe('serve while the database refuses connections', () => {
  it('answers 503 database_unavailable on orders and /readyz while it lasts, and recovers by itself', async () => {
    const admin = adminClient(inject('testServer').adminUrl);
    try {
      await admin`ALTER DATABASE ${admin(t.name)} ALLOW_CONNECTIONS false`;
      await terminateAll(admin);
      const refused = await order(`refused-${randomUUID()}`);
      expect(refused.status, refused.text).toBe(503);
      expectOutage(refused);
      const notReady = await api(server, 'GET', '/readyz');
      expect(notReady.status, notReady.text).toBe(503);
      expectOutage(notReady);
    } finally {
      await admin`ALTER DATABASE ${admin(t.name)} ALLOW_CONNECTIONS true`;
      await admin.end({ timeout: 5 });
    }
    // Back within seconds, with nothing but time.
    let ready: ApiResponse | undefined;
    for (let i = 0; i < 100 && ready?.status !== 200; i++) {
      ready = await api(server, 'GET', '/readyz');
      if (ready.status !== 200) await sleep(100);
    }
    expect(ready?.status).toBe(200);
    expect((await order(`back-${randomUUID()}`)).status).toBe(201);
    expect(server.proc.child.exitCode).toBeNull();
  }, 60_000);
});
