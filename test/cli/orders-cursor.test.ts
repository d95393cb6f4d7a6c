/**
 * `orders list --cursor` and `GET /orders?cursor=` page by the values the list is sorted
 * by (created_at, then order id), not by looking the last order up: the next page is
 * right when that order has been deleted since (`loadtest --cleanup`), exact to the
 * microsecond, whatever the session's time zone. A cursor that is not a next_cursor is
 * exit 2 / 422 with one sentence.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCursor } from '../../src/engine/queries.js';
import { useTestDatabase } from '../helpers/db.js';
import { api, startServer, type RunningServer } from '../server/_server.js';

const t = useTestDatabase();

type Page = { orders: { order_id: string; ref: string | null; created_at: string }[]; next_cursor: string | null };
type ErrorDocument = { error: { code: string; message: string } };

/**
 * Ten orders, newest first as the list shows them: c-1 .. c-10. Three share one
 * created_at (listed by id), two are a microsecond apart (the same millisecond).
 */
const TIMES = [
  '2030-01-01 12:00:10.000000+00', // c-1
  '2030-01-01 12:00:09.000002+00', // c-2
  '2030-01-01 12:00:09.000001+00', // c-3: one microsecond older than c-2
  '2030-01-01 12:00:08.500000+00', // c-4, c-5, c-6: one instant, ordered by id
  '2030-01-01 12:00:08.500000+00',
  '2030-01-01 12:00:08.500000+00',
  '2030-01-01 12:00:07.000000+00', // c-7
  '2030-01-01 12:00:06.000000+00', // c-8
  '2030-01-01 12:00:05.000000+00', // c-9
  '2030-01-01 12:00:04.000000+00', // c-10
];
const REFS = TIMES.map((_, i) => `c-${i + 1}`);

/** The refs in list order, as the database sorts them (created_at DESC, order_id). */
let expected: string[] = [];

/** Test order c-N, made (or made again, after a test deleted it) as it always is. */
async function insertOrder(ref: string): Promise<void> {
  const i = REFS.indexOf(ref);
  // Ids ascending with N: at the shared instant, c-4 < c-5 < c-6 by id.
  const id = `00000000-0000-4000-8000-${String(i + 1).padStart(12, '0')}`;
  await t.sql`
    INSERT INTO orders (order_id, ref, status, payment_status, subtotal, total, item_count, strategy, created_by, created_at, cancelled_at)
    VALUES (${id}, ${ref}, 'cancelled', 'void', 0, 0, 0, 'guarded', 'cursor-test', ${TIMES[i]}::timestamptz, ${TIMES[i]}::timestamptz)`;
}
const restore = insertOrder;

async function insertOrders(): Promise<void> {
  for (const ref of REFS) await insertOrder(ref);
  const rows = await t.sql<{ ref: string }[]>`SELECT ref FROM orders WHERE created_by = 'cursor-test' ORDER BY created_at DESC, order_id`;
  expected = rows.map((r) => r.ref);
  expect(expected).toEqual(REFS);
}

async function listPage(limit: number, cursor?: string): Promise<Page> {
  const res = await t.cliJson<Page>(['orders', 'list', '--limit', String(limit), ...(cursor ? ['--cursor', cursor] : [])]);
  expect(res.code, res.stdout + res.stderr).toBe(0);
  return res.json;
}

async function allPages(limit: number): Promise<{ refs: string[]; cursors: string[] }> {
  const refs: string[] = [];
  const cursors: string[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await listPage(limit, cursor);
    refs.push(...page.orders.map((o) => o.ref!));
    if (page.next_cursor === null) return { refs, cursors };
    cursors.push(page.next_cursor);
    cursor = page.next_cursor;
  }
}

beforeAll(insertOrders);

