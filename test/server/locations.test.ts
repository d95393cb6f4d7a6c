/**
 * `stockctl serve` with stock in several locations, over real HTTP: an order pinned to a
 * location or split as the request (else SPLIT_POLICY) says, each line's allocations in
 * the order documents, GET /locations, GET /stock?location=, and live stock sending a
 * SKU's exact totals while its levels change at once from separate connections.
 */
import type postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyStockChanges } from '../../src/engine/stock.js';
import { useTestDatabase } from '../helpers/db.js';
import { api, startServer, type RunningServer } from './_server.js';
import { SseStream, type SseEvent } from './_sse.js';

const t = useTestDatabase();
let server: RunningServer;
const tokens: Record<string, string> = {};

async function cli(args: string[]) {
  const res = await t.cli(args);
  expect(res.code, res.stderr).toBe(0);
}

/** SKU at A=a, B=b, C=c (priorities 30, 20, 10: A is tried first). */
async function stocked(sku: string, a: number, b: number, c: number) {
  await cli(['product', 'add', sku, '--name', `Item ${sku}`, '--price', '10']);
  await cli(['stock', 'set', sku, String(a), '--location', 'A']);
  await cli(['stock', 'set', sku, String(b), '--location', 'B']);
  await cli(['stock', 'set', sku, String(c), '--location', 'C']);
}

const reserve = (body: object) => api(server, 'POST', '/orders', { token: tokens.shop, body });
const totals = async (sku: string) => (await api(server, 'GET', `/stock/${sku}`, { token: tokens.read })).body;

beforeAll(async () => {
  for (const role of ['read', 'shop']) {
    const res = await t.cliJson<{ token: string }>(['token', 'create', `l-${role}`, '--role', role]);
    expect(res.code, res.stdout).toBe(0);
    tokens[role] = res.json.token;
  }
  await cli(['location', 'add', 'A', '--name', 'Warehouse A', '--priority', '30']);
  await cli(['location', 'add', 'B', '--name', 'Warehouse B', '--priority', '20']);
  await cli(['location', 'add', 'C', '--name', 'Store C', '--priority', '10', '--kind', 'store']);
  await cli(['location', 'add', 'SHUT', '--name', 'Closed store', '--kind', 'store']);
  await cli(['location', 'set', 'SHUT', '--active', 'false']);
  server = await startServer(t.url);
});

afterAll(async () => {
  const res = await server?.stop();
  if (res) expect(res.code, res.stderr).toBe(0);
});

