/**
 * Live stock over HTTP (GET /stock/events) and on the CLI (`stock --watch`), as a
 * storefront's backend meets them: a snapshot first, then changes; nothing missed across
 * a reconnect; a revoked token's stream ends; a client that does not read is dropped,
 * and the number of streams is capped.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase, type TestDatabase } from '../helpers/db.js';
import { runCliJson, startCli } from '../helpers/cli.js';
import { transaction } from '../../src/db/query.js';
import { applyStockChanges } from '../../src/engine/stock.js';
import { api, startServer, type RunningServer } from './_server.js';
import { SseStream } from './_sse.js';

const t = useTestDatabase();
let server: RunningServer;
const tokens: Record<string, string> = {};

async function product(sku: string, stock: number) {
  const res = await t.cli(['product', 'add', sku, '--name', `Item ${sku}`, '--stock', String(stock)]);
  expect(res.code, res.stderr).toBe(0);
}

async function stockItem(sku: string) {
  const res = await t.cliJson<{ items: any[] }>(['stock', sku]);
  expect(res.code, res.stderr).toBe(0);
  return res.json.items[0];
}

/** A `stock` event's data: the SKU's totals (a `stock --json` item) and the level that changed. */
async function stockEvent(sku: string, location = 'default') {
  const res = await t.cliJson<{ items: any[] }>(['stock', sku, '--by-location']);
  expect(res.code, res.stderr).toBe(0);
  const { levels, ...item } = res.json.items[0];
  const { in_stock: _inStock, ...level } = levels.find((l: any) => l.location === location);
  return { ...item, level };
}

async function adjust(sku: string, delta: string) {
  const res = await t.cli(['stock', 'adjust', sku, delta]);
  expect(res.code, res.stderr).toBe(0);
}

async function token(name: string, role = 'read', databaseUrl = t.url) {
  const res = await runCliJson<{ token: string }>(['token', 'create', name, '--role', role], { databaseUrl });
  expect(res.code, res.stdout).toBe(0);
  return res.json.token;
}

/** The server's stderr, line by line, from now on; `waitFor` resolves with the first JSON line matching. */
function serverLog(running: RunningServer) {
  let text = '';
  const waiters = new Set<() => void>();
  running.proc.child.stderr!.on('data', (chunk: Buffer | string) => {
    text += chunk.toString();
    for (const check of waiters) check();
  });
  return {
    waitFor(match: (line: any) => boolean): Promise<any> {
      return new Promise((resolve) => {
        const check = () => {
          for (const line of text.split('\n')) {
            if (!line.startsWith('{')) continue;
            const parsed = JSON.parse(line);
            if (match(parsed)) {
              waiters.delete(check);
              resolve(parsed);
              return;
            }
          }
        };
        waiters.add(check);
        check();
      });
    },
  };
}

const EVENT_ID = /^[0-9a-f]{8}-\d+$/;

beforeAll(async () => {
  tokens.read = await token('live-reader');
  await product('LIVE-A', 10);
  await product('LIVE-B', 5);
  server = await startServer(t.url);
});

afterAll(async () => {
  const res = await server?.stop();
  if (res) expect(res.code, res.stderr).toBe(0);
});