describe('orders list --cursor', () => {
  it('pages through every order exactly once, ties by id and microseconds included', async () => {
    for (const limit of [1, 2, 3, 4]) {
      const { refs, cursors } = await allPages(limit);
      expect(refs, `--limit ${limit}`).toEqual(expected);
      for (const c of cursors) expect(c).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
    }
  });

  it('gives the right next page after the order the cursor was taken at is deleted', async () => {
    // Anchored on c-5, in the middle of the three orders of one instant.
    const first = await listPage(5);
    expect(first.orders.map((o) => o.ref)).toEqual(REFS.slice(0, 5));
    const before = await listPage(3, first.next_cursor!);
    expect(before.orders.map((o) => o.ref)).toEqual(['c-6', 'c-7', 'c-8']);

    await t.sql`DELETE FROM orders WHERE ref = 'c-5'`;
    try {
      const after = await listPage(3, first.next_cursor!);
      expect(after).toEqual(before);

      const human = await t.cli(['orders', 'list', '--limit', '3', '--cursor', first.next_cursor!]);
      expect(human.code, human.stderr).toBe(0);
      expect(human.stdout).not.toContain('No orders match');
      for (const ref of ['c-6', 'c-7', 'c-8']) expect(human.stdout).toContain(ref);
    } finally {
      await restore('c-5');
    }
  });

  it('keeps microseconds: a cursor at c-2 still lists c-3, one microsecond older', async () => {
    const first = await listPage(2);
    expect(first.orders.map((o) => o.ref)).toEqual(['c-1', 'c-2']);
    await t.sql`DELETE FROM orders WHERE ref = 'c-2'`;
    try {
      const next = await listPage(1, first.next_cursor!);
      expect(next.orders.map((o) => o.ref)).toEqual(['c-3']);
    } finally {
      await restore('c-2');
    }
  });

  it('a well-formed cursor that names no order lists what is older than its place', async () => {
    const between = encodeCursor({ createdAt: '2030-01-01T12:00:07.500000Z', orderId: '00000000-0000-4000-8000-000000000000' });
    const page = await listPage(10, between);
    expect(page.orders.map((o) => o.ref)).toEqual(['c-7', 'c-8', 'c-9', 'c-10']);
    expect(page.next_cursor).toBeNull();
  });

  it('does not depend on the session time zone', async () => {
    const first = await listPage(3);
    await t.sql.unsafe(`ALTER DATABASE ${t.name} SET timezone TO 'Asia/Kathmandu'`);
    try {
      const next = await listPage(3, first.next_cursor!);
      expect(next.orders.map((o) => o.ref)).toEqual(['c-4', 'c-5', 'c-6']);
      const again = await listPage(3);
      expect(again.next_cursor).toBe(first.next_cursor);
    } finally {
      await t.sql.unsafe(`ALTER DATABASE ${t.name} RESET timezone`);
    }
  });

  it('refuses a cursor that is not a next_cursor: exit 2, one sentence, nothing listed', async () => {
    const oldFormat = Buffer.from('00000000000040008000000000000001', 'hex').toString('base64url');
    const cases: [string, RegExp][] = [
      ['x', /^Invalid cursor: pass the next_cursor of the previous page unchanged\.$/],
      ['!!!!', /^Invalid cursor/],
      [`${encodeCursor({ createdAt: '2030-01-01T12:00:07.500000Z', orderId: '00000000-0000-4000-8000-000000000000' })}AA`, /^Invalid cursor/],
      [oldFormat, /older stockctl.*list again from the first page\.$/],
    ];
    for (const [cursor, sentence] of cases) {
      const human = await t.cli(['orders', 'list', '--cursor', cursor]);
      expect(human.code, `${cursor}: ${human.stderr}`).toBe(2);
      expect(human.stdout).toBe('');
      expect(human.stderr).toMatch(/^error: /);
      expect(human.stderr.replace(/^error: /, '').trim()).toMatch(sentence);
      const json = await t.cliJson<ErrorDocument>(['orders', 'list', '--cursor', cursor]);
      expect(json.code).toBe(2);
      expect(json.json.error.code).toBe('invalid_cursor');
    }
  });
});

describe('GET /orders?cursor=', () => {
  let server: RunningServer;
  let token: string;

  beforeAll(async () => {
    const created = await t.cliJson<{ token: string }>(['token', 'create', 'cursor-reader', '--role', 'read']);
    expect(created.code, created.stdout).toBe(0);
    token = created.json.token;
    server = await startServer(t.url);
  });

  afterAll(async () => {
    const res = await server?.stop();
    if (res) expect(res.code, res.stderr).toBe(0);
  });

  const get = (query: string) => api<Page & { code?: string; detail?: string }>(server, 'GET', `/orders?${query}`, { token });

  it('gives the right next page after the order the cursor was taken at is deleted', async () => {
    const first = await get('limit=4');
    expect(first.status).toBe(200);
    expect(first.body.orders.map((o) => o.ref)).toEqual(REFS.slice(0, 4));
    const before = await get(`limit=4&cursor=${first.body.next_cursor}`);
    expect(before.body.orders.map((o) => o.ref)).toEqual(['c-5', 'c-6', 'c-7', 'c-8']);

    await t.sql`DELETE FROM orders WHERE ref = 'c-4'`;
    try {
      const after = await get(`limit=4&cursor=${first.body.next_cursor}`);
      expect(after.status).toBe(200);
      expect(after.body).toEqual(before.body);
      // The CLI and the API take each other's cursors.
      const cli = await listPage(4, first.body.next_cursor!);
      expect(cli).toEqual(before.body);
    } finally {
      await restore('c-4');
    }
  });

  it('answers a cursor that is not a next_cursor with 422 invalid_cursor', async () => {
    const oldFormat = Buffer.from('00000000000040008000000000000001', 'hex').toString('base64url');
    for (const cursor of ['x', 'AAAA', oldFormat]) {
      const res = await get(`cursor=${cursor}`);
      expect(res.status, res.text).toBe(422);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(res.body).toMatchObject({ code: 'invalid_cursor', status: 422 });
      expect(res.body.detail).toMatch(/cursor/);
    }
  });
});
