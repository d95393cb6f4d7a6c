/**
 * `stockctl serve` over real HTTP: a spawned server on a free port, Node's fetch, the
 * database checked afterwards, and the CLI on the same database for the other half of
 * each story: the order API as docs/api.md describes it.
 */
import SwaggerParser from '@apidevtools/swagger-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { api, startServer, type RunningServer } from './_server.js';

const t = useTestDatabase();
let server: RunningServer;
const tokens: Record<string, string> = {};

async function product(sku: string, stock: number) {
  const res = await t.cli(['product', 'add', sku, '--name', `Item ${sku}`, '--price', '10', '--stock', String(stock)]);
  expect(res.code, res.stderr).toBe(0);
}

async function verifyClean() {
  const res = await t.cliJson<{ ok: boolean }>(['verify']);
  expect(res.code, res.stdout).toBe(0);
}

const reserve = (items: { sku: string; quantity: number }[], opts: { key?: string; token?: string; extra?: object } = {}) =>
  api(server, 'POST', '/orders', {
    token: opts.token ?? tokens.shop,
    body: { items, ...(opts.extra ?? {}) },
    headers: opts.key ? { 'idempotency-key': opts.key } : {},
  });

beforeAll(async () => {
  for (const role of ['read', 'shop', 'support', 'admin']) {
    const res = await t.cliJson<{ name: string; role: string; token: string }>(['token', 'create', `t-${role}`, '--role', role]);
    expect(res.code, res.stdout).toBe(0);
    expect(res.json).toEqual({ name: `t-${role}`, role, token: expect.stringMatching(/^stk_[A-Za-z0-9_-]{43}$/) });
    tokens[role] = res.json.token;
  }
  server = await startServer(t.url);
});

afterAll(async () => {
  const res = await server?.stop();
  if (res) expect(res.code, res.stderr).toBe(0);
});

describe('the seed scenarios', () => {
  it('10 buyers for the last 2 units: two 201, eight 409 insufficient_stock', async () => {
    await product('LAST2', 2);
    const answers = await Promise.all(Array.from({ length: 10 }, () => reserve([{ sku: 'LAST2', quantity: 1 }])));
    const statuses = answers.map((a) => a.status).sort();
    expect(statuses).toEqual([201, 201, ...Array(8).fill(409)]);
    for (const a of answers.filter((x) => x.status === 409)) {
      expect(a.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(a.body).toMatchObject({ status: 409, code: 'insufficient_stock', shortages: [{ sku: 'LAST2', requested: 1, available: 0 }] });
    }
    await verifyClean();
  });

  it('100 buyers for the last unit: exactly one 201', async () => {
    await product('LAST1', 1);
    const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => reserve([{ sku: 'LAST1', quantity: 1 }], { extra: { customer_id: `c${i}` } })));
    const count = (s: number) => answers.filter((a) => a.status === s).length;
    expect({ created: count(201), conflicts: count(409) }).toEqual({ created: 1, conflicts: 99 });
    const [row] = await t.sql`SELECT reserved_stock FROM stock_items WHERE sku = 'LAST1'`;
    expect(row.reserved_stock).toBe(1);
    await verifyClean();
  });
});