describe('POST /orders over several locations', () => {
  it('split units: a line of 5 over A=2, B=2, C=3 is held as A 2, B 2, C 1, in the answer and in GET /orders/{id}', async () => {
    await stocked('SPLIT-U', 2, 2, 3);
    const res = await reserve({ items: [{ sku: 'SPLIT-U', quantity: 5 }], split: 'units' });
    expect(res.status, res.text).toBe(201);
    const [item] = res.body.items;
    expect(item.allocations).toEqual([
      { location: 'A', quantity: 2, reservation_id: expect.any(String) },
      { location: 'B', quantity: 2, reservation_id: expect.any(String) },
      { location: 'C', quantity: 1, reservation_id: expect.any(String) },
    ]);
    expect(item.reservation_id).toBe(item.allocations[0].reservation_id);

    const shown = await api(server, 'GET', `/orders/${res.body.order_id}`, { token: tokens.read });
    expect(shown.status).toBe(200);
    expect(shown.body.items).toEqual([expect.objectContaining({ sku: 'SPLIT-U', quantity: 5, allocations: item.allocations })]);
    expect(shown.body.reservations.map((r: any) => [r.location, r.quantity, r.reservation_id]).sort()).toEqual(
      item.allocations.map((a: any) => [a.location, a.quantity, a.reservation_id]).sort(),
    );
    expect(await totals('SPLIT-U')).toMatchObject({ stock_quantity: 7, reserved_stock: 5, available: 2 });

    const text = await t.cli(['orders', 'show', res.body.order_id]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/Location/);
    expect(text.stdout).toMatch(new RegExp(`${item.allocations[2].reservation_id}.*SPLIT-U.*\\bC\\b`));
  });

  it('split lines: a line no one location covers is 409 insufficient_stock, naming what was asked and what one location has', async () => {
    await stocked('SPLIT-L', 2, 2, 3);
    const res = await reserve({ items: [{ sku: 'SPLIT-L', quantity: 5 }], split: 'lines' });
    expect(res.status, res.text).toBe(409);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({
      code: 'insufficient_stock',
      shortages: [{ sku: 'SPLIT-L', requested: 5, available: 3, available_total: 7 }],
    });
    expect(res.body.detail).toMatch(/requested 5, available 3/);
    expect(await totals('SPLIT-L')).toMatchObject({ reserved_stock: 0, available: 7 });
  });

  it("without split, the server's SPLIT_POLICY decides", async () => {
    await stocked('SPLIT-D', 2, 2, 3);
    const never = await startServer(t.url, [], { SPLIT_POLICY: 'never' });
    try {
      const refused = await api(never, 'POST', '/orders', { token: tokens.shop, body: { items: [{ sku: 'SPLIT-D', quantity: 4 }] } });
      expect(refused.status, refused.text).toBe(409);
      expect(refused.body).toMatchObject({ code: 'insufficient_stock' });
      const asked = await api(never, 'POST', '/orders', { token: tokens.shop, body: { items: [{ sku: 'SPLIT-D', quantity: 4 }], split: 'units' } });
      expect(asked.status, asked.text).toBe(201);
    } finally {
      expect((await never.stop()).code).toBe(0);
    }
    // This server's default is units.
    const res = await reserve({ items: [{ sku: 'SPLIT-D', quantity: 3 }] });
    expect(res.status, res.text).toBe(201);
  });

  it('location pins every unit there (store pickup); unknown is 404, inactive 409, each naming the location', async () => {
    await stocked('PICKUP', 5, 5, 3);
    const res = await reserve({ items: [{ sku: 'PICKUP', quantity: 3 }], location: 'C' });
    expect(res.status, res.text).toBe(201);
    expect(res.body.items[0].allocations).toEqual([{ location: 'C', quantity: 3, reservation_id: res.body.items[0].reservation_id }]);
    // Short at the pinned location, however much elsewhere.
    const short = await reserve({ items: [{ sku: 'PICKUP', quantity: 1 }], location: 'C' });
    expect(short.status, short.text).toBe(409);
    expect(short.body).toMatchObject({ code: 'insufficient_stock', shortages: [{ sku: 'PICKUP', requested: 1, available: 0 }] });

    const unknown = await reserve({ items: [{ sku: 'PICKUP', quantity: 1 }], location: 'NOWHERE' });
    expect(unknown.status, unknown.text).toBe(404);
    expect(unknown.body).toMatchObject({ code: 'location_not_found', location: 'NOWHERE' });
    const inactive = await reserve({ items: [{ sku: 'PICKUP', quantity: 1 }], location: 'SHUT' });
    expect(inactive.status, inactive.text).toBe(409);
    expect(inactive.body).toMatchObject({ code: 'location_inactive', location: 'SHUT' });
  });

  it('location and split are validated, and unknown fields still refused', async () => {
    const items = [{ sku: 'PICKUP', quantity: 1 }];
    for (const body of [{ items, split: 'sometimes' }, { items, location: 'two words' }, { items, locations: ['A'] }]) {
      const res = await reserve(body);
      expect(res.status, JSON.stringify(body)).toBe(422);
      expect(res.body).toMatchObject({ code: 'invalid_input' });
    }
  });
});

describe('GET /locations and GET /stock?location=', () => {
  it('GET /locations lists every location as `location list --json` does', async () => {
    const res = await api(server, 'GET', '/locations', { token: tokens.read });
    expect(res.status).toBe(200);
    const cliList = await t.cliJson<any>(['location', 'list']);
    expect(cliList.code, cliList.stderr).toBe(0);
    expect(res.body).toEqual({ locations: cliList.json.locations });
    expect(res.body.locations.map((l: any) => l.code)).toEqual(['A', 'B', 'C', 'SHUT', 'default']);
    expect(res.body.locations.find((l: any) => l.code === 'SHUT')).toMatchObject({ active: false, kind: 'store' });
    const refused = await api(server, 'GET', '/locations?all=1', { token: tokens.read });
    expect(refused.status).toBe(422);
  });

  it('GET /stock?location= gives the levels there, in SKU order and in pages; an unknown location is 404', async () => {
    await stocked('LVL-1', 1, 4, 0);
    await stocked('LVL-2', 2, 5, 0);
    const res = await api(server, 'GET', '/stock?location=B&sku=LVL-1&sku=LVL-2', { token: tokens.read });
    expect(res.status, res.text).toBe(200);
    const cliLevels = await t.cliJson<any>(['stock', 'LVL-1', 'LVL-2', '--location', 'B']);
    expect(res.body).toEqual({ location: 'B', items: cliLevels.json.items, next_cursor: null });
    expect(res.body.items).toEqual([
      { sku: 'LVL-1', name: 'Item LVL-1', location: 'B', active: true, stock_quantity: 4, reserved_stock: 0, incoming: 0, available: 4, version: 1, in_stock: true },
      expect.objectContaining({ sku: 'LVL-2', location: 'B', stock_quantity: 5 }),
    ]);

    const first = await api(server, 'GET', '/stock?location=B&sku=LVL-1&sku=LVL-2&limit=1', { token: tokens.read });
    expect(first.body.items.map((i: any) => i.sku)).toEqual(['LVL-1']);
    expect(first.headers.get('link')).toMatch(/location=B/);
    const second = await api(server, 'GET', `/stock?location=B&sku=LVL-1&sku=LVL-2&limit=1&cursor=${first.body.next_cursor}`, { token: tokens.read });
    expect(second.body).toEqual({ location: 'B', items: [expect.objectContaining({ sku: 'LVL-2' })], next_cursor: null });

    const low = await api(server, 'GET', '/stock?location=B&sku=LVL-1&sku=LVL-2&low=4', { token: tokens.read });
    expect(low.body.items.map((i: any) => i.sku)).toEqual(['LVL-1']);

    const unknown = await api(server, 'GET', '/stock?location=NOWHERE', { token: tokens.read });
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({ code: 'location_not_found', location: 'NOWHERE' });
    const unknownSku = await api(server, 'GET', '/stock?location=B&sku=NOPE', { token: tokens.read });
    expect(unknownSku.status).toBe(404);
    expect(unknownSku.body).toMatchObject({ code: 'sku_not_found' });
  });
});

