/**
 * Stock in several locations raced by separate `stockctl` processes started together
 * (test/helpers/start-barrier.mjs): the last units spread over two locations, pay and
 * sweep at an order's deadline when the order is split over two locations, and a
 * transfer out of a location racing reservations there. Exact counts.
 */
import { describe, expect, it } from 'vitest';
import { runCliTogether } from '../helpers/cli.js';
import { useTestDatabase } from '../helpers/db.js';
import { countOutcomes, ensureLocations, levelsOf, locationViolations, outcomeOf, seedSku } from '../engine/_locations.js';
import { cancelOrder, reserveOrder } from '../../src/engine/orders.js';
import { ACTOR, SETTINGS, withConnectionBudget } from '../engine/_support.js';

const t = useTestDatabase();
const LOCATIONS = [
  { code: 'A', priority: 20 },
  { code: 'B', priority: 10 },
];

describe('the last units spread over two locations (A=1, B=1), 50 buyers as separate processes', () => {
  // locking and optimistic: test/engine/locations-contention.test.ts, on separate connections.
  for (const strategy of ['guarded', 'batched'] as const) {
    it(`--strategy ${strategy}: exactly 2 exit 0 (one at A, one at B), 48 exit 3; verify exit 0`, async () => {
      await ensureLocations(t.db, t.sql, LOCATIONS);
      const sku = `LAST-AB-${strategy}`;
      await seedSku(t.db, sku, { A: 1, B: 1 });
      const results = await withConnectionBudget('exclusive', () =>
        runCliTogether(
          Array.from({ length: 50 }, (_, i) => ({
            args: ['reserve', `${sku}:1`, '--strategy', strategy, '--customer', `p-${i}`, '--json'],
            opts: { databaseUrl: t.url, timeoutMs: 90_000 },
          })),
        ),
      );
      expect(countOutcomes(results)).toEqual({ 'exit 0': 2, 'exit 3 insufficient_stock': 48 });
      const won = results.filter((r) => r.code === 0).map((r) => JSON.parse(r.stdout) as { items: { allocations: { location: string }[] }[] });
      expect(won.map((w) => w.items[0].allocations.map((a) => a.location).join(',')).sort()).toEqual(['A', 'B']);
      expect(await levelsOf(t.sql, sku)).toEqual({ A: { stock: 1, reserved: 1, incoming: 0 }, B: { stock: 1, reserved: 1, incoming: 0 } });
      expect(await locationViolations(t.db, t.sql)).toEqual([]);
      expect((await t.cli(['verify'])).code).toBe(0);
    }, 180_000);
  }
});