describe('list, then watch', () => {
  it('a fresh stream sends one snapshot event per SKU, then ready with an id, then each committed change', async () => {
    const stream = await SseStream.open(server, '/stock/events?sku=LIVE-A&sku=LIVE-B', { token: tokens.read });
    try {
      expect(stream.status).toBe(200);
      expect(stream.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const first = await stream.untilReady();
      const listed = await api(server, 'GET', '/stock?sku=LIVE-A&sku=LIVE-B', { token: tokens.read });
      expect(first.slice(0, -1)).toEqual(listed.body.items.map((item: unknown) => ({ event: 'snapshot', data: item })));
      const ready = first.at(-1)!;
      expect(ready).toMatchObject({ event: 'ready', data: { snapshot: true, items: 2 } });
      expect(ready.id).toMatch(EVENT_ID);

      await adjust('LIVE-A', '-3');
      const change = await stream.next();
      expect(change).toEqual({ event: 'stock', id: expect.stringMatching(EVENT_ID), data: await stockEvent('LIVE-A') });
      expect(change!.data).toMatchObject({ stock_quantity: 7, available: 7 });
    } finally {
      stream.close();
    }
  });

  it('a client that comes back with Last-Event-ID gets the change it missed, without a snapshot', async () => {
    const before = await SseStream.open(server, '/stock/events?sku=LIVE-B', { token: tokens.read });
    const lastId = (await before.untilReady()).at(-1)!.id!;
    before.close();

    await adjust('LIVE-B', '+2'); // while it is away

    const after = await SseStream.open(server, '/stock/events?sku=LIVE-B', { token: tokens.read, lastEventId: lastId });
    try {
      const first = await after.untilReady();
      expect(first).toEqual([
        { event: 'stock', id: expect.stringMatching(EVENT_ID), data: await stockEvent('LIVE-B') },
        { event: 'ready', id: expect.stringMatching(EVENT_ID), data: { snapshot: false, items: 1 } },
      ]);
      expect(first[0].data).toMatchObject({ sku: 'LIVE-B', stock_quantity: 7 });
    } finally {
      after.close();
    }
  });

  it('an id the server cannot resume from gets the snapshot again', async () => {
    const stream = await SseStream.open(server, '/stock/events?sku=LIVE-B', { token: tokens.read, lastEventId: 'deadbeef-12' });
    try {
      expect(await stream.untilReady()).toEqual([
        { event: 'snapshot', data: await stockItem('LIVE-B') },
        { event: 'ready', id: expect.stringMatching(EVENT_ID), data: { snapshot: true, items: 1 } },
      ]);
    } finally {
      stream.close();
    }
  });

  it('across a server restart: the change made while it was down arrives in the snapshot', async () => {
    const first = await startServer(t.url);
    const stream = await SseStream.open(first, '/stock/events?sku=LIVE-A', { token: tokens.read });
    const lastId = (await stream.untilReady()).at(-1)!.id!;
    const stopped = await first.stop();
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(await stream.rest()).toEqual([]); // ended by the shutdown, after everything it had
    stream.close();

    await adjust('LIVE-A', '+1');

    const second = await startServer(t.url);
    try {
      const again = await SseStream.open(second, '/stock/events?sku=LIVE-A', { token: tokens.read, lastEventId: lastId });
      try {
        const events = await again.untilReady();
        expect(events[0]).toEqual({ event: 'snapshot', data: await stockItem('LIVE-A') });
        expect(events[0].data).toMatchObject({ stock_quantity: 8 });
        expect(events[1]).toMatchObject({ event: 'ready', data: { snapshot: true } });
      } finally {
        again.close();
      }
    } finally {
      expect((await second.stop()).code).toBe(0);
    }
  });

  it('when the server loses its listening session, its streams end, and a reconnect with the old id gets the snapshot', async () => {
    const stream = await SseStream.open(server, '/stock/events?sku=LIVE-B', { token: tokens.read });
    const lastId = (await stream.untilReady()).at(-1)!.id!;
    const [{ terminated }] = await t.sql`SELECT count(*)::int AS terminated FROM (
        SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'stockctl-serve-listen') x`;
    expect(terminated).toBe(1);
    expect(await stream.rest()).toEqual([]);
    stream.close();
    await adjust('LIVE-B', '+1'); // changes made while nobody listened

    const again = await SseStream.open(server, '/stock/events?sku=LIVE-B', { token: tokens.read, lastEventId: lastId });
    try {
      expect(await again.untilReady()).toEqual([
        { event: 'snapshot', data: await stockItem('LIVE-B') },
        { event: 'ready', id: expect.not.stringMatching(new RegExp(`^${lastId.split('-')[0]}-`)), data: { snapshot: true, items: 1 } },
      ]);
      await adjust('LIVE-B', '-1');
      expect(await again.next()).toEqual({ event: 'stock', id: expect.stringMatching(EVENT_ID), data: await stockEvent('LIVE-B') });
    } finally {
      again.close();
    }
  });

  it('stock --watch --json prints the rows first, the same items as stock --json, then one line per change', async () => {
    const watch = startCli(['stock', 'LIVE-A', 'LIVE-B', '--watch', '--json'], { databaseUrl: t.url });
    try {
      await watch.waitForStdout(/"sku":"LIVE-B".*\n/);
      await adjust('LIVE-B', '-1');
      await watch.waitForStdout(/"stock_quantity":6/);
    } finally {
      watch.child.kill('SIGINT');
    }
    const res = await watch.result;
    expect(res.code, res.stderr).toBe(130);
    const lines = res.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toEqual([
      { ...(await stockItem('LIVE-A')) },
      expect.objectContaining({ sku: 'LIVE-B', stock_quantity: 7 }),
      await stockItem('LIVE-B'),
    ]);
  });
});

describe('access ends the stream', () => {
  it('once `token revoke` has returned, the open stream carries nothing more and ends', async () => {
    const revoked = await token('live-revoked');
    const stream = await SseStream.open(server, '/stock/events?sku=LIVE-A', { token: revoked });
    await stream.untilReady();
    expect((await t.cli(['token', 'revoke', 'live-revoked'])).code).toBe(0);
    await adjust('LIVE-A', '+1'); // committed after the revoke
    expect(await stream.rest()).toEqual([]);
    stream.close();
    const again = await SseStream.open(server, '/stock/events?sku=LIVE-A', { token: revoked });
    expect(again.status).toBe(401);
    expect(again.body).toMatchObject({ code: 'unauthorized' });
  });

  it('a token given another role ends its streams; a role that still reads may stream again', async () => {
    const changed = await token('live-role-change', 'support');
    const stream = await SseStream.open(server, '/stock/events?sku=LIVE-A', { token: changed });
    await stream.untilReady();
    await t.sql`UPDATE api_tokens SET role = 'shop' WHERE name = 'live-role-change'`;
    await adjust('LIVE-A', '+1');
    expect(await stream.rest()).toEqual([]);
    stream.close();
    const again = await SseStream.open(server, '/stock/events?sku=LIVE-A', { token: changed });
    expect(again.status).toBe(200);
    again.close();
  });
});

describe('bounded', () => {
  it('HEAD answers the headers at once; an unknown SKU is a 404, as on GET /stock', async () => {
    const head = await fetch(`${server.url}/stock/events?sku=LIVE-A`, { method: 'HEAD', headers: { authorization: `Bearer ${tokens.read}` } });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const headUnknown = await fetch(`${server.url}/stock/events?sku=NOPE`, { method: 'HEAD', headers: { authorization: `Bearer ${tokens.read}` } });
    expect(headUnknown.status).toBe(404);

    const unknown = await SseStream.open(server, '/stock/events?sku=LIVE-A&sku=NOPE', { token: tokens.read });
    expect(unknown.status).toBe(404);
    const listed = await api(server, 'GET', '/stock?sku=LIVE-A&sku=NOPE', { token: tokens.read });
    expect(listed.status).toBe(404);
    // The same problem as GET /stock gives, but for where it was asked (and its request's own id).
    const { instance: _instance, request_id: _requestId, ...same } = listed.body;
    expect(unknown.body).toMatchObject({ ...same, instance: '/stock/events' });
    expect(unknown.body).toMatchObject({ code: 'sku_not_found' });
  });

  it('one stream past --max-streams gets 503 with Retry-After; a place given back is taken again', async () => {
    const capped = await startServer(t.url, ['--max-streams', '1']);
    const log = serverLog(capped);
    try {
      const first = await SseStream.open(capped, '/stock/events?sku=LIVE-A', { token: tokens.read });
      await first.untilReady();
      const refused = await SseStream.open(capped, '/stock/events?sku=LIVE-A', { token: tokens.read });
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('5');
      expect(refused.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(refused.body).toMatchObject({ status: 503, code: 'too_many_streams' });
      // Other routes do not count against it.
      expect((await api(capped, 'GET', '/stock?sku=LIVE-A', { token: tokens.read })).status).toBe(200);
      first.close();
      await log.waitFor((l) => l.url === '/stock/events?sku=LIVE-A' && l.status === 200);
      const second = await SseStream.open(capped, '/stock/events?sku=LIVE-A', { token: tokens.read });
      expect(second.status).toBe(200);
      second.close();
    } finally {
      expect((await capped.stop()).code).toBe(0);
    }
  });

  it('a client that does not read is dropped once it holds 256 KiB; its place is free again, and it reconnects to a snapshot', async () => {
    // A catalogue whose snapshot (about 6 MB) fills the kernel's socket buffers of a client
    // that never reads, so that what follows has to wait in the server.
    const big: TestDatabase = await t.createDatabase();
    await big.sql`INSERT INTO products (sku, name, price) SELECT 'BULK-' || i, repeat('n', 180) || i, 100 FROM generate_series(1, 20000) i`;
    await big.sql`INSERT INTO stock_levels (sku, location, product_id) SELECT sku, 'default', product_id FROM products WHERE sku LIKE 'BULK-%'`;
    const reader = await token('bulk-reader', 'read', big.url);
    const bounded = await startServer(big.url, ['--max-streams', '1']);
    const log = serverLog(bounded);
    const socket = net.connect(Number(new URL(bounded.url).port), '127.0.0.1');
    try {
      socket.write(`GET /stock/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${reader}\r\n\r\n`);
      // The status line arrives once the stream is on the feed; then the client stops reading.
      const head = await new Promise<string>((resolve) => socket.once('data', (chunk) => resolve(chunk.toString())));
      socket.pause();
      expect(head).toMatch(/^HTTP\/1\.1 200/);

      // 20,000 changes (about 5 MB of events) in one statement, for the stream to hold.
      await transaction(big.db, (tx) =>
        applyStockChanges(
          tx,
          Array.from({ length: 20000 }, (_, i) => ({ sku: `BULK-${i + 1}`, location: 'default', stockDelta: 1, reservedDelta: 0, kind: 'adjust' as const })),
          'test',
        ),
      );
      const dropped = await log.waitFor((l) => l.msg?.startsWith('dropped an event stream'));
      expect(dropped).toMatchObject({ level: 40, actor: 'bulk-reader', limit_bytes: 256 * 1024 });
      // Held when dropped: the limit and at most the one event that went past it.
      expect(dropped.held_bytes).toBeGreaterThan(256 * 1024);
      expect(dropped.held_bytes).toBeLessThan(256 * 1024 + 1024);
      await log.waitFor((l) => l.url === '/stock/events' && l.msg === 'request');

      const again = await SseStream.open(bounded, '/stock/events?sku=BULK-7', { token: reader });
      try {
        expect(again.status).toBe(200);
        expect(await again.untilReady()).toEqual([
          { event: 'snapshot', data: expect.objectContaining({ sku: 'BULK-7', stock_quantity: 1, version: 1 }) },
          { event: 'ready', id: expect.stringMatching(EVENT_ID), data: { snapshot: true, items: 1 } },
        ]);
      } finally {
        again.close();
      }
    } finally {
      socket.destroy();
      expect((await bounded.stop()).code).toBe(0);
    }
  });
});
