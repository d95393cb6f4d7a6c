/**
 * The OpenAPI document is the truth (issue 18): what it declares is what the server does.
 * Every response any server test receives through api() is checked against /openapi.json
 * (test/server/contract.ts); here, the checker itself is shown to catch a lie, the
 * document is held to what a generated client needs, and one request of every kind the
 * server can answer goes through the checker.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { api, startServer, type RunningServer } from './_server.js';
import { checkerFor, ContractChecker } from './contract.js';

const t = useTestDatabase();
let server: RunningServer;
let doc: any;
let checker: ContractChecker;
const tokens: Record<string, string> = {};

const ops = () =>
  Object.entries(doc.paths).flatMap(([path, item]: [string, any]) => Object.entries(item).map(([method, op]: [string, any]) => ({ path, method, op })));

beforeAll(async () => {
  for (const role of ['read', 'shop', 'support']) {
    const res = await t.cliJson<{ token: string }>(['token', 'create', `c-${role}`, '--role', role]);
    expect(res.code, res.stdout).toBe(0);
    tokens[role] = res.json.token;
  }
  expect((await t.cli(['product', 'add', 'DOC', '--name', 'Doc', '--price', '2', '--stock', '50'])).code).toBe(0);
  server = await startServer(t.url);
  doc = (await api(server, 'GET', '/openapi.json')).body;
  checker = (await checkerFor(server.url))!;
  expect(checker).toBeInstanceOf(ContractChecker);
});

afterAll(async () => {
  const res = await server?.stop();
  if (res) expect(res.code, res.stderr).toBe(0);
});

describe('the checker', () => {
  const headers = (h: Record<string, string>) => new Headers({ 'x-request-id': 'r-1', ...h });
  const problem = (extra: object = {}) =>
    JSON.stringify({ type: 'urn:stockctl:problem:x', title: 'T', status: 409, detail: 'd.', code: 'x', request_id: 'r-1', ...extra });

  it('passes what the document declares, and names every lie', () => {
    const json = { 'content-type': 'application/problem+json; charset=utf-8' };
    expect(checker.check('POST', '/orders', { status: 409, headers: headers(json), text: problem() })).toEqual([]);
    // A status the operation does not declare.
    expect(checker.check('GET', '/orders', { status: 409, headers: headers(json), text: problem() })[0]).toMatch(/status 409 is not declared on GET \/orders/);
    // An error as plain JSON, where problem+json is declared.
    expect(checker.check('POST', '/orders', { status: 409, headers: headers({ 'content-type': 'application/json' }), text: problem() })[0]).toMatch(
      /content type application\/json is not declared/,
    );
    // A member the Problem schema does not list.
    expect(checker.check('POST', '/orders', { status: 409, headers: headers(json), text: problem({ sku: 'X' }) })[0]).toMatch(/must NOT have additional properties/);
    // A body that is not its schema.
    const ok = { 'content-type': 'application/json; charset=utf-8' };
    expect(checker.check('GET', '/stock/DOC', { status: 200, headers: headers(ok), text: '{"sku":"DOC"}' })[0]).toMatch(/does not match the declared schema/);
    // A header that is sent but not declared, and a response without its request id.
    expect(checker.check('GET', '/orders', { status: 200, headers: headers({ ...ok, location: '/x' }), text: '{"orders":[],"next_cursor":null}' })).toEqual([
      'GET /orders → 200: header location is sent but not declared',
    ]);
    expect(checker.check('GET', '/orders', { status: 200, headers: new Headers(ok), text: '{"orders":[],"next_cursor":null}' })).toEqual(['GET /orders → 200: no X-Request-Id header']);
    // /metrics is text in the Prometheus format, version 0.0.4.
    expect(checker.check('GET', '/metrics', { status: 200, headers: headers({ 'content-type': 'text/plain; charset=utf-8' }), text: '# x' })[0]).toMatch(/lacks version=0.0.4/);
  });
});

describe('the document', () => {
  it('has servers, an operationId and a 4xx on every operation, and security: [] on the public routes', () => {
    expect(doc.servers).toEqual([{ url: '/', description: expect.any(String) }]);
    expect(doc.security).toEqual([{ bearer: [] }]);
    const ids = ops().map((o) => o.op.operationId);
    expect(ids.every((id) => typeof id === 'string')).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    for (const { path, method, op } of ops()) {
      expect(Object.keys(op.responses).some((s) => /^4\d\d$/.test(s)), `${method} ${path}`).toBe(true);
      expect(op.responses['500'], `${method} ${path}`).toBeDefined();
      expect(op.responses['503'], `${method} ${path}`).toBeDefined();
    }
    const isPublic = Object.fromEntries(ops().map(({ path, op }) => [path, Array.isArray(op.security) && op.security.length === 0]));
    expect(Object.keys(isPublic).filter((p) => isPublic[p]).sort()).toEqual(['/healthz', '/openapi.json', '/readyz']);
  });

  it('declares every error as application/problem+json, /metrics as Prometheus text and /stock/events as an event stream', () => {
    for (const { path, method, op } of ops()) {
      for (const [status, response] of Object.entries<any>(op.responses)) {
        const media = Object.keys(response.content ?? {});
        if (Number(status) >= 400) expect(media, `${method} ${path} ${status}`).toEqual(['application/problem+json']);
        expect(Object.keys(response.headers ?? {}), `${method} ${path} ${status}`).toContain('X-Request-Id');
        if (status === '401') expect(response.headers['WWW-Authenticate']).toBeDefined();
        if (status === '429' || status === '503') expect(response.headers['Retry-After']).toBeDefined();
      }
    }
    expect(Object.keys(doc.paths['/metrics'].get.responses['200'].content)).toEqual(['text/plain; version=0.0.4']);
    expect(Object.keys(doc.paths['/stock/events'].get.responses['200'].content)).toEqual(['text/event-stream']);
    expect(Object.keys(doc.paths['/orders'].post.responses['201'].headers)).toEqual(['X-Request-Id', 'Location']);
    expect(Object.keys(doc.paths['/orders'].post.responses['200'].headers)).toEqual(['X-Request-Id', 'Location', 'Idempotent-Replayed']);
    expect(Object.keys(doc.paths['/orders'].get.responses['200'].headers)).toEqual(['X-Request-Id', 'Link']);
  });

  it('bodies that may be omitted are optional; integers are integers; enums hold only values that occur', () => {
    expect(doc.paths['/orders/{id}'].delete.requestBody.required).toBe(false);
    expect(doc.paths['/orders/{id}/payment'].patch.requestBody.required).toBe(false);
    expect(doc.paths['/orders'].post.requestBody.required).toBe(true);
    const query = (path: string, name: string) => doc.paths[path].get.parameters.find((p: any) => p.in === 'query' && p.name === name).schema;
    expect(query('/orders', 'limit')).toMatchObject({ type: 'integer', minimum: 1, maximum: 100 });
    expect(query('/stock', 'low')).toMatchObject({ type: 'integer', minimum: 0 });
    expect(query('/stock', 'limit')).toMatchObject({ type: 'integer', minimum: 1, maximum: 1000 });
    expect(query('/orders', 'status').enum).toEqual(['pending', 'paid', 'cancelled', 'processing', 'shipped', 'delivered']);
    expect(query('/orders', 'customer_id')).toMatchObject({ type: 'string' });
    const pay = doc.paths['/orders/{id}/payment'].patch.responses['200'].content['application/json'].schema;
    expect(pay.properties.status.enum).toEqual(['paid', 'processing', 'shipped', 'delivered']);
  });

  it('has one Problem schema, with every extension member, each under one name', () => {
    const problem = doc.components.schemas.Problem;
    expect(Object.keys(problem.properties)).toEqual(
      expect.arrayContaining(['errors', 'shortages', 'skus', 'variants', 'order_id', 'role', 'required_role', 'from', 'to', 'tiers', 'priority', 'request_id']),
    );
    expect(problem.properties.sku).toBeUndefined();
    expect(problem.required).toEqual(expect.arrayContaining(['type', 'title', 'status', 'detail', 'code', 'request_id']));
    // Every error response refers to it.
    for (const { op } of ops()) {
      for (const [status, response] of Object.entries<any>(op.responses)) {
        if (Number(status) >= 400) expect(response.content['application/problem+json'].schema).toEqual({ $ref: '#/components/schemas/Problem' });
      }
    }
  });
});

describe('@redocly/cli lint', () => {
  it('finds no error in the recommended rules; the one warning kept is info-license (stockctl has no license to declare)', () => {
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stockctl-openapi-'));
    try {
      fs.writeFileSync(path.join(dir, 'openapi.json'), JSON.stringify(doc));
      const res = spawnSync(path.join(root, 'node_modules', '.bin', 'redocly'), ['lint', '--format', 'json', 'openapi.json'], {
        cwd: dir,
        encoding: 'utf8',
        env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
        timeout: 60_000,
      });
      const report = JSON.parse(res.stdout.slice(res.stdout.indexOf('{')));
      expect(report.totals).toMatchObject({ errors: 0 });
      expect(report.problems.map((p: { ruleId: string }) => p.ruleId)).toEqual(['info-license']);
      expect(res.status).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('one request of every kind, each held to the document', () => {
  it('successes, and every problem class the server sends', async () => {
    const { read, shop, support } = tokens;
    const order = await api(server, 'POST', '/orders', { token: shop, body: { items: [{ sku: 'DOC', quantity: 1 }] }, headers: { 'idempotency-key': 'doc-1' } });
    expect(order.status).toBe(201);
    const answers = [
      order,
      await api(server, 'POST', '/orders', { token: shop, body: { items: [{ sku: 'DOC', quantity: 1 }] }, headers: { 'idempotency-key': 'doc-1' } }),
      await api(server, 'POST', '/orders', { token: shop, body: { items: [{ sku: 'DOC', quantity: 2 }] }, headers: { 'idempotency-key': 'doc-1' } }),
      await api(server, 'GET', '/orders?limit=1', { token: read }),
      await api(server, 'GET', `/orders/${order.body.order_id}`, { token: read }),
      await api(server, 'GET', '/stock?limit=1', { token: read }),
      await api(server, 'GET', '/stock/DOC', { token: read }),
      await api(server, 'GET', '/metrics', { token: read }),
      await api(server, 'GET', '/healthz'),
      await api(server, 'GET', '/readyz'),
      await api(server, 'POST', `/orders/doc-1/extend`, { token: support, body: { ttl: '1h' } }),
      await api(server, 'PATCH', '/orders/doc-1/payment', { token: shop }),
      await api(server, 'PATCH', '/orders/doc-1/payment', { token: shop, body: { payment_ref: 'pi_other' } }),
      await api(server, 'PATCH', '/orders/doc-1/status', { token: support, body: { status: 'processing' } }),
      await api(server, 'PATCH', '/orders/doc-1/status', { token: support, body: { status: 'delivered' } }),
      await api(server, 'DELETE', '/orders/doc-1', { token: shop }),
      await api(server, 'POST', '/orders', { token: shop, raw: '{"items":' }),
      await api(server, 'GET', '/orders/%zz', { token: read }),
      await api(server, 'GET', '/stock/NOSUCH', { token: read }),
      await api(server, 'GET', '/nowhere'),
      await api(server, 'PUT', '/orders'),
      await api(server, 'POST', '/orders', { token: shop, raw: JSON.stringify({ items: [{ sku: 'DOC', quantity: 1 }], customer_id: 'x'.repeat(70_000) }) }),
      await api(server, 'GET', `/orders/${'a'.repeat(1100)}`),
      await api(server, 'POST', '/orders', { token: shop, raw: '{}', headers: { 'content-type': 'text/plain' } }),
      await api(server, 'POST', '/orders', { token: shop, body: { items: [{ sku: 'DOC', quantity: 0 }], coupon: 1 } }),
      await api(server, 'POST', '/orders', { token: shop, body: { items: [{ sku: 'DOC', quantity: 1000 }] } }),
      await api(server, 'GET', '/stock'),
      await api(server, 'GET', '/stock', { token: 'stk_wrong' }),
      await api(server, 'POST', '/orders', { token: read, body: { items: [{ sku: 'DOC', quantity: 1 }] } }),
    ];
    // Each was checked by api(); the statuses show that every class was met.
    expect(answers.map((a) => a.status)).toEqual([
      201, 200, 422, 200, 200, 200, 200, 200, 200, 200, 200, 200, 409, 200, 409, 403, 400, 400, 404, 404, 405, 413, 414, 415, 422, 409, 401, 401, 403,
    ]);
  });
});