describe('pay and sweep racing at the deadline of an order split over two locations', () => {
  it('each order ends exactly one of paid (both levels sold) or expired (both levels released), never both', async () => {
    await ensureLocations(t.db, t.sql, LOCATIONS);
    const ROUNDS = 10;
    const PER_ROUND = 3;
    const sku = 'DEADLINE';
    const stock = ROUNDS * PER_ROUND;
    await seedSku(t.db, sku, { A: stock, B: stock });
    const orders: { id: string; ref: string }[] = [];
    const payOutcomes: Record<string, number> = {};
    // How long a released `pay` takes to reach its order (starting node, connecting): the
    // releases are aimed that much before the deadline, so that they land on both sides of it.
    const started = Date.now();
    let go = 0;
    const [probe] = await runCliTogether([{ args: ['pay', 'no-such-order', '--json'], opts: { databaseUrl: t.url } }], async () => (go = Date.now()));
    expect(outcomeOf(probe)).toBe('exit 4 order_not_found');
    const lead = Math.round((Date.now() - go) * 0.8);
    console.info(`[locations-races] a released pay answers in ${Date.now() - go} ms (${go - started} ms to boot)`);

    for (let round = 0; round < ROUNDS; round++) {
      const refs = Array.from({ length: PER_ROUND }, (_, k) => `deadline-${round}-${k}`);
      const results = await runCliTogether(
        [
          ...refs.map((ref) => ({ args: ['pay', ref, '--json'], opts: { databaseUrl: t.url } })),
          { args: ['sweep', '--json'], opts: { databaseUrl: t.url } },
          { args: ['sweep', '--batch-size', '1', '--json'], opts: { databaseUrl: t.url } },
        ],
        async () => {
          // The processes have booted: now the orders, each of 2 units split 1 at A, 1 at B
          // (bystanders hold all but one unit at each level while it is made), 1 s windows.
          let deadline = 0;
          for (const ref of refs) {
            const levels = await levelsOf(t.sql, sku);
            const held: string[] = [];
            for (const location of ['A', 'B']) {
              const free = levels[location].stock - levels[location].reserved;
              if (free > 1) held.push((await reserveOrder(t.db, { lines: [{ sku, quantity: free - 1 }], location, actor: ACTOR }, SETTINGS)).order_id);
            }
            const r = await reserveOrder(t.db, { lines: [{ sku, quantity: 2 }], split: 'units', ref, ttlSeconds: 1, actor: ACTOR }, SETTINGS);
            expect(r.items[0].allocations.map((x) => [x.location, x.quantity])).toEqual([
              ['A', 1],
              ['B', 1],
            ]);
            for (const id of held) await cancelOrder(t.db, { order: id, actor: ACTOR });
            orders.push({ id: r.order_id, ref });
            deadline = Math.max(deadline, Date.parse(r.payment_expires_at));
          }
          // Released so as to land from about 500 ms before the (last) deadline to 200 ms
          // after, by round (five processes start slower than the one probe).
          return deadline - lead + ((round % 5) - 3) * 175;
        },
      );
      for (const r of results.slice(0, PER_ROUND)) {
        const o = outcomeOf(r);
        payOutcomes[o] = (payOutcomes[o] ?? 0) + 1;
        expect(['exit 0', 'exit 5 payment_window_expired', 'exit 5 order_cancelled'], r.stdout).toContain(o);
      }
      for (const r of results.slice(PER_ROUND)) expect(outcomeOf(r), r.stderr).toBe('exit 0');
    }
    console.info(`[locations-races] pay at the deadline of ${ROUNDS * PER_ROUND} split orders: ${JSON.stringify(payOutcomes)}`);
    // Whatever was left past its window goes now.
    expect((await t.cli(['sweep'])).code).toBe(0);

    const states = await t.sql<{ order_id: string; status: string; payment_status: string; converted: number; released: number; active: number }[]>`
      SELECT o.order_id, o.status, o.payment_status,
             count(*) FILTER (WHERE r.status = 'converted')::int AS converted,
             count(*) FILTER (WHERE r.status IN ('expired', 'cancelled'))::int AS released,
             count(*) FILTER (WHERE r.status = 'active')::int AS active
        FROM orders o JOIN stock_reservations r ON r.order_id = o.order_id
       WHERE o.order_id = ANY(${orders.map((o) => o.id)}::uuid[])
       GROUP BY o.order_id, o.status, o.payment_status`;
    expect(states).toHaveLength(orders.length);
    let paid = 0;
    for (const s of states) {
      if (s.status === 'paid') {
        paid++;
        expect(s, 'paid: both levels sold, none released').toMatchObject({ payment_status: 'paid', converted: 2, released: 0, active: 0 });
      } else {
        expect(s, 'expired: both levels released, none sold').toMatchObject({ status: 'cancelled', payment_status: 'expired', converted: 0, released: 2, active: 0 });
      }
    }
    // Per level: each paid order's unit sold once, each expired one's released once.
    const ledger = await t.sql<{ location: string; sales: number; releases: number }[]>`
      SELECT m.location, count(*) FILTER (WHERE m.kind = 'sale')::int AS sales,
             count(*) FILTER (WHERE m.kind IN ('expire', 'release'))::int AS releases
        FROM stock_movements m WHERE m.order_id = ANY(${orders.map((o) => o.id)}::uuid[]) GROUP BY m.location ORDER BY m.location`;
    expect(ledger).toEqual([
      { location: 'A', sales: paid, releases: orders.length - paid },
      { location: 'B', sales: paid, releases: orders.length - paid },
    ]);
    // Each paid order took 1 off hand at A and 1 at B; every expired one gave both back.
    expect(await levelsOf(t.sql, sku)).toEqual({
      A: { stock: stock - paid, reserved: 0, incoming: 0 },
      B: { stock: stock - paid, reserved: 0, incoming: 0 },
    });
    expect(paid).toBe(payOutcomes['exit 0'] ?? 0);
    expect(await locationViolations(t.db, t.sql)).toEqual([]);
    expect((await t.cli(['verify'])).code).toBe(0);
  }, 240_000);
});

