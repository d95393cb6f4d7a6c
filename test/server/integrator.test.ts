/**
 * The order API as an integrator meets it (issue 18): idempotency over the whole request,
 * a second payment reference refused, every request traceable, abuse bounded, HTTP's
 * conventions (405 and Allow, Link, filters, pages), 422 listing every field, readiness
 * that means ready (also while draining), metrics a dashboard can use, and CORS when asked.
 */
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { api, startServer, type RunningServer } from './_server.js';

const t = useTestDatabase();
let server: RunningServer;
const tokens: Record<string, string> = {};
const WINDOWS = { PRIORITY_WINDOWS: 'vip=45m', PAYMENT_TIMEOUTS: 'card=15m,bank_transfer=3d' };

async function token(name: string, role: string) {
  const res = await t.cliJson<{ token: string }>(['token', 'create', name, '--role', role]);
  expect(res.code, res.stdout).toBe(0);
  return res.json.token;
}

async function product(sku: string, stock: number) {
  const res = await t.cli(['product', 'add', sku, '--name', `Item ${sku}`, '--price', '10', '--stock', String(stock)]);
  expect(res.code, res.stderr).toBe(0);
}

const reserved = async (sku: string) => (await t.sql<{ n: number }[]>`SELECT reserved_stock AS n FROM stock_items WHERE sku = ${sku}`)[0].n;

/** The JSON lines a stopped server wrote to stderr. */
const logLines = (stderr: string) =>
  stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));

beforeAll(async () => {
  for (const role of ['read', 'shop', 'support']) tokens[role] = await token(`i-${role}`, role);
  server = await startServer(t.url, [], WINDOWS);
});

afterAll(async () => {
  const res = await server?.stop();
  if (res) expect(res.code, res.stderr).toBe(0);
});

describe('Idempotency-Key covers the whole request', () => {
  it('the same request again is a replay (Idempotent-Replayed: true); any other field is 422 ref_conflict, reserving nothing', async () => {
    await product('IDEM', 20);
    const request = { items: [{ sku: 'IDEM', quantity: 2 }], customer_id: 'c-1', ttl: '30m', payment_method: 'card', priority: 'vip' };
    const send = (body: object) => api(server, 'POST', '/orders', { token: tokens.shop, body, headers: { 'idempotency-key': 'idem-1' } });
    const first = await send(request);
    expect(first.status).toBe(201);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const again = await send(request);
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body).toMatchObject({ order_id: first.body.order_id, replay: true });

    for (const other of [
      { ...request, customer_id: 'c-2' },
      { ...request, customer_id: undefined },
      { ...request, ttl: '31m' },
      { ...request, payment_method: 'bank_transfer' },
      { ...request, priority: undefined },
      { ...request, items: [{ sku: 'IDEM', quantity: 3 }] },
    ]) {
      const res = await send(other);
      expect(res.status, JSON.stringify(other)).toBe(422);
      expect(res.body).toMatchObject({ code: 'ref_conflict', order_id: first.body.order_id });
      expect(res.body.detail).toMatch(/^Ref "idem-1" already names order \S+, made by another request \(.+\); use a new ref, or send the first request again\.$/);
    }
    expect(await reserved('IDEM')).toBe(2);
    // The CLI refuses the same way, with exit 5.
    const cli = await t.cliJson<{ error: { code: string } }>(['reserve', 'IDEM:2', '--ref', 'idem-1', '--customer', 'c-9', '--ttl', '30m'], { env: WINDOWS });
    expect(cli.code).toBe(5);
    expect(cli.json.error.code).toBe('ref_conflict');
  });
});

