/**
 * The HTTP edge where a careless or hostile client pushes it (issue 16): every answer a
 * problem document with the right status, and nothing written that should not be.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { api, startServer, type RunningServer } from './_server.js';

const t = useTestDatabase();
let server: RunningServer;
let shop: string;

/** A request as Node's own client sends it: header arrays become repeated headers, as fetch would never send them. */
function rawRequest(method: string, path: string, headers: http.OutgoingHttpHeaders, body?: string) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: any }>((resolve, reject) => {
    const req = http.request(new URL(path, server.url), { method, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? JSON.parse(text) : undefined }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const orders = async () => (await t.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM orders`)[0].n;

beforeAll(async () => {
  const res = await t.cliJson<{ token: string }>(['token', 'create', 'edge-shop', '--role', 'shop']);
  expect(res.code, res.stdout).toBe(0);
  shop = res.json.token;
  for (const args of [
    ['product', 'add', 'EDGE', '--name', 'Edge', '--stock', '10'],
    ['product', 'add', 'HOODIE', '--name', 'Hoodie'],
    ['product', 'add', 'HOODIE-M', '--parent', 'HOODIE', '--name', 'Hoodie M', '--stock', '3'],
    ['product', 'add', 'HOODIE-L', '--parent', 'HOODIE', '--name', 'Hoodie L', '--stock', '3'],
  ]) {
    expect((await t.cli(args)).code, args.join(' ')).toBe(0);
  }
  server = await startServer(t.url);
});

afterAll(async () => {
  const res = await server?.stop();
  if (res) expect(res.code, res.stderr).toBe(0);
});

describe('requests refused before they are routed', () => {
  it('a 100,000-character URL is a 431 problem document', async () => {
    const res = await rawRequest('GET', `/orders?x=${'a'.repeat(100_000)}`, { authorization: `Bearer ${shop}` });
    expect(res.status).toBe(431);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body).toEqual({
      type: 'urn:stockctl:problem:headers_too_large',
      title: 'Request header fields too large',
      status: 431,
      detail: 'The request line and headers are larger than 16 KiB (a URL that long?); no route takes a URL or header that large.',
      code: 'headers_too_large',
      request_id: res.headers['x-request-id'],
    });
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    // The server is still there.
    expect((await api(server, 'GET', '/healthz')).status).toBe(200);
  });
});

describe('bodies', () => {
  it('a "__proto__" key is valid JSON with an unknown field: 422 naming it, nothing written', async () => {
    const before = await orders();
    const top = await api(server, 'POST', '/orders', { token: shop, raw: '{"items":[{"sku":"EDGE","quantity":1}],"__proto__":{"admin":true}}' });
    expect(top.status).toBe(422);
    expect(top.body).toMatchObject({
      code: 'invalid_input',
      detail: 'Invalid request body: unknown field "__proto__".',
      errors: [{ field: '__proto__', message: 'unknown field "__proto__"' }],
    });
    const nested = await api(server, 'POST', '/orders', { token: shop, raw: '{"items":[{"sku":"EDGE","quantity":1,"__proto__":{}}]}' });
    expect(nested.status).toBe(422);
    expect(nested.body).toMatchObject({ code: 'invalid_input', detail: 'Invalid request body: unknown field "items.0.__proto__".' });
    const ctor = await api(server, 'POST', '/orders', { token: shop, raw: '{"items":[{"sku":"EDGE","quantity":1}],"constructor":{"prototype":{}}}' });
    expect(ctor.status).toBe(422);
    expect(ctor.body).toMatchObject({ code: 'invalid_input', detail: 'Invalid request body: unknown field "constructor".' });
    // Not JSON at all is still a 400, and an empty body says so.
    expect((await api(server, 'POST', '/orders', { token: shop, raw: '{"items":' })).body).toMatchObject({ status: 400, code: 'malformed_json' });
    expect((await api(server, 'POST', '/orders', { token: shop, raw: '' })).body).toMatchObject({ status: 400, code: 'malformed_json' });
    expect(await orders()).toBe(before);
    // A JSON body with a byte order mark, as some clients send it, is read as before.
    const bom = await api(server, 'POST', '/orders', { token: shop, raw: '\uFEFF{"items":[{"sku":"EDGE","quantity":1}]}' });
    expect(bom.status, bom.text).toBe(201);
  });
});

describe('Idempotency-Key', () => {
  it('two Idempotency-Key headers are refused (422), never joined into one ref', async () => {
    const before = await orders();
    const res = await rawRequest(
      'POST',
      '/orders',
      { authorization: `Bearer ${shop}`, 'content-type': 'application/json', 'idempotency-key': ['dup-a', 'dup-b'] },
      JSON.stringify({ items: [{ sku: 'EDGE', quantity: 1 }] }),
    );
    expect(res.status).toBe(422);
    expect(res.body).toMatchObject({
      code: 'invalid_input',
      detail: "The request has 2 Idempotency-Key headers; send exactly one (its value is the order's ref).",
    });
    expect(await orders()).toBe(before);
    expect(await t.sql`SELECT ref FROM orders WHERE ref LIKE 'dup-%'`).toEqual([]);
  });

  it('a key that looks like the start of an order id is refused as on the CLI (422); a UUID is a fine key', async () => {
    const made = await api(server, 'POST', '/orders', { token: shop, body: { items: [{ sku: 'EDGE', quantity: 1 }] } });
    expect(made.status).toBe(201);
    const prefix = made.body.order_id.slice(0, 8);
    const refused = await api(server, 'POST', '/orders', {
      token: shop,
      body: { items: [{ sku: 'EDGE', quantity: 1 }] },
      headers: { 'idempotency-key': prefix },
    });
    expect(refused.status).toBe(422);
    expect(refused.body).toMatchObject({
      code: 'invalid_input',
      detail: `Invalid ref "${prefix}": it looks like the start of an order id (8 or more hex digits), which order lookups would also match; add a letter or a prefix that is not hex, like cart-${prefix}.`,
    });
    const uuid = '3b241101-e2bb-4255-8caf-4136c566a962';
    const keyed = await api(server, 'POST', '/orders', { token: shop, body: { items: [{ sku: 'EDGE', quantity: 1 }] }, headers: { 'idempotency-key': uuid } });
    expect(keyed.status).toBe(201);
    expect(keyed.body.ref).toBe(uuid);
    // The prefix still names the first order.
    expect((await api(server, 'GET', `/orders/${prefix}`, { token: shop })).body.order_id).toBe(made.body.order_id);
  });

  it('is counted in characters of UTF-8: 200 "é" (400 bytes) is a key, 201 is too long', async () => {
    const asSent = (text: string) => Buffer.from(text, 'utf8').toString('latin1'); // header bytes, as fetch must send them
    const ok = await api(server, 'POST', '/orders', { token: shop, body: { items: [{ sku: 'EDGE', quantity: 1 }] }, headers: { 'idempotency-key': asSent('é'.repeat(200)) } });
    expect(ok.status, ok.text).toBe(201);
    expect(ok.body.ref).toBe('é'.repeat(200));
    const long = await api(server, 'POST', '/orders', { token: shop, body: { items: [{ sku: 'EDGE', quantity: 1 }] }, headers: { 'idempotency-key': asSent('é'.repeat(201)) } });
    expect(long.status).toBe(422);
    expect(long.body).toMatchObject({ code: 'invalid_input', detail: 'The ref is too long (201 characters; at most 200).' });
  });
});

describe('a product with variants', () => {
  it('is not found (404) wherever a stock row is meant, naming its variants, as on the CLI (exit 4)', async () => {
    const detail = 'SKU "HOODIE" is a product with variants, which hold its stock (HOODIE-L, HOODIE-M); use one of those SKUs.';
    const reserve = await api(server, 'POST', '/orders', { token: shop, body: { items: [{ sku: 'HOODIE', quantity: 1 }] } });
    const stock = await api(server, 'GET', '/stock/HOODIE', { token: shop });
    for (const res of [reserve, stock]) {
      expect(res.status, res.text).toBe(404);
      // One name per field over HTTP: `skus`, also for one SKU (the CLI's JSON says `sku`).
      expect(res.body).toMatchObject({ code: 'sku_not_found', detail, skus: ['HOODIE'], variants: ['HOODIE-L', 'HOODIE-M'] });
    }
    const cli = await t.cliJson<{ error: { code: string; message: string } }>(['reserve', 'HOODIE:1']);
    expect(cli).toMatchObject({ code: 4, json: { error: { code: 'sku_not_found', message: detail } } });
  });
});