describe('a transfer out of A racing reservations at A, as separate processes', () => {
  it('A never sells or sends what it has not got: exact totals, a transfer that would eat reserved units exits 5', async () => {
    await ensureLocations(t.db, t.sql, LOCATIONS);
    const ROUNDS = 4;
    for (let round = 0; round < ROUNDS; round++) {
      const sku = `XFER-RACE-${round}`;
      await seedSku(t.db, sku, { A: 6, B: 0 });
      const reserves = 6;
      const transfers = 3;
      const runs = [
        ...Array.from({ length: reserves }, (_, i) => ({ args: ['reserve', `${sku}:1`, '--location', 'A', '--customer', `r-${i}`, '--json'] })),
        ...Array.from({ length: transfers }, () => ({ args: ['transfer', sku, '2', '--from', 'A', '--to', 'B', '--json'] })),
      ];
      // Interleave them so neither kind is always started first.
      const order = runs.map((r, i) => ({ r, k: (i * 7 + round * 3) % runs.length })).sort((a, b) => a.k - b.k).map((x) => x.r);
      const results = await withConnectionBudget('shared', () => runCliTogether(order.map(({ args }) => ({ args, opts: { databaseUrl: t.url, timeoutMs: 60_000 } }))));
      const reserveResults = results.filter((_, i) => order[i].args[0] === 'reserve');
      const transferResults = results.filter((_, i) => order[i].args[0] === 'transfer');
      const reserved = reserveResults.filter((r) => r.code === 0).length;
      const sent = transferResults.filter((r) => r.code === 0).length;
      for (const r of reserveResults) expect(['exit 0', 'exit 3 insufficient_stock']).toContain(outcomeOf(r));
      for (const r of transferResults) expect(['exit 0', 'exit 5 transfer_exceeds_available']).toContain(outcomeOf(r));
      // Everything asked for (6 + 6) is more than A has (6): what is left could serve no loser.
      expect(reserved + 2 * sent).toBeLessThanOrEqual(6);
      const left = 6 - reserved - 2 * sent;
      if (reserved < reserves) expect(left, 'a reserve was refused while A had a unit').toBe(0);
      if (sent < transfers) expect(left, 'a transfer was refused while A could spare 2').toBeLessThan(2);
      expect(await levelsOf(t.sql, sku)).toEqual({
        A: { stock: 6 - 2 * sent, reserved, incoming: 0 },
        B: { stock: 0, reserved: 0, incoming: 2 * sent },
      });
      const levels = await levelsOf(t.sql, sku);
      expect(levels.A.stock).toBeGreaterThanOrEqual(levels.A.reserved);
    }
    expect(await locationViolations(t.db, t.sql)).toEqual([]);
    expect((await t.cli(['verify'])).code).toBe(0);
  }, 180_000);

  it('a transfer that would take reserved units is refused (exit 5) and changes nothing', async () => {
    await ensureLocations(t.db, t.sql, LOCATIONS);
    await seedSku(t.db, 'XFER-HELD', { A: 3, B: 0 });
    expect((await t.cli(['reserve', 'XFER-HELD:2', '--location', 'A'])).code).toBe(0);
    const before = await levelsOf(t.sql, 'XFER-HELD');
    const r = await t.cliJson<{ error: { code: string; available: number } }>(['transfer', 'XFER-HELD', '2', '--from', 'A', '--to', 'B']);
    expect(r.code).toBe(5);
    expect(r.json.error).toMatchObject({ code: 'transfer_exceeds_available', available: 1 });
    expect(await levelsOf(t.sql, 'XFER-HELD')).toEqual(before);
    const [{ n }] = await t.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM transfers WHERE sku = 'XFER-HELD'`;
    expect(n).toBe(0);
  });
});

describe('transfer receive and cancel', () => {
  interface TransferJson {
    transfer_id: number;
    status: string;
  }

  it('incoming units are never available; receive puts them on hand at B, cancel back at A; ledger rows carry the transfer id', async () => {
    await ensureLocations(t.db, t.sql, LOCATIONS);
    await seedSku(t.db, 'XFER-LIFE', { A: 5, B: 0 });
    const sent = await t.cliJson<TransferJson>(['transfer', 'XFER-LIFE', '3', '--from', 'A', '--to', 'B']);
    expect(sent.code).toBe(0);
    expect(sent.json.status).toBe('in_transit');
    expect(await levelsOf(t.sql, 'XFER-LIFE')).toEqual({ A: { stock: 2, reserved: 0, incoming: 0 }, B: { stock: 0, reserved: 0, incoming: 3 } });
    // B has nothing on hand: 3 incoming sell nothing there, pinned or split.
    expect(outcomeOf(await t.cli(['reserve', 'XFER-LIFE:1', '--location', 'B', '--json']))).toBe('exit 3 insufficient_stock');
    expect(outcomeOf(await t.cli(['reserve', 'XFER-LIFE:3', '--split', 'units', '--json']))).toBe('exit 3 insufficient_stock');
    const shown = await t.cliJson<{ items: { available: number; incoming: number }[] }>(['stock', 'XFER-LIFE']);
    expect(shown.json.items[0]).toMatchObject({ available: 2, incoming: 3 });

    const received = await t.cliJson<TransferJson>(['transfer', 'receive', String(sent.json.transfer_id)]);
    expect(received.code).toBe(0);
    expect(received.json.status).toBe('received');
    expect(await levelsOf(t.sql, 'XFER-LIFE')).toEqual({ A: { stock: 2, reserved: 0, incoming: 0 }, B: { stock: 3, reserved: 0, incoming: 0 } });
    expect(outcomeOf(await t.cli(['reserve', 'XFER-LIFE:1', '--location', 'B', '--json']))).toBe('exit 0');
    // Received is final: receiving again is a replay, cancelling is refused.
    expect((await t.cli(['transfer', 'receive', String(sent.json.transfer_id)])).code).toBe(0);
    expect(outcomeOf(await t.cli(['transfer', 'cancel', String(sent.json.transfer_id), '--json']))).toBe('exit 5 transfer_closed');

    const back = await t.cliJson<TransferJson>(['transfer', 'XFER-LIFE', '2', '--from', 'A', '--to', 'B']);
    expect(await levelsOf(t.sql, 'XFER-LIFE')).toMatchObject({ A: { stock: 0 }, B: { incoming: 2 } });
    const cancelled = await t.cliJson<TransferJson>(['transfer', 'cancel', String(back.json.transfer_id)]);
    expect(cancelled.json.status).toBe('cancelled');
    expect(await levelsOf(t.sql, 'XFER-LIFE')).toEqual({ A: { stock: 2, reserved: 0, incoming: 0 }, B: { stock: 3, reserved: 1, incoming: 0 } });
    expect(outcomeOf(await t.cli(['transfer', 'receive', String(back.json.transfer_id), '--json']))).toBe('exit 5 transfer_closed');

    const ledger = await t.sql<{ kind: string; location: string; sd: number; id: number; transfer_id: number | null }[]>`
      SELECT kind, location, stock_delta AS sd, incoming_delta AS id, transfer_id::int AS transfer_id
        FROM stock_movements WHERE sku = 'XFER-LIFE' AND kind LIKE 'transfer%' ORDER BY movement_id`;
    const a = sent.json.transfer_id;
    const b = back.json.transfer_id;
    const byLocation = (x: { location: string }, y: { location: string }) => (x.location < y.location ? -1 : 1);
    expect(ledger.slice(0, 5)).toEqual([
      { kind: 'transfer_out', location: 'A', sd: -3, id: 0, transfer_id: a },
      { kind: 'transfer_in', location: 'B', sd: 0, id: 3, transfer_id: a },
      { kind: 'transfer_receive', location: 'B', sd: 3, id: -3, transfer_id: a },
      { kind: 'transfer_out', location: 'A', sd: -2, id: 0, transfer_id: b },
      { kind: 'transfer_in', location: 'B', sd: 0, id: 2, transfer_id: b },
    ]);
    // Cancelling writes B's incoming off and A's units back (one statement, either order).
    expect(ledger.slice(5).sort(byLocation)).toEqual([
      { kind: 'transfer_cancel', location: 'A', sd: 2, id: 0, transfer_id: b },
      { kind: 'transfer_cancel', location: 'B', sd: 0, id: -2, transfer_id: b },
    ]);
    expect(await locationViolations(t.db, t.sql)).toEqual([]);
    expect((await t.cli(['verify'])).code).toBe(0);
  });

  it('receive and cancel of one transfer racing as separate processes: exactly one wins, the units land once', async () => {
    await ensureLocations(t.db, t.sql, LOCATIONS);
    for (let round = 0; round < 4; round++) {
      const sku = `XFER-CLOSE-${round}`;
      await seedSku(t.db, sku, { A: 4, B: 0 });
      const sent = await t.cliJson<TransferJson>(['transfer', sku, '4', '--from', 'A', '--to', 'B']);
      const id = String(sent.json.transfer_id);
      const results = await runCliTogether(
        ['receive', 'cancel', 'receive', 'cancel'].map((how) => ({ args: ['transfer', how, id, '--json'], opts: { databaseUrl: t.url } })),
      );
      const [{ status }] = await t.sql<{ status: string }[]>`SELECT status FROM transfers WHERE transfer_id = ${sent.json.transfer_id}`;
      // The winner's kind and its replay exit 0; the other kind is refused.
      const winners = status === 'received' ? ['receive'] : ['cancel'];
      results.forEach((r, i) => {
        const how = ['receive', 'cancel', 'receive', 'cancel'][i];
        expect(outcomeOf(r), how).toBe(winners.includes(how) ? 'exit 0' : 'exit 5 transfer_closed');
      });
      expect(await levelsOf(t.sql, sku)).toEqual(
        status === 'received'
          ? { A: { stock: 0, reserved: 0, incoming: 0 }, B: { stock: 4, reserved: 0, incoming: 0 } }
          : { A: { stock: 4, reserved: 0, incoming: 0 }, B: { stock: 0, reserved: 0, incoming: 0 } },
      );
    }
    expect(await locationViolations(t.db, t.sql)).toEqual([]);
  }, 120_000);
});