describe('paying an order that is paid', () => {
  it('the same payment_ref (or none) is a no-op 200; another is 409 payment_ref_conflict (CLI exit 5); the reply says the status the order has', async () => {
    await product('PAYREF', 5);
    const made = await api(server, 'POST', '/orders', { token: tokens.shop, body: { items: [{ sku: 'PAYREF', quantity: 1 }] }, headers: { 'idempotency-key': 'payref-1' } });
    expect(made.status).toBe(201);
    const pay = (body?: object) => api(server, 'PATCH', '/orders/payref-1/payment', { token: tokens.shop, body });
    expect(await pay({ payment_ref: 'pi_1' })).toMatchObject({ status: 200, body: { replay: false, payment_ref: 'pi_1' } });
    expect(await pay({ payment_ref: 'pi_1' })).toMatchObject({ status: 200, body: { replay: true, payment_ref: 'pi_1' } });
    expect(await pay()).toMatchObject({ status: 200, body: { replay: true, payment_ref: 'pi_1' } });
    const other = await pay({ payment_ref: 'pi_2' });
    expect(other.status).toBe(409);
    expect(other.body).toMatchObject({ code: 'payment_ref_conflict', order_id: made.body.order_id, payment_ref: 'pi_1' });
    const cli = await t.cliJson<{ error: { code: string } }>(['pay', 'payref-1', '--payment-ref', 'pi_3']);
    expect(cli.code).toBe(5);
    expect(cli.json.error.code).toBe('payment_ref_conflict');
    expect((await t.sql`SELECT payment_ref FROM orders WHERE ref = 'payref-1'`)[0].payment_ref).toBe('pi_1');

    // Shipped since: a retried payment says so, not "paid".
    for (const status of ['processing', 'shipped']) {
      expect((await api(server, 'PATCH', '/orders/payref-1/status', { token: tokens.support, body: { status } })).status).toBe(200);
    }
    expect(await pay({ payment_ref: 'pi_1' })).toMatchObject({ status: 200, body: { status: 'shipped', replay: true } });
  });
});