describe('an order over HTTP and across to the CLI', () => {
  it('reserve (201), replay (200), show, pay by CLI, fulfil by HTTP and CLI, history in orders show', async () => {
    await product('LIFE', 5);
    const created = await reserve([{ sku: 'LIFE', quantity: 2 }], { key: 'cart-life', extra: { customer_id: 'c-life', ttl: '30m' } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ ref: 'cart-life', status: 'pending', customer_id: 'c-life', total: 2000, replay: false, strategy: 'batched' });
    expect(created.headers.get('location')).toBe(`/orders/${created.body.order_id}`);

    const replay = await reserve([{ sku: 'LIFE', quantity: 2 }], { key: 'cart-life', extra: { customer_id: 'c-life', ttl: '30m' } });
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body).toMatchObject({ order_id: created.body.order_id, replay: true });
    // The key covers the whole request: another one is 422 (the IETF Idempotency-Key draft).
    const conflict = await reserve([{ sku: 'LIFE', quantity: 3 }], { key: 'cart-life', extra: { customer_id: 'c-life', ttl: '30m' } });
    expect(conflict.status).toBe(422);
    expect(conflict.body.code).toBe('ref_conflict');

    // The CLI sees the HTTP order, with the token's name as the actor.
    const shown = await t.cliJson<any>(['orders', 'show', 'cart-life']);
    expect(shown.json).toMatchObject({ order_id: created.body.order_id, status: 'pending', created_by: 't-shop' });
    const viaHttp = await api(server, 'GET', '/orders/cart-life', { token: tokens.read });
    expect(viaHttp.status).toBe(200);
    expect({ ...viaHttp.body, seconds_left: null }).toEqual({ ...shown.json, seconds_left: null });

    expect((await t.cli(['pay', 'cart-life'])).code).toBe(0);
    const payAgain = await api(server, 'PATCH', '/orders/cart-life/payment', { token: tokens.shop });
    expect(payAgain.status).toBe(200);
    expect(payAgain.body).toMatchObject({ status: 'paid', replay: true });

    const skip = await api(server, 'PATCH', '/orders/cart-life/status', { token: tokens.support, body: { status: 'shipped' } });
    expect(skip.status).toBe(409);
    expect(skip.body).toMatchObject({ code: 'invalid_transition', from: 'paid', to: 'shipped' });
    const processing = await api(server, 'PATCH', '/orders/cart-life/status', { token: tokens.support, body: { status: 'processing' } });
    expect(processing.status).toBe(200);
    expect(processing.body).toMatchObject({ previous_status: 'paid', status: 'processing', actor: 't-support', replay: false });
    const shipped = await t.cliJson<any>(['orders', 'set-status', 'cart-life', 'shipped', '--actor', 'warehouse']);
    expect(shipped.code).toBe(0);
    expect(shipped.json).toMatchObject({ previous_status: 'processing', status: 'shipped', actor: 'warehouse' });
    const back = await t.cli(['orders', 'set-status', 'cart-life', 'processing']);
    expect(back.code).toBe(5);
    expect(back.stderr).toMatch(/can become processing only from paid/);
    const delivered = await api(server, 'PATCH', `/orders/${created.body.order_id}/status`, { token: tokens.admin, body: { status: 'delivered' } });
    expect(delivered.status).toBe(200);

    const after = await t.cliJson<any>(['orders', 'show', 'cart-life']);
    expect(after.json.status).toBe('delivered');
    expect(after.json.status_history.map((h: any) => `${h.from_status}>${h.to_status}:${h.actor}`)).toEqual([
      'paid>processing:t-support',
      'processing>shipped:warehouse',
      'shipped>delivered:t-admin',
    ]);
    const human = await t.cli(['orders', 'show', 'cart-life']);
    expect(human.stdout).toMatch(/Fulfilment: processing → shipped at \S+ by warehouse/);
    await verifyClean();
  });

  it('cancel: shop cancels a pending order made by the CLI; a paid one needs support and restock', async () => {
    await product('CANC', 4);
    expect((await t.cli(['reserve', 'CANC:1', '--ref', 'cli-order'])).code).toBe(0);
    const cancelled = await api(server, 'DELETE', '/orders/cli-order', { token: tokens.shop, body: { reason: 'customer left' } });
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toMatchObject({ outcome: 'cancelled', released_units: 1 });
    const again = await api(server, 'DELETE', '/orders/cli-order', { token: tokens.shop });
    expect(again.status).toBe(200);
    expect(again.body.outcome).toBe('already_cancelled');
    const shown = await t.cliJson<any>(['orders', 'show', 'cli-order']);
    expect(shown.json).toMatchObject({ status: 'cancelled', cancelled_by: 't-shop', cancel_reason: 'customer left' });

    const paid = await reserve([{ sku: 'CANC', quantity: 2 }], { key: 'http-paid' });
    expect((await api(server, 'PATCH', '/orders/http-paid/payment', { token: tokens.shop, body: { payment_ref: 'pi_1' } })).status).toBe(200);
    const shopTries = await api(server, 'DELETE', '/orders/http-paid', { token: tokens.shop });
    expect(shopTries.status).toBe(403);
    const noRestock = await api(server, 'DELETE', '/orders/http-paid', { token: tokens.support });
    expect(noRestock.status).toBe(409);
    expect(noRestock.body.code).toBe('order_paid');
    expect(noRestock.body.detail).toMatch(/"restock": true/);
    const restocked = await api(server, 'DELETE', `/orders/${paid.body.order_id}`, { token: tokens.support, body: { restock: true } });
    expect(restocked.status).toBe(200);
    expect(restocked.body).toMatchObject({ outcome: 'restocked', restocked_units: 2 });
    // And an HTTP order cancelled by the CLI.
    await reserve([{ sku: 'CANC', quantity: 1 }], { key: 'http-then-cli' });
    expect((await t.cli(['cancel', 'http-then-cli'])).code).toBe(0);
    expect((await api(server, 'GET', '/orders/http-then-cli', { token: tokens.read })).body.status).toBe('cancelled');
    await verifyClean();
  });

  it('extend (support), then sweep from the CLI leaves it alone; pay after the window is a 409', async () => {
    await product('EXT', 3);
    const order = await reserve([{ sku: 'EXT', quantity: 1 }], { key: 'ext-1', extra: { ttl: '1s' } });
    expect(order.status).toBe(201);
    const shopExtend = await api(server, 'POST', '/orders/ext-1/extend', { token: tokens.shop, body: { ttl: '30m' } });
    expect(shopExtend.status).toBe(403);
    const extended = await api(server, 'POST', '/orders/ext-1/extend', { token: tokens.support, body: { ttl: '30m' } });
    expect(extended.status).toBe(200);
    expect(extended.body.reservations_extended).toBe(1);

    await reserve([{ sku: 'EXT', quantity: 1 }], { key: 'ext-late', extra: { ttl: '1s' } });
    await t.sql`UPDATE orders SET payment_expires_at = now() - interval '1 minute' WHERE ref = 'ext-late'`;
    await t.sql`UPDATE stock_reservations SET expires_at = now() - interval '1 minute' WHERE order_id = (SELECT order_id FROM orders WHERE ref = 'ext-late')`;
    const late = await api(server, 'PATCH', '/orders/ext-late/payment', { token: tokens.shop, body: {} });
    expect(late.status).toBe(409);
    expect(late.body.code).toBe('payment_window_expired');
    expect(late.body.detail).toMatch(/"allow_late": true/);
    const sweep = await t.cliJson<any>(['sweep']);
    expect(sweep.json.expired_orders).toBe(0); // the late pay already expired it; ext-1 has 30 minutes
    await verifyClean();
  });

  it('GET /orders pages newest first with an opaque cursor; GET /stock and /stock/{sku} are the stock --json items', async () => {
    const all: string[] = [];
    let cursor: string | null = null;
    do {
      const page: any = await api(server, 'GET', `/orders?limit=3${cursor ? `&cursor=${cursor}` : ''}`, { token: tokens.read });
      expect(page.status).toBe(200);
      expect(page.body.orders.length).toBeLessThanOrEqual(3);
      all.push(...page.body.orders.map((o: any) => o.order_id));
      cursor = page.body.next_cursor;
    } while (cursor);
    const cli = await t.cliJson<any>(['orders', 'list', '--limit', '1000']);
    expect(all).toEqual(cli.json.orders.map((o: any) => o.order_id));
    const pending = await api(server, 'GET', '/orders?status=pending&limit=100', { token: tokens.read });
    expect(pending.body.orders.every((o: any) => o.status === 'pending')).toBe(true);

    const stock = await api(server, 'GET', '/stock', { token: tokens.read });
    const cliStock = await t.cliJson<any>(['stock']);
    expect(stock.body).toEqual({ ...cliStock.json, next_cursor: null });
    const one = await api(server, 'GET', '/stock/LIFE', { token: tokens.read });
    expect(one.body).toEqual(cliStock.json.items.find((i: any) => i.sku === 'LIFE'));
  });
});

