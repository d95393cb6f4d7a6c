/**
 * The live stock feed's contract with the write path (src/engine/stock-events.ts): a
 * stock change sends no NOTIFY while nobody listens, one per changed row while someone
 * does, and a writer that changed stock before a listener registered is waited for, so
 * that its change is in the listener's snapshot.
 */
import type postgres from 'postgres';
import { afterEach, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { addProduct, changeStock, listLevels, listStock, type LevelItem } from '../../src/engine/catalogue.js';
import { openStockFeed, STOCK_CHANNEL, type StockEvent, type StockFeed } from '../../src/engine/stock-events.js';
import { applyStockChanges } from '../../src/engine/stock.js';
import { ACTOR } from './_support.js';

const t = useTestDatabase();
const feeds: StockFeed[] = [];
const listens: { unlisten(): Promise<void> }[] = [];

afterEach(async () => {
  await Promise.all(feeds.splice(0).map((f) => f.close()));
  await Promise.all(listens.splice(0).map((l) => l.unlisten()));
});

/**
 * Everything said on the stock channel, heard on a session that does not register. What
 * the channel carried up to a moment is read by sending a marker: one session hears the
 * channel in commit order, so every NOTIFY committed before the marker arrives before it.
 */
async function channelTap() {
  const heard: string[] = [];
  let waiting: { marker: string; resolve: () => void } | undefined;
  const listen = await t.sql.listen(STOCK_CHANNEL, (payload) => {
    if (waiting && payload === waiting.marker) waiting.resolve();
    else heard.push(payload);
  });
  listens.push(listen);
  return {
    async upToNow(): Promise<any[]> {
      const marker = JSON.stringify({ marker: Math.random() });
      const arrived = new Promise<void>((resolve) => (waiting = { marker, resolve }));
      await t.sql`SELECT pg_notify(${STOCK_CHANNEL}, ${marker})`;
      await arrived;
      return heard.splice(0).map((p) => JSON.parse(p));
    },
  };
}

/** Poll until `done` (for at most 10 s: then the assertion after it says what was missing). */
async function until(done: () => boolean) {
  const deadline = Date.now() + 10_000;
  while (!done() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
}

const adjust = (sku: string, delta: number) => changeStock(t.db, { sku, delta, actor: ACTOR });

/** What a change of this level says on the channel: the level, with whether its location sells. */
const notice = ({ active, ...level }: LevelItem) => ({ ...level, location_active: active });

function feed(): StockFeed {
  const opened = openStockFeed({ url: t.url, application: 'stockctl-feed-test', lingerMs: 60_000 });
  feeds.push(opened);
  return opened;
}

describe('the write path pays for the feed only while someone listens', () => {
  it('no NOTIFY while nobody listens; one per changed row while a subscriber is on a feed; none again once it closed', async () => {
    await addProduct(t.db, { sku: 'FEED-A', name: 'a', stock: 5, actor: ACTOR });
    await addProduct(t.db, { sku: 'FEED-B', name: 'b', stock: 5, actor: ACTOR });
    const tap = await channelTap();
    await adjust('FEED-A', 1);
    expect(await tap.upToNow()).toEqual([]);

    const live = feed();
    const heard: StockEvent[] = [];
    const subscription = await live.subscribe({ onEvent: (e) => heard.push(e), onEnd: () => {} });
    await t.sql.begin(async (tx) => {
      await applyStockChanges(tx as unknown as postgres.Sql, [
        { sku: 'FEED-A', location: 'default', stockDelta: 1, reservedDelta: 0, kind: 'adjust' },
        { sku: 'FEED-B', location: 'default', stockDelta: -1, reservedDelta: 0, kind: 'adjust' },
      ], ACTOR);
    });
    const [a, b] = await listStock(t.db, { skus: ['FEED-A', 'FEED-B'] });
    // One NOTIFY per changed level, carrying that level (one location: the SKU's totals, at 'default').
    const levels = await listLevels(t.db, { skus: ['FEED-A', 'FEED-B'] });
    expect(levels.map(notice)).toEqual([
      { sku: 'FEED-A', name: 'a', location: 'default', location_active: true, stock_quantity: 7, reserved_stock: 0, incoming: 0, available: 7, version: a.version, in_stock: true },
      { sku: 'FEED-B', name: 'b', location: 'default', location_active: true, stock_quantity: 4, reserved_stock: 0, incoming: 0, available: 4, version: b.version, in_stock: true },
    ]);
    expect(await tap.upToNow()).toEqual(levels.map(notice));
    // The feed hears on a session of its own, which may be a moment behind the tap's.
    await until(() => heard.length >= 2);
    expect(heard.map((e) => e.item)).toEqual([a, b]);
    expect(heard.map((e) => e.id)).toEqual([`${subscription.id.split('-')[0]}-1`, `${subscription.id.split('-')[0]}-2`]);

    await live.close();
    expect(await t.sql`SELECT count(*)::int AS n FROM stock_listeners`).toEqual([{ n: 0 }]);
    expect(await t.sql`SELECT last_value::int AS n FROM stock_listeners_live`).toEqual([{ n: 0 }]);
    await adjust('FEED-A', 1);
    expect(await tap.upToNow()).toEqual([]);
  });

  it('a listener killed before it left costs writers a NOTIFY until the next sweep, which forgets it', async () => {
    await addProduct(t.db, { sku: 'FEED-C', name: 'c', stock: 5, actor: ACTOR });
    // What a process killed while it listened leaves behind: its row, and the count of it.
    await t.sql`INSERT INTO stock_listeners (pid, backend_start, application) VALUES (2147483000, now(), 'killed')`;
    await t.sql`SELECT setval('stock_listeners_live', 1, true)`;
    const tap = await channelTap();
    await adjust('FEED-C', 1);
    expect(await tap.upToNow()).toMatchObject([{ sku: 'FEED-C', location: 'default', location_active: true, stock_quantity: 6, incoming: 0 }]);
    const swept = await t.cli(['sweep', '--json']);
    expect(swept.code, swept.stderr).toBe(0);
    expect(await t.sql`SELECT count(*)::int AS n FROM stock_listeners`).toEqual([{ n: 0 }]);
    await adjust('FEED-C', 1);
    expect(await tap.upToNow()).toEqual([]);
    // A listener registering forgets the dead ones too, and counts only itself.
    await t.sql`INSERT INTO stock_listeners (pid, backend_start, application) VALUES (2147483000, now(), 'killed')`;
    await feed().subscribe({ onEvent: () => {}, onEnd: () => {} });
    expect(await t.sql`SELECT application FROM stock_listeners`).toEqual([{ application: 'stockctl-feed-test' }]);
    expect(await t.sql`SELECT last_value::int AS n FROM stock_listeners_live`).toEqual([{ n: 1 }]);
  });

  it('a writer that changed stock before the listener registered is waited for: its change is in the snapshot', async () => {
    await addProduct(t.db, { sku: 'FEED-D', name: 'd', stock: 5, actor: ACTOR });
    const tap = await channelTap();
    const writer = await t.sql.reserve();
    try {
      await writer`BEGIN`;
      // Changed, so read the count of listeners (none yet): this change sends no NOTIFY.
      await applyStockChanges(writer as unknown as postgres.Sql, [{ sku: 'FEED-D', location: 'default', stockDelta: 2, reservedDelta: 0, kind: 'adjust' }], ACTOR);
      let joined = false;
      const heard: StockEvent[] = [];
      const subscribing = feed()
        .subscribe({ skus: new Set(['FEED-D']), onEvent: (e) => heard.push(e), onEnd: () => {} })
        .then((s) => ((joined = true), s));
      // Registered (writers from now on notify), then waiting for the writer above to end
      // (or, were it not waiting, joined already).
      while (!joined) {
        const [{ n }] = await t.sql`SELECT count(*)::int AS n FROM pg_stat_activity
                                     WHERE application_name = 'stockctl-feed-test' AND query LIKE '%backend_xid::text = ANY%'`;
        if (n === 1) break;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      expect(await t.sql`SELECT count(*)::int AS n FROM stock_listeners`).toEqual([{ n: 1 }]);
      expect(joined).toBe(false);
      await writer`COMMIT`;
      await subscribing;
      const [snapshot] = await listStock(t.db, { skus: ['FEED-D'] });
      expect(snapshot).toMatchObject({ stock_quantity: 7, version: 2 });
      expect(await tap.upToNow()).toEqual([]);
      expect(heard).toEqual([]);
    } finally {
      writer.release();
    }
  });
});