describe('live stock per level', () => {
  const stockEvents = async (stream: SseStream, sku: string, n: number) => {
    const seen: SseEvent[] = [];
    while (seen.length < n) {
      const event = await stream.next();
      if (!event) throw new Error(`the stream ended after ${JSON.stringify(seen)}`);
      if (event.event === 'stock' && event.data.sku === sku) seen.push(event);
    }
    return seen;
  };

  it('two levels of one SKU changed at once from separate connections: the last totals are the database totals', async () => {
    await stocked('LIVE-LOC', 10, 10, 0);
    const stream = await SseStream.open(server, '/stock/events?sku=LIVE-LOC', { token: tokens.read });
    const [a, b] = [await t.sql.reserve(), await t.sql.reserve()];
    const adjustAt = (location: string, delta: number) => ({ sku: 'LIVE-LOC', location, stockDelta: delta, reservedDelta: 0, kind: 'adjust' as const });
    try {
      await stream.untilReady();
      const rounds = 10;
      for (let i = 0; i < rounds; i++) {
        // Both uncommitted at once: each writer's statement sees only its own level's change,
        // so neither could say the totals the two commits leave.
        await Promise.all([a`BEGIN`, b`BEGIN`]);
        await applyStockChanges(a as unknown as postgres.Sql, [adjustAt('A', 1)], 'test');
        await applyStockChanges(b as unknown as postgres.Sql, [adjustAt('B', 2)], 'test');
        await Promise.all([a`COMMIT`, b`COMMIT`]);
      }
      const events = await stockEvents(stream, 'LIVE-LOC', rounds * 2);
      const db = await totals('LIVE-LOC');
      expect(db).toMatchObject({ stock_quantity: 50, available: 50, version: 22 });
      const { level: _level, ...last } = events.at(-1)!.data;
      expect(last).toEqual(db);
      // Every event's totals are the sum of the levels as they committed, in order.
      const versions = events.map((e) => e.data.version);
      expect(versions).toEqual([...versions].sort((x, y) => x - y));
      expect(new Set(events.map((e) => e.data.level.location))).toEqual(new Set(['A', 'B']));
    } finally {
      a.release();
      b.release();
      stream.close();
    }
  });

  it('a split reserve is one change of three levels: each level event carries the totals after all three', async () => {
    await stocked('LIVE-SPLIT', 2, 2, 3);
    const stream = await SseStream.open(server, '/stock/events?sku=LIVE-SPLIT', { token: tokens.read });
    try {
      await stream.untilReady();
      const res = await reserve({ items: [{ sku: 'LIVE-SPLIT', quantity: 5 }], split: 'units' });
      expect(res.status, res.text).toBe(201);
      const events = await stockEvents(stream, 'LIVE-SPLIT', 3);
      const db = await totals('LIVE-SPLIT');
      expect(db).toMatchObject({ stock_quantity: 7, reserved_stock: 5, available: 2 });
      for (const event of events) {
        const { level: _level, ...item } = event.data;
        expect(item).toEqual(db);
      }
      expect(events.map((e) => [e.data.level.location, e.data.level.reserved_stock, e.data.level.available])).toEqual([
        ['A', 2, 0],
        ['B', 2, 0],
        ['C', 1, 2],
      ]);
    } finally {
      stream.close();
    }
  });
});