describe('every request traceable', () => {
  it('a sane X-Request-Id is kept, an insane one replaced by a UUID: in the header, the problem document and the log line, with the trace id of traceparent', async () => {
    const own = await startServer(t.url);
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const sane = await api(own, 'GET', '/orders/no-such', { token: tokens.read, headers: { 'x-request-id': 'checkout-42', traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
    expect(sane.status).toBe(404);
    expect(sane.headers.get('x-request-id')).toBe('checkout-42');
    expect(sane.body.request_id).toBe('checkout-42');
    const ok = await api(own, 'GET', '/healthz', { headers: { 'x-request-id': 'checkout-43' } });
    expect(ok.headers.get('x-request-id')).toBe('checkout-43');
    const insane: string[] = [];
    for (const id of ['x'.repeat(201), 'two words', 'caf\u00e9']) {
      const res = await api(own, 'GET', '/nowhere', { headers: { 'x-request-id': id } });
      expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(res.body.request_id).toBe(res.headers.get('x-request-id'));
      insane.push(res.headers.get('x-request-id')!);
    }
    const none = await api(own, 'GET', '/healthz', { headers: { traceparent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01' } });
    const stopped = await own.stop();
    expect(stopped.code).toBe(0);
    const requests = logLines(stopped.stderr).filter((l) => l.msg === 'request');
    expect(requests.find((l) => l.request_id === 'checkout-42')).toMatchObject({ status: 404, trace_id: traceId, url: '/orders/no-such' });
    expect(requests.find((l) => l.request_id === 'checkout-43')).toMatchObject({ status: 200 });
    for (const id of insane) expect(requests.filter((l) => l.request_id === id)).toHaveLength(1);
    // A trace id of zeros is not one.
    expect(requests.find((l) => l.request_id === none.headers.get('x-request-id'))).not.toHaveProperty('trace_id');
    // Ids are never the old per-process counter.
    expect(requests.every((l) => !/^req-\d+$/.test(l.request_id))).toBe(true);
  });
});

describe('abuse bounded', () => {
  it('failed authentications from one address: 401, then 429 with Retry-After; valid tokens, even one new to the server, are still served', async () => {
    const own = await startServer(t.url);
    try {
      const fresh = await token('i-fresh', 'read');
      const statuses: number[] = [];
      let limited: Awaited<ReturnType<typeof api>> | undefined;
      for (let round = 0; round < 10; round++) {
        const answers = [];
        for (let i = 0; i < 30; i++) answers.push(await api(own, 'GET', '/stock', { token: 'stk_guess' }));
        statuses.push(...answers.map((a) => a.status));
        limited ??= answers.find((a) => a.status === 429);
        // A valid token keeps working meanwhile, one used before and one never seen.
        expect((await api(own, 'GET', '/stock', { token: tokens.read })).status).toBe(200);
      }
      expect(statuses).toHaveLength(300);
      expect(statuses.filter((s) => s === 401)).toHaveLength(20);
      expect(statuses.filter((s) => s === 429)).toHaveLength(280);
      expect(limited!.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(Number(limited!.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(limited!.body).toMatchObject({ status: 429, code: 'too_many_requests' });
      expect((await api(own, 'GET', '/stock', { token: fresh })).status).toBe(200);
      // No token at all, from the limited address: 429 too.
      expect((await api(own, 'GET', '/stock')).status).toBe(429);
    } finally {
      expect((await own.stop()).code).toBe(0);
    }
  });

  it('--token-rate-limit: one request over the limit a minute is 429 with Retry-After; other tokens are not held back', async () => {
    const own = await startServer(t.url, ['--token-rate-limit', '5']);
    try {
      const answers = [];
      for (let i = 0; i < 6; i++) answers.push(await api(own, 'GET', '/stock', { token: tokens.read }));
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 429]);
      expect(answers[5].body).toMatchObject({ code: 'too_many_requests', detail: expect.stringMatching(/^Token i-read made more than 5 requests in a minute/) });
      expect(Number(answers[5].headers.get('retry-after'))).toBeGreaterThan(0);
      expect((await api(own, 'GET', '/stock', { token: tokens.shop })).status).toBe(200);
    } finally {
      expect((await own.stop()).code).toBe(0);
    }
    const bad = await t.cli(['serve', '--port', '0', '--token-rate-limit', 'lots']);
    expect(bad).toMatchObject({ code: 2, stdout: '' });
  });

  it('CORS is off unless --cors-origin names the origin; then a browser page there may read', async () => {
    const origin = 'http://shop.test:3000';
    const plain = await api(server, 'GET', '/stock', { token: tokens.read, headers: { origin } });
    expect(plain.headers.get('access-control-allow-origin')).toBeNull();
    expect((await api(server, 'OPTIONS', '/stock', { headers: { origin, 'access-control-request-method': 'GET' } })).status).toBe(405);

    const own = await startServer(t.url, ['--cors-origin', origin]);
    try {
      const read = await api(own, 'GET', '/stock', { token: tokens.read, headers: { origin } });
      expect(read.status).toBe(200);
      expect(read.headers.get('access-control-allow-origin')).toBe(origin);
      expect(read.headers.get('access-control-expose-headers')).toMatch(/X-Request-Id/);
      const preflight = await api(own, 'OPTIONS', '/stock', { headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' } });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get('access-control-allow-methods')).toBe('GET, HEAD');
      expect(preflight.headers.get('access-control-allow-headers')).toMatch(/Authorization/);
      // Another origin, and the write routes, get no CORS headers: the browser refuses them.
      const elsewhere = await api(own, 'GET', '/stock', { token: tokens.read, headers: { origin: 'http://evil.test' } });
      expect(elsewhere.headers.get('access-control-allow-origin')).toBeNull();
      const write = await api(own, 'POST', '/orders', { token: tokens.shop, body: { items: [{ sku: 'IDEM', quantity: 1 }] }, headers: { origin } });
      expect(write.headers.get('access-control-allow-origin')).toBeNull();
      // OPTIONS that is not a preflight is still a 405.
      expect((await api(own, 'OPTIONS', '/orders')).status).toBe(405);
    } finally {
      expect((await own.stop()).code).toBe(0);
    }
    const bad = await t.cli(['serve', '--port', '0', '--cors-origin', 'shop.test/']);
    expect(bad).toMatchObject({ code: 2, stdout: '' });
    expect(bad.stderr).toMatch(/^error: Invalid --cors-origin "shop.test\/": give an origin as a browser sends it/);
  });
});

describe("HTTP's conventions", () => {
  it('a known path with a method it does not take is 405 with Allow', async () => {
    const cases: [string, string, string][] = [
      ['PUT', '/orders', 'GET, HEAD, POST'],
      ['OPTIONS', '/orders', 'GET, HEAD, POST'],
      ['POST', '/orders/abc', 'GET, HEAD, DELETE'],
      ['DELETE', '/stock/IDEM', 'GET, HEAD'],
      ['POST', '/healthz', 'GET, HEAD'],
    ];
    for (const [method, path, allow] of cases) {
      const res = await api(server, method, path);
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(res.headers.get('allow')).toBe(allow);
      expect(res.body).toMatchObject({ code: 'method_not_allowed', allowed_methods: allow.split(', ') });
    }
    expect((await api(server, 'PUT', '/nowhere')).status).toBe(404);
  });

  it('GET /orders?customer_id= filters; a Link header with rel="next" beside next_cursor leads to the next page', async () => {
    await product('LINKS', 50);
    for (let i = 0; i < 5; i++) {
      expect((await api(server, 'POST', '/orders', { token: tokens.shop, body: { items: [{ sku: 'LINKS', quantity: 1 }], customer_id: 'c-links' } })).status).toBe(201);
    }
    await api(server, 'POST', '/orders', { token: tokens.shop, body: { items: [{ sku: 'LINKS', quantity: 1 }], customer_id: 'c-other' } });
    const seen: string[] = [];
    let path: string | undefined = '/orders?customer_id=c-links&limit=2';
    while (path) {
      const page: any = await api(server, 'GET', path, { token: tokens.read });
      expect(page.status).toBe(200);
      expect(page.body.orders.every((o: any) => o.customer_id === 'c-links')).toBe(true);
      seen.push(...page.body.orders.map((o: any) => o.order_id));
      const link = page.headers.get('link');
      if (page.body.next_cursor) {
        expect(link).toBe(`</orders?customer_id=c-links&limit=2&cursor=${page.body.next_cursor}>; rel="next"`);
        path = /^<([^>]+)>; rel="next"$/.exec(link)![1];
      } else {
        expect(link).toBeNull();
        path = undefined;
      }
    }
    expect(seen).toHaveLength(5);
    expect(new Set(seen).size).toBe(5);
    const cli = await t.cliJson<any>(['orders', 'list', '--customer', 'c-links', '--limit', '100']);
    expect(seen).toEqual(cli.json.orders.map((o: any) => o.order_id));
  });

  it('GET /stock is paged in SKU order (limit up to 1000, default 100), with Link; every row exactly once', async () => {
    for (const sku of ['PG-A', 'PG-B', 'PG-C', 'PG-D', 'PG-E']) await product(sku, 3);
    const all = (await api(server, 'GET', '/stock?limit=1000', { token: tokens.read })).body.items.map((i: any) => i.sku);
    const paged: string[] = [];
    let path: string | undefined = '/stock?limit=2';
    while (path) {
      const page: any = await api(server, 'GET', path, { token: tokens.read });
      expect(page.body.items.length).toBeLessThanOrEqual(2);
      paged.push(...page.body.items.map((i: any) => i.sku));
      path = page.body.next_cursor ? /^<([^>]+)>; rel="next"$/.exec(page.headers.get('link'))![1] : undefined;
    }
    expect(paged).toEqual(all);
    const some = await api(server, 'GET', '/stock?sku=PG-A&sku=PG-C&sku=PG-E&limit=2', { token: tokens.read });
    expect(some.body.items.map((i: any) => i.sku)).toEqual(['PG-A', 'PG-C']);
    expect(some.headers.get('link')).toBe(`</stock?sku=PG-A&sku=PG-C&sku=PG-E&limit=2&cursor=${some.body.next_cursor}>; rel="next"`);
    const rest = await api(server, 'GET', `/stock?sku=PG-A&sku=PG-C&sku=PG-E&limit=2&cursor=${some.body.next_cursor}`, { token: tokens.read });
    expect(rest.body).toMatchObject({ items: [{ sku: 'PG-E' }], next_cursor: null });
    for (const query of ['limit=0', 'limit=1001', 'limit=2.5', 'cursor=%21', 'low=-1']) {
      expect((await api(server, 'GET', `/stock?${query}`, { token: tokens.read })).status, query).toBe(422);
    }
  });

  it('422 lists every failing field, at most 20, and says how many more', async () => {
    const res = await api(server, 'POST', '/orders', {
      token: tokens.shop,
      body: { items: [{ sku: 'bad sku', quantity: 0 }], coupon: 'FREE', ttl: 'forever' },
    });
    expect(res.status).toBe(422);
    expect(res.body.errors).toEqual([
      { field: 'coupon', message: 'unknown field "coupon"' },
      { field: 'items.0.sku', message: '"items.0.sku" must be a SKU: 1 to 64 letters, digits, dots, dashes or underscores' },
      { field: 'items.0.quantity', message: '"items.0.quantity" must be >= 1' },
      { field: 'ttl', message: '"ttl" must be a duration such as 90s, 15m, 2h or 1d' },
    ]);
    expect(res.body.detail).toBe('Invalid request body: unknown field "coupon" (and 3 more: see errors).');
    const many = await api(server, 'POST', '/orders', { token: tokens.shop, body: { items: Array.from({ length: 30 }, () => ({ sku: 'IDEM', quantity: 0 })) } });
    expect(many.body.errors).toHaveLength(20);
    expect(many.body.errors_omitted).toBe(10);
    const query = await api(server, 'GET', '/orders?limit=abc&status=fulfilled&sort=asc', { token: tokens.read });
    expect(query.body.errors.map((e: any) => e.field)).toEqual(['query.sort', 'query.status', 'query.limit']);
  });
});

describe('ready means ready', () => {
  it('/readyz reads every table: a table dropped by hand is 503 schema_incomplete naming it', async () => {
    const other = await t.createDatabase();
    const own = await startServer(other.url);
    try {
      expect((await api(own, 'GET', '/readyz')).body).toMatchObject({ status: 'ready', tables: expect.any(Number) });
      await other.sql`DROP TABLE order_status_history`;
      const res = await api(own, 'GET', '/readyz');
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('5');
      expect(res.body).toMatchObject({ code: 'schema_incomplete', detail: expect.stringContaining('order_status_history') });
    } finally {
      expect((await own.stop()).code).toBe(0);
    }
  });

  it('on SIGTERM, /readyz is 503 at once while in-flight requests finish; responses say Connection: close; new ones get a 503 problem with Retry-After', async () => {
    await product('HOLD', 5);
    const own = await startServer(t.url);
    const held = t.sql.reserve();
    const lock = await held;
    try {
      await lock`BEGIN`;
      await lock`SELECT 1 FROM products WHERE sku = 'HOLD' FOR UPDATE`;
      // A reserve that waits for the row: in flight until the lock goes.
      const inFlight = rawRequest(own.url, 'POST', '/orders', { authorization: `Bearer ${tokens.shop}`, 'content-type': 'application/json' }, JSON.stringify({ items: [{ sku: 'HOLD', quantity: 1 }] }));
      await waitFor(async () => (await t.sql`SELECT 1 FROM pg_stat_activity WHERE application_name = 'stockctl-serve' AND wait_event_type = 'Lock'`).length > 0);
      const before = await rawRequest(own.url, 'GET', '/readyz', {});
      expect(before.status).toBe(200);
      own.proc.child.kill('SIGTERM');
      const ready = await waitFor(async () => {
        const res = await rawRequest(own.url, 'GET', '/readyz', {});
        return res.status === 503 ? res : undefined;
      });
      expect(ready.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(ready.headers['retry-after']).toBe('5');
      expect(ready.headers.connection).toBe('close');
      expect(ready.body).toMatchObject({ status: 503, code: 'shutting_down', request_id: ready.headers['x-request-id'] });
      const work = await rawRequest(own.url, 'GET', '/stock', { authorization: `Bearer ${tokens.read}` });
      expect(work).toMatchObject({ status: 503, body: { code: 'shutting_down' } });
      await lock`COMMIT`;
      const finished = await inFlight;
      expect(finished.status).toBe(201);
      expect(finished.headers.connection).toBe('close');
    } finally {
      await lock`ROLLBACK`.catch(() => {});
      lock.release();
    }
    const res = await own.proc.result;
    expect(res.code, res.stderr).toBe(0);
    expect(await reserved('HOLD')).toBe(1);
  });
});

describe('metrics a dashboard can use', () => {
  it('counters end in _total, the sweep is a timestamp, per-SKU gauges are bounded, HTTP requests are counted by route; promtool is clean', async () => {
    await product('MET-A', 1);
    const own = await startServer(t.url, [], { STOCKCTL_METRICS_MAX_SKUS: '2' });
    try {
      await api(own, 'GET', '/stock/MET-A', { token: tokens.read });
      await api(own, 'GET', '/stock/NOPE', { token: tokens.read });
      const res = await api(own, 'GET', '/metrics', { token: tokens.read });
      expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
      const types = Object.fromEntries([...res.text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
      expect(types).toMatchObject({
        stockctl_orders_created_total: 'counter',
        stockctl_orders_paid_total: 'counter',
        stockctl_orders_expired_total: 'counter',
        stockctl_orders_cancelled_total: 'counter',
        stockctl_reservations_expired_total: 'counter',
        stockctl_sweep_last_run_timestamp_seconds: 'gauge',
        stockctl_stock_available: 'gauge',
        stockctl_http_requests_total: 'counter',
        stockctl_http_request_duration_seconds: 'histogram',
        stockctl_sse_clients: 'gauge',
        stockctl_listen_reconnects_total: 'counter',
      });
      expect(Object.entries(types).filter(([name, type]) => type === 'counter' && !name.endsWith('_total'))).toEqual([]);
      // No sweep has run here: 0, present from the start, so `time() - x` alerts at once.
      expect(res.text).toMatch(/^stockctl_sweep_last_run_timestamp_seconds 0$/m);
      expect(res.text.match(/^stockctl_stock_available\{/gm)).toHaveLength(2);
      expect(res.text).toMatch(/^stockctl_http_requests_total\{method="GET",route="\/stock\/\{sku\}",status="200"\} 1$/m);
      expect(res.text).toMatch(/^stockctl_http_requests_total\{method="GET",route="\/stock\/\{sku\}",status="404"\} 1$/m);
      expect(res.text).toMatch(/^stockctl_http_request_duration_seconds_count\{method="GET",route="\/stock\/\{sku\}",status="200"\} 1$/m);
      expect(res.text).toMatch(/^stockctl_sse_clients 0$/m);
      promtoolCheck('GET /metrics', res.text);
      promtoolCheck('report --format prometheus', (await t.cli(['report', '--format', 'prometheus'])).stdout);
    } finally {
      expect((await own.stop()).code).toBe(0);
    }
  });
});

/** `promtool check metrics`, when promtool is there (CI installs it: STOCKCTL_TEST_PROMTOOL=1 makes it required). */
function promtoolCheck(what: string, text: string) {
  const found = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0;
  if (!found) {
    if (process.env.STOCKCTL_TEST_PROMTOOL === '1') throw new Error('promtool is not installed (Debian: apt-get install prometheus)');
    return;
  }
  const out = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  expect({ what, code: out.status, problems: `${out.stdout}${out.stderr}`.trim() }).toEqual({ what, code: 0, problems: '' });
}

async function waitFor<T>(probe: () => Promise<T | undefined | false>): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const value = await probe();
    if (value) return value;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('waited 5 s in vain');
}

/** One request on a connection of its own (Node's client, no keep-alive), its headers as Node reads them. */
function rawRequest(base: string, method: string, path: string, headers: http.OutgoingHttpHeaders, body?: string) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: any }>((resolve, reject) => {
    const req = http.request(new URL(path, base), { method, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? JSON.parse(text) : undefined }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