describe('status codes, validation and the role matrix', () => {
  it('400 malformed JSON, 413 over 64 KiB, 422 unknown fields and bad values, 404s', async () => {
    await product('CODES', 5);
    const malformed = await api(server, 'POST', '/orders', { token: tokens.shop, raw: '{"items": [' });
    expect(malformed.status).toBe(400);
    expect(malformed.body).toMatchObject({ code: 'malformed_json', status: 400, title: expect.any(String), type: expect.any(String) });

    const huge = await api(server, 'POST', '/orders', { token: tokens.shop, raw: JSON.stringify({ items: [{ sku: 'CODES', quantity: 1 }], customer_id: 'x'.repeat(70_000) }) });
    expect(huge.status).toBe(413);
    expect(huge.body.code).toBe('body_too_large');

    const cases: [string, string, unknown][] = [
      ['POST', '/orders', { items: [{ sku: 'CODES', quantity: 1 }], coupon: 'FREE' }],
      ['POST', '/orders', { items: [{ sku: 'CODES', quantity: 1, colour: 'red' }] }],
      ['POST', '/orders', { items: [] }],
      ['POST', '/orders', { items: [{ sku: 'CODES', quantity: 0 }] }],
      ['POST', '/orders', { items: [{ sku: 'CODES', quantity: '1' }] }],
      ['POST', '/orders', { items: [{ sku: 'bad sku!', quantity: 1 }] }],
      ['POST', '/orders', { items: [{ sku: 'CODES', quantity: 1 }], ttl: 'forever' }],
      ['POST', '/orders', { items: [{ sku: 'CODES', quantity: 1 }], customer_id: 'a\u001b[31mb' }],
      ['POST', '/orders', { items: [{ sku: 'CODES', quantity: 1 }], customer_id: '   ' }],
      ['PATCH', '/orders/x/payment', { allow_late: 'yes' }],
      ['PATCH', '/orders/x/status', { status: 'lost' }],
    ];
    for (const [method, path, body] of cases) {
      const res = await api(server, method, path, { token: tokens.admin, body });
      expect(res.status, `${method} ${path} ${JSON.stringify(body)}: ${res.text}`).toBe(422);
      expect(res.body.code).toMatch(/^invalid_input$/);
      expect(res.body.detail).toMatch(/^Invalid .+\.$/);
      expect(res.text).not.toMatch(/at \S+ \(|node_modules/);
    }
    const unknownField = await api(server, 'POST', '/orders', { token: tokens.shop, body: { items: [{ sku: 'CODES', quantity: 1 }], coupon: 'FREE' } });
    expect(unknownField.body.detail).toBe('Invalid request body: unknown field "coupon".');
    const badQuery = await api(server, 'GET', '/orders?limit=1000', { token: tokens.read });
    expect(badQuery.status).toBe(422);
    // What the value must be, in words, not the regular expression it failed.
    expect(badQuery.body.detail).toBe('Invalid query string: "query.limit" must be a whole number from 1 to 100 (default 20; page on with cursor).');
    const badSku = await reserve([{ sku: 'bad sku!', quantity: 1 }]);
    expect(badSku.body.detail).toBe('Invalid request body: "items.0.sku" must be a SKU: 1 to 64 letters, digits, dots, dashes or underscores.');
    const extraQuery = await api(server, 'GET', '/orders?sort=asc', { token: tokens.read });
    expect(extraQuery.status).toBe(422);

    expect((await reserve([{ sku: 'NOSUCH', quantity: 1 }])).body).toMatchObject({ status: 404, code: 'sku_not_found' });
    expect((await api(server, 'GET', '/orders/no-such-order', { token: tokens.read })).body).toMatchObject({ status: 404, code: 'order_not_found' });
    expect((await api(server, 'GET', '/stock/NOSUCH', { token: tokens.read })).status).toBe(404);
    expect((await api(server, 'GET', '/nowhere')).body).toMatchObject({ status: 404, code: 'route_not_found' });
    const short = await reserve([{ sku: 'CODES', quantity: 6 }]);
    expect(short.body).toMatchObject({ status: 409, code: 'insufficient_stock', shortages: [{ sku: 'CODES', requested: 6, available: 5 }] });
  });

  it('401 with WWW-Authenticate for no, unknown and revoked tokens; 403 for a role that may not', async () => {
    for (const token of [undefined, 'stk_nope', 'not-even-a-token']) {
      const res = await api(server, 'GET', '/stock', { token });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect(res.body.code).toBe('unauthorized');
    }
    const temp = await t.cliJson<any>(['token', 'create', 'temp', '--role', 'admin']);
    expect((await api(server, 'GET', '/stock', { token: temp.json.token })).status).toBe(200);
    const revoked = await t.cliJson<any>(['token', 'revoke', 'temp']);
    expect(revoked.json).toMatchObject({ name: 'temp', replay: false });
    const after = await api(server, 'GET', '/stock', { token: temp.json.token });
    expect(after.status).toBe(401);
    expect(after.headers.get('www-authenticate')).toMatch(/invalid_token/);
    const list = await t.cliJson<any>(['token', 'list']);
    expect(list.json.tokens.find((x: any) => x.name === 'temp').revoked_at).toMatch(/Z$/);
    expect(JSON.stringify(list.json)).not.toMatch(/stk_/);
    expect((await t.cli(['token', 'create', 'temp', '--role', 'read'])).code).toBe(5);
    expect((await t.cli(['token', 'create', 'bad name', '--role', 'read'])).code).toBe(2);
    expect((await t.cli(['token', 'revoke', 'nobody'])).code).toBe(4);

    // The matrix: the least role each route needs; every role below it gets 403.
    await product('ROLES', 100);
    const routes: [string, string, string, unknown?][] = [
      ['POST', '/orders', 'shop', { items: [{ sku: 'ROLES', quantity: 1 }] }],
      ['PATCH', '/orders/no-such/payment', 'shop', {}],
      ['DELETE', '/orders/no-such', 'shop'],
      ['PATCH', '/orders/no-such/status', 'support', { status: 'processing' }],
      ['POST', '/orders/no-such/extend', 'support', { ttl: '5m' }],
      ['GET', '/orders', 'read'],
      ['GET', '/orders/no-such', 'read'],
      ['GET', '/stock', 'read'],
      ['GET', '/stock/ROLES', 'read'],
      ['GET', '/metrics', 'read'],
    ];
    const rank = ['read', 'shop', 'support', 'admin'];
    for (const [method, path, needed, body] of routes) {
      for (const role of rank) {
        const res = await api(server, method, path, { token: tokens[role], body });
        if (rank.indexOf(role) < rank.indexOf(needed)) {
          expect(res.status, `${role} ${method} ${path}`).toBe(403);
          expect(res.body).toMatchObject({ code: 'forbidden', role, required_role: needed });
        } else {
          expect(res.status, `${role} ${method} ${path}: ${res.text}`).not.toBe(403);
          expect(res.status).not.toBe(401);
        }
      }
    }
  });

  it('/healthz, /readyz (503 when the schema is not fully migrated), /metrics is the prometheus report', async () => {
    expect((await api(server, 'GET', '/healthz')).body).toMatchObject({ status: 'ok', strategy: 'batched' });
    expect((await api(server, 'GET', '/readyz')).body).toMatchObject({ status: 'ready' });
    const metrics = await api(server, 'GET', '/metrics', { token: tokens.read });
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(metrics.text).toMatch(/^# HELP stockctl_window_seconds/m);
    expect(metrics.text).toMatch(/^stockctl_orders_created_total \d+$/m);

    const other = await t.createDatabase();
    const second = await startServer(other.url);
    try {
      expect((await api(second, 'GET', '/readyz')).status).toBe(200);
      await other.sql`DELETE FROM drizzle.__drizzle_migrations WHERE id = (SELECT max(id) FROM drizzle.__drizzle_migrations)`;
      const notReady = await api(second, 'GET', '/readyz');
      expect(notReady.status).toBe(503);
      expect(notReady.body).toMatchObject({ code: 'not_migrated', status: 503 });
    } finally {
      expect((await second.stop()).code).toBe(0);
    }
  });

  it('/openapi.json is a valid OpenAPI 3 document listing every route', async () => {
    const doc = await api(server, 'GET', '/openapi.json');
    expect(doc.status).toBe(200);
    const validated: any = await SwaggerParser.validate(structuredClone(doc.body));
    expect(validated.openapi).toMatch(/^3\./);
    const listed = Object.entries(validated.paths).flatMap(([path, ops]: [string, any]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    expect(listed.sort()).toEqual(
      [
        'POST /orders',
        'PATCH /orders/{id}/payment',
        'DELETE /orders/{id}',
        'PATCH /orders/{id}/status',
        'POST /orders/{id}/extend',
        'GET /orders',
        'GET /orders/{id}',
        'GET /stock',
        'GET /stock/{sku}',
        'GET /stock/events',
        'GET /locations',
        'GET /metrics',
        'GET /healthz',
        'GET /readyz',
        'GET /openapi.json',
      ].sort(),
    );
    expect(doc.body.paths['/orders'].post.requestBody.content['application/json'].schema.additionalProperties).toBe(false);
  });
});

describe('what a careless or hostile client sends', () => {
  it('unknown query parameters 422; unreadable or overlong URLs, text/plain bodies: problem documents', async () => {
    await product('CARELESS', 5);
    const before = await t.sql`SELECT count(*)::int AS n FROM orders`;
    const withQuery = await api(server, 'POST', '/orders?ttl=1h', { token: tokens.shop, body: { items: [{ sku: 'CARELESS', quantity: 1 }] } });
    expect(withQuery.status).toBe(422);
    expect(withQuery.body).toMatchObject({ code: 'invalid_input', detail: 'Invalid query string: unknown field "query.ttl".' });
    for (const path of ['/metrics?since=2h', '/stock/CARELESS?foo=1', '/healthz?x=1']) {
      expect((await api(server, 'GET', path, { token: tokens.admin })).status, path).toBe(422);
    }
    expect(await t.sql`SELECT count(*)::int AS n FROM orders`).toEqual(before);

    const badEscape = await api(server, 'GET', '/orders/%zz', { token: tokens.read });
    expect(badEscape.status).toBe(400);
    expect(badEscape.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(badEscape.body).toMatchObject({ code: 'malformed_url', status: 400 });
    const overlong = await api(server, 'GET', `/orders/${'a'.repeat(1100)}`);
    expect(overlong.status).toBe(414);
    expect(overlong.body).toMatchObject({ code: 'uri_too_long', title: 'URI too long' });

    const textPlain = await api(server, 'POST', '/orders', {
      token: tokens.shop,
      raw: JSON.stringify({ items: [{ sku: 'CARELESS', quantity: 1 }] }),
      headers: { 'content-type': 'text/plain' },
    });
    expect(textPlain.status).toBe(415);
    expect(textPlain.body.code).toBe('unsupported_media_type');

    // A value outside a choice names the choice, once.
    const status = await api(server, 'PATCH', '/orders/abcdefab/status', { token: tokens.support, body: { status: 'paid' } });
    expect(status.status).toBe(422);
    expect(status.body.errors).toEqual([{ field: 'status', message: '"status" must be one of "processing", "shipped", "delivered"' }]);
  });

  it('a UTF-8 Idempotency-Key is the ref as written; bytes that are not UTF-8 are a 422', async () => {
    await product('UTF8KEY', 5);
    const body = { items: [{ sku: 'UTF8KEY', quantity: 1 }] };
    // fetch sends each character of a header value as one byte: these are café-1's UTF-8 bytes.
    const utf8 = (text: string) => Buffer.from(text, 'utf8').toString('latin1');
    const made = await api(server, 'POST', '/orders', { token: tokens.shop, body, headers: { 'idempotency-key': utf8('café-1') } });
    expect(made.status).toBe(201);
    expect(made.body.ref).toBe('café-1');
    const again = await api(server, 'POST', '/orders', { token: tokens.shop, body, headers: { 'idempotency-key': utf8('café-1') } });
    expect(again).toMatchObject({ status: 200, body: { order_id: made.body.order_id, replay: true } });
    const found = await api(server, 'GET', `/orders/${encodeURIComponent('café-1')}`, { token: tokens.read });
    expect(found).toMatchObject({ status: 200, body: { order_id: made.body.order_id } });
    const latin1 = await api(server, 'POST', '/orders', { token: tokens.shop, body, headers: { 'idempotency-key': 'caf\u00e9-2' } });
    expect(latin1.status).toBe(422);
    expect(latin1.body.detail).toBe('The Idempotency-Key header is not valid UTF-8; send the key as UTF-8 (or plain ASCII).');
  });

  it('a shop may cancel a pending order even when it asks for restock (nothing was sold)', async () => {
    await product('SHOPRESTOCK', 5);
    const order = await api(server, 'POST', '/orders', { token: tokens.shop, body: { items: [{ sku: 'SHOPRESTOCK', quantity: 2 }] } });
    const cancelled = await api(server, 'DELETE', `/orders/${order.body.order_id}`, { token: tokens.shop, body: { restock: true } });
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toMatchObject({ outcome: 'cancelled' });
    expect((await t.sql`SELECT reserved_stock, stock_quantity FROM stock_items WHERE sku = 'SHOPRESTOCK'`)[0]).toEqual({ reserved_stock: 0, stock_quantity: 5 });
  });

  it('a token pasted into a URL is never logged', async () => {
    const own = await startServer(t.url);
    await api(own, 'GET', `/stock?access_token=${tokens.read}`, { token: tokens.read });
    await api(own, 'GET', `/orders/${'a'.repeat(1100)}?t=${tokens.read}`);
    const res = await own.stop();
    expect(res.code).toBe(0);
    expect(res.stderr).not.toContain(tokens.read);
    expect(res.stderr).toContain('/stock?access_token=stk_[redacted]');
    // The router's own refusals get their one log line too.
    expect(res.stderr).toMatch(/"status":414/);
  });
});

describe('start-up', () => {
  it('a port already in use, or an address not of this machine: exit 2 and one sentence, no stack trace', async () => {
    const port = new URL(server.url).port;
    const busy = await t.cli(['serve', '--port', port]);
    expect(busy).toMatchObject({
      code: 2,
      stdout: '',
      stderr: `error: Cannot listen on 127.0.0.1:${port}: the port is in use (another stockctl serve?); stop that process or choose another --port.\n`,
    });
    const json = await t.cliJson(['serve', '--port', port]);
    expect(json.code).toBe(2);
    expect(json.json).toMatchObject({ error: { code: 'port_in_use' } });
    // TEST-NET-1 (RFC 5737): never an address of this machine.
    const elsewhere = await t.cli(['serve', '--host', '192.0.2.1', '--port', '0']);
    expect(elsewhere).toMatchObject({ code: 2, stdout: '' });
    expect(elsewhere.stderr).toBe('error: Cannot listen on 192.0.2.1:0: 192.0.2.1 is not an address of this machine; use --host 127.0.0.1 or one of its addresses.\n');
  });
});

describe('live stock events', () => {
  it('an SSE client receives the change a CLI process makes, as a stock --json item', async () => {
    await product('LIVE', 10);
    const abort = new AbortController();
    const res = await fetch(`${server.url}/stock/events?sku=LIVE`, { headers: { authorization: `Bearer ${tokens.read}` }, signal: abort.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let received = '';
    const nextEvent = async () => {
      for (;;) {
        const m = /event: stock\nid: (\S+)\ndata: (.*)\n\n/.exec(received);
        if (m) {
          received = received.slice(m.index + m[0].length);
          return { id: m[1], data: JSON.parse(m[2]) };
        }
        const { value, done } = await reader.read();
        if (done) throw new Error('stream ended');
        received += value;
      }
    };
    try {
      await t.cli(['product', 'add', 'OTHER-LIVE', '--name', 'x', '--stock', '1']); // filtered out
      expect((await t.cli(['stock', 'adjust', 'LIVE', '-3', '--reason', 'damaged'])).code).toBe(0);
      const first = await nextEvent();
      const cli = await t.cliJson<any>(['stock', 'LIVE']);
      // The SKU's totals, with the level that changed.
      expect(first.data).toEqual({ ...cli.json.items[0], level: expect.objectContaining({ location: 'default', stock_quantity: 7, available: 7 }) });
      expect(first.id).toMatch(/^[0-9a-f]{8}-\d+$/); // a position in the stream (test/server/stock-events.test.ts)
      await reserve([{ sku: 'LIVE', quantity: 2 }]);
      const second = await nextEvent();
      expect(second.data).toMatchObject({ sku: 'LIVE', stock_quantity: 7, reserved_stock: 2, available: 5, in_stock: true });
    } finally {
      abort.abort();
      await reader.cancel().catch(() => {});
    }
  });

  it('stock --watch --json prints the row, then one JSON line per change, from the same notifications', async () => {
    const { startCli } = await import('../helpers/cli.js');
    const watch = startCli(['stock', 'LIVE', '--watch', '--json'], { databaseUrl: t.url });
    try {
      // The row is printed once the watch has joined the feed: a change from then on is heard.
      await watch.waitForStdout(/"sku":"LIVE"/);
      expect((await t.cli(['stock', 'adjust', 'LIVE', '+1'])).code).toBe(0);
      await watch.waitForStdout(/"stock_quantity":8/);
    } finally {
      watch.child.kill('SIGINT');
    }
    const res = await watch.result;
    expect(res.code).toBe(130);
    const lines = res.stdout.trim().split('\n').map((l) => JSON.parse(l));
    // The row as it was first, then the change.
    expect(lines).toEqual([
      expect.objectContaining({ sku: 'LIVE', stock_quantity: 7, available: 5 }),
      expect.objectContaining({ sku: 'LIVE', stock_quantity: 8, available: 6 }),
    ]);
  });
});

describe('loadtest over HTTP', () => {
  it('loadtest --url fires the buyers through POST /orders and proves the invariants on the database', async () => {
    const res = await t.cliJson<any>(['loadtest', '--url', server.url, '--token', tokens.shop, '--buyers', '200', '--stock', '50', '--concurrency', '20']);
    expect(res.code, res.stdout + res.stderr).toBe(0);
    // The server's default strategy is batched; the run takes the server's.
    expect(res.json.config).toMatchObject({ url: server.url, strategies: ['batched'], connections: 20 });
    expect(res.json.strategies[0]).toMatchObject({ strategy: 'batched', successes: 50, rejections: 150, errors: 0, violations: [] });
    const wrong = await t.cli(['loadtest', '--url', server.url, '--token', tokens.shop, '--strategy', 'locking', '--buyers', '10']);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/runs the batched strategy/);
    const noToken = await t.cli(['loadtest', '--url', server.url, '--buyers', '10']);
    expect(noToken.code).toBe(2);
    // A token that may not order is refused before any buyer is fired, and nothing is made.
    const before = await t.sql`SELECT count(*)::int AS n FROM products`;
    const readOnly = await t.cli(['loadtest', '--url', server.url, '--token', tokens.read, '--buyers', '10', '--stock', '5']);
    expect(readOnly).toMatchObject({ code: 2, stdout: '' });
    expect(readOnly.stderr).toMatch(/refused the --token \(Token t-read has role read; this needs role shop or above\.\); use a token of role shop or above\.\n$/);
    expect(await t.sql`SELECT count(*)::int AS n FROM products`).toEqual(before);
  });
});

describe('shutdown', () => {
  it('SIGTERM under load: in-flight requests finish, exit 0, nothing half-written, verify clean', async () => {
    await product('DRAIN', 1000);
    const own = await startServer(t.url, ['--pool', '8']);
    const outcomes: (number | string)[] = [];
    let stop = false;
    const target = { url: own.url };
    const ownReserve = () =>
      api(target, 'POST', '/orders', { token: tokens.shop, body: { items: [{ sku: 'DRAIN', quantity: 1 }] } });
    const workers = Array.from({ length: 16 }, async () => {
      while (!stop) {
        try {
          outcomes.push((await ownReserve()).status);
        } catch (err) {
          outcomes.push(`error:${(err as Error).cause ? ((err as Error).cause as Error).message : (err as Error).message}`);
          return;
        }
      }
    });
    // Under load: SIGTERM once more than ten orders are in, with sixteen more in flight.
    const loaded = Date.now() + 30_000;
    while (outcomes.filter((o) => o === 201).length <= 10 && !outcomes.some((o) => typeof o === 'string') && Date.now() < loaded) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const exited = own.stop('SIGTERM');
    const res = await exited;
    stop = true;
    await Promise.all(workers);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toMatch(/"msg":"stopped"/);
    const created = outcomes.filter((o) => o === 201).length;
    expect(created).toBeGreaterThan(10);
    expect(outcomes.filter((o) => typeof o === 'number' && o !== 201 && o !== 503)).toEqual([]);
    // Every 201 is an order; no order exists that nobody was told about beyond in-flight ones.
    const [row] = await t.sql`SELECT reserved_stock FROM stock_items WHERE sku = 'DRAIN'`;
    expect(row.reserved_stock).toBeGreaterThanOrEqual(created);
    expect(row.reserved_stock).toBeLessThanOrEqual(created + 16);
    await verifyClean();
    // One JSON line per request on stderr, never a token.
    const lines = res.stderr.trim().split('\n').filter((l) => l.startsWith('{'));
    const requests = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request');
    expect(requests.length).toBeGreaterThanOrEqual(created);
    expect(requests[0]).toMatchObject({ method: 'POST', url: '/orders', actor: 't-shop' });
    expect(res.stderr).not.toContain(tokens.shop);
    expect(res.stderr).not.toMatch(/"items"|authorization/i);
  });
});
