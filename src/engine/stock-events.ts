/**
 * Live stock: the one feed behind `serve`'s GET /stock/events and `stock --watch`. List,
 * then watch: a subscriber joins the feed, then reads the current state (its snapshot),
 * then gets every change committed after that, each with a position it can resume from.
 *
 * How a change reaches us. The stock statement (src/engine/stock.ts) sends a NOTIFY of
 * each row it changed on STOCK_CHANNEL, delivered only if and when it commits, but only
 * while the `stock_listeners_live` count is above 0: a notifying commit takes a lock that
 * every other notifying commit waits for, so nobody listening must cost nothing. A process
 * listens on one session of its own, and registers it (a row in `stock_listeners`, and
 * the count of live rows set under one lock) while it has subscribers, and for LINGER_MS
 * after the last one left. The count is a sequence: a writer reads it as it is at that
 * moment, whatever its own snapshot, at the cost of reading one page.
 *
 * Why no change is lost (the subscription race). A writer reads the count after its
 * statement changed its first row, so when it reads, its transaction already has its id.
 * A listener LISTENs, sets the count, then waits until every transaction of its database
 * that had an id once the count was set has ended, and only then lets anyone subscribe.
 * Take a change that a subscriber's snapshot does not show: its writer commits after the
 * snapshot. If the writer read the count after it was set, it notified. If it read it
 * before, it had its id before the count was set and was still running when the listener
 * looked, so the listener waited for it to end, before the snapshot, which then shows it.
 * Either way the change arrives. Versions only grow, so a change also in the snapshot is
 * told apart (the subscriber keeps the highest version per SKU).
 *
 * Levels and totals. A writer announces each level (SKU at a location) it changed, as its
 * own statement saw it; a SKU's totals are not in the notice, since that statement's
 * snapshot can miss a commit on another level of the SKU. The feed keeps every level it
 * follows, read once its session listens and has waited out older writers (the same
 * argument as above: a change the read misses arrives on the channel after it), merged
 * with what the channel says by level version, and sums them into the SKU's totals, in
 * commit order. A statement that changes several levels of a SKU (a split reserve, a
 * transfer) says how many: the totals go out once all of them are heard, so no event
 * shows a state that no commit had.
 *
 * A listener killed before it left keeps the count up: writers notify for nobody (a cost,
 * never a loss) until the next listener registers or leaves, or `sweep` runs, each of
 * which counts the live rows again.
 *
 * Access ends the stream. A token revoked or changed notifies on the same channel
 * (a trigger on api_tokens), and one session hears the channel in commit order: nothing
 * committed after a revoke reaches a subscriber of that token after it ended.
 */
import { randomBytes } from 'node:crypto';
import type postgres from 'postgres';
import { openClient, type ClientOptions } from '../db/connect.js';
import { publicMessage, toDomainError } from '../db/errors.js';
import { DatabaseUnavailableError, StockctlError } from '../errors.js';
import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { execute, transaction } from '../db/query.js';
import { levelAvailable, totalsOf, type StockItem, type StockLevelState } from './stock-item.js';

export const STOCK_CHANNEL = 'stockctl_stock';

/** How long a registration outlives its last subscriber, so that a reconnecting client finds it still there. */
export const LINGER_MS = 30_000;
/** Changes kept for clients that come back with the id of the last one they saw (about 3 MB). */
export const REPLAY_EVENTS = 10_000;
/** How often the listening session is asked whether it is still there. */
const HEARTBEAT_MS = 15_000;

/** A changed level as the stock statement announces it (src/engine/stock.ts). */
export interface LevelNotice {
  sku: string;
  name: string;
  location: string;
  location_active: boolean;
  stock_quantity: number;
  reserved_stock: number;
  incoming: number;
  version: number;
  /** How many of this SKU's levels the same statement changed (1 when absent). */
  changed_levels?: number;
}

/** What arrives on STOCK_CHANNEL: a changed stock level, or a token that changed (revoked, another role). */
export type FeedNotice = { kind: 'level'; level: LevelNotice } | { kind: 'token'; name: string };

/** Parse one notification's payload; a malformed one (never sent by stockctl) is dropped. */
export function parseFeedNotification(payload: string): FeedNotice | undefined {
  try {
    const value = JSON.parse(payload) as Partial<LevelNotice> & { token?: unknown };
    if (typeof value?.token === 'string') return { kind: 'token', name: value.token };
    if (typeof value?.sku === 'string' && typeof value.location === 'string' && typeof value.version === 'number') {
      return { kind: 'level', level: value as LevelNotice };
    }
  } catch {
    // not ours
  }
  return undefined;
}

/** One committed change of one stock level, at its place in this feed. */
export interface StockEvent {
  /** Where it is in the feed: `<epoch>-<seq>`, what SSE calls the event id. */
  id: string;
  seq: number;
  /** The SKU's totals once the change committed (a `stock --json` item). */
  item: StockItem;
  /** The level that changed. */
  level: StockLevelState;
}

/** Why a subscription ended: its token changed, the feed lost changes (listen again), or the feed closed. */
export type EndReason = 'token' | 'gap' | 'closed';

export interface Subscriber {
  /** Only these SKUs (all when absent). */
  skus?: ReadonlySet<string>;
  /** The API token it streams with: a change to that token ends the subscription. */
  token?: string;
  onEvent(event: StockEvent): void;
  /** Called once, synchronously, before any later notification is handled. */
  onEnd(reason: EndReason): void;
}

export interface Subscription {
  /** The position it starts after: every change after it reaches onEvent. */
  id: string;
  /**
   * With `resumeAfter`: the changes after that position up to `id` (for the subscriber's
   * SKUs), or undefined when this feed cannot tell them all (another epoch, too old, not
   * ours): then read the snapshot.
   */
  replay?: StockEvent[];
  /** Leave the feed (no onEnd). */
  close(): void;
}

export interface StockFeed {
  /**
   * Join the feed, once its session listens and has waited out older writers (up to
   * `waitMs`, else a DatabaseUnavailableError). Read the snapshot only after this.
   */
  subscribe(subscriber: Subscriber, opts?: { resumeAfter?: string; waitMs?: number }): Promise<Subscription>;
  /** End every subscription ('closed'), unregister, close the session. */
  close(): Promise<void>;
}

export interface StockFeedOptions {
  /** A PostgreSQL session of its own (LISTEN needs one): the server itself, or a pool in session mode. */
  url: string;
  /** application_name of the listening session. */
  application: string;
  client?: Pick<ClientOptions, 'statementTimeoutS' | 'sessionSettings'>;
  lingerMs?: number;
  replayEvents?: number;
  /** Told when the listening session was lost (its subscribers end with 'gap'). */
  onLost?: (reason: string) => void;
  /** Follow only these SKUs (all when absent): the feed holds each followed level in memory. */
  skus?: readonly string[];
}

/** The levels of the SKUs a feed follows, and the notices of a statement not yet all heard. */
interface LevelBook {
  skus: Map<string, { name: string; levels: Map<string, StockLevelState> }>;
  /** Until the levels are read: notices heard meanwhile, merged after the read. */
  early?: LevelNotice[];
  /** One statement's notices of one SKU, until all `changed_levels` of them arrived. */
  group?: LevelNotice[];
}

const levelOf = (n: Pick<LevelNotice, 'location' | 'location_active' | 'stock_quantity' | 'reserved_stock' | 'incoming' | 'version'>): StockLevelState => {
  const level = {
    location: n.location,
    active: n.location_active,
    stock_quantity: n.stock_quantity,
    reserved_stock: n.reserved_stock,
    incoming: n.incoming,
    available: 0,
    version: n.version,
  };
  level.available = levelAvailable(level);
  return level;
};

/** Merge one notice into the book by level version: the level, or undefined when the book had it (or newer) already. */
function mergeLevel(book: LevelBook, notice: LevelNotice): StockLevelState | undefined {
  let sku = book.skus.get(notice.sku);
  if (!sku) book.skus.set(notice.sku, (sku = { name: notice.name, levels: new Map() }));
  sku.name = notice.name;
  const known = sku.levels.get(notice.location);
  if (known && known.version >= notice.version) return undefined;
  const level = levelOf(notice);
  sku.levels.set(notice.location, level);
  return level;
}

/** Every level of the followed SKUs, as a notice would say it, on the feed's own session. */
async function readLevelNotices(sql: postgres.Sql, skus: readonly string[] | undefined): Promise<LevelNotice[]> {
  const where = skus ? 'WHERE l.sku = ANY($1::text[])' : '';
  return sql.unsafe<LevelNotice[]>(
    `SELECT l.sku, coalesce(v.name, p.name) AS name, l.location, loc.active AS location_active,
            l.stock_quantity, l.reserved_stock, l.incoming, l.version
       FROM stock_levels l JOIN locations loc ON loc.code = l.location
       JOIN products p ON p.product_id = l.product_id LEFT JOIN product_variants v ON v.variant_id = l.variant_id
      ${where}`,
    skus ? [[...skus]] : [],
  );
}

interface Entry extends Subscriber {
  ended?: boolean;
}

interface Session {
  sql: postgres.Sql;
  epoch: string;
  heartbeat: NodeJS.Timeout;
}

/** A feed for a configuration that cannot listen (behind a pooler in transaction mode): every subscribe says why. */
export function unavailableFeed(error: Error): StockFeed {
  return {
    subscribe: () => Promise.reject(error),
    close: async () => {},
  };
}

export function openStockFeed(opts: StockFeedOptions): StockFeed {
  const lingerMs = opts.lingerMs ?? LINGER_MS;
  const capacity = opts.replayEvents ?? REPLAY_EVENTS;
  const subscribers = new Set<Entry>();
  const followed = opts.skus ? new Set(opts.skus) : undefined;
  /** The levels as the current session's changes left them (a new one for each session). */
  let book: LevelBook = { skus: new Map(), early: [] };
  const ring: (StockEvent | undefined)[] = new Array(capacity);
  let seq = 0;
  /** Changes heard by the current session, only once it is ready. */
  let session: Session | undefined;
  let starting: Promise<Session> | undefined;
  let linger: NodeJS.Timeout | undefined;
  let closed = false;
  /** Bumped whenever a session is given up, so that its late callbacks are ignored. */
  let generation = 0;

  const end = (entry: Entry, reason: EndReason) => {
    if (entry.ended) return;
    entry.ended = true;
    subscribers.delete(entry);
    entry.onEnd(reason);
  };

  const heard = (gen: number, payload: string) => {
    if (gen !== generation) return;
    const notice = parseFeedNotification(payload);
    if (!notice) return;
    if (notice.kind === 'token') {
      for (const entry of subscribers) if (entry.token === notice.name) end(entry, 'token');
      return;
    }
    const level = notice.level;
    if (followed && !followed.has(level.sku)) return;
    if (book.early) return void book.early.push(level);
    const group = book.group?.[0].sku === level.sku ? book.group : [];
    // A group cut short (never sent by stockctl) goes out as it is.
    if (book.group && group !== book.group) applyGroup(book.group);
    group.push(level);
    book.group = group;
    if (group.length >= (level.changed_levels ?? 1)) {
      book.group = undefined;
      applyGroup(group);
    }
  };

  /** One statement's changes of one SKU: merged, then one event per changed level, each with the totals after all of them. */
  const applyGroup = (group: LevelNotice[]) => {
    const changed = group.map((n) => mergeLevel(book, n)).filter((l) => l !== undefined);
    // Heard before anyone could subscribe (the session is not ready yet): the book is all it changes.
    if (changed.length === 0 || !session) return;
    const sku = book.skus.get(group[0].sku)!;
    const item = totalsOf(group[0].sku, sku.name, sku.levels.values());
    for (const level of changed) {
      seq += 1;
      const event: StockEvent = { id: `${session.epoch}-${seq}`, seq, item, level };
      ring[seq % capacity] = event;
      for (const entry of subscribers) {
        if (!entry.skus || entry.skus.has(event.item.sku)) entry.onEvent(event);
      }
    }
  };

  /**
   * Stop using the current session (lost, or closing): its subscribers end, and listen
   * again if they like (with a snapshot). Returns the session, for the caller to close.
   */
  const giveUp = (reason: EndReason): Session | undefined => {
    generation += 1;
    const old = session;
    session = undefined;
    clearTimeout(linger);
    if (old) clearInterval(old.heartbeat);
    for (const entry of [...subscribers]) end(entry, reason);
    return old;
  };

  const start = async (): Promise<Session> => {
    const gen = ++generation;
    book = { skus: new Map(), early: [] };
    const client: ClientOptions = {
      ...opts.client,
      application: opts.application,
      max: 1,
      session: { onNotify: (_channel, payload) => heard(gen, payload) },
      onConnectionClosed: () => {
        if (gen !== generation) return;
        const lost = giveUp('gap');
        if (!lost) return;
        opts.onLost?.('the listening session closed');
        void lost.sql.end({ timeout: 0 }).catch(() => {});
      },
    };
    const { sql } = await openClient(opts.url, client, async (sql) => {
      await sql.unsafe(`LISTEN "${STOCK_CHANNEL}"`);
    });
    try {
      await register(sql);
      await waitForOlderWriters(sql);
      // Every level now; the changes heard since LISTEN, and those after, merge by version.
      const levels = await readLevelNotices(sql, opts.skus);
      if (gen === generation) {
        const early = book.early ?? [];
        book.early = undefined;
        for (const level of levels) mergeLevel(book, level);
        for (const level of early) mergeLevel(book, level);
      }
    } catch (err) {
      await sql.end({ timeout: 0 }).catch(() => {});
      throw err;
    }
    if (gen !== generation || closed) {
      await sql.end({ timeout: 1 }).catch(() => {});
      throw new DatabaseUnavailableError('The live stock feed was closed while it started; try again.', 'live_stock_unavailable');
    }
    const heartbeat = setInterval(() => {
      sql`SELECT 1`.catch((err: unknown) => {
        if (gen !== generation) return;
        const lost = giveUp('gap');
        opts.onLost?.(`the listening session did not answer: ${publicMessage(err)}`);
        void lost?.sql.end({ timeout: 0 }).catch(() => {});
      });
    }, HEARTBEAT_MS);
    heartbeat.unref();
    seq = 0;
    ring.fill(undefined);
    return { sql, epoch: randomBytes(4).toString('hex'), heartbeat };
  };

  const ready = (): Promise<Session> => {
    if (session) return Promise.resolve(session);
    starting ??= start().then(
      (s) => {
        starting = undefined;
        session = s;
        if (subscribers.size === 0) scheduleLinger();
        return s;
      },
      (err: unknown) => {
        starting = undefined;
        throw err;
      },
    );
    return starting;
  };

  /** No subscriber for lingerMs: unregister, so that writers stop notifying, and close the session. */
  const scheduleLinger = () => {
    clearTimeout(linger);
    linger = setTimeout(() => {
      if (subscribers.size > 0 || !session) return;
      const old = giveUp('closed')!;
      void unregister(old.sql).finally(() => old.sql.end({ timeout: 1 }).catch(() => {}));
    }, lingerMs);
    linger.unref();
  };

  const replayAfter = (id: string, entry: Entry, current: Session): StockEvent[] | undefined => {
    const match = /^([0-9a-f]{8})-(\d{1,15})$/.exec(id);
    if (!match || match[1] !== current.epoch) return undefined;
    const after = Number(match[2]);
    if (after > seq || seq - after > capacity) return undefined;
    const events: StockEvent[] = [];
    for (let s = after + 1; s <= seq; s++) {
      const event = ring[s % capacity];
      if (!event || event.seq !== s) return undefined;
      if (!entry.skus || entry.skus.has(event.item.sku)) events.push(event);
    }
    return events;
  };

  return {
    async subscribe(subscriber, { resumeAfter, waitMs = 10_000 } = {}) {
      if (closed) throw new DatabaseUnavailableError('The server is shutting down; connect again.', 'live_stock_unavailable');
      clearTimeout(linger);
      let current: Session | undefined;
      const deadline = Date.now() + waitMs;
      // A session given up while we waited (lost, or lingered out) is waited for again.
      while (!current) {
        const left = deadline - Date.now();
        if (left <= 0) throw notReady();
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(notReady()), left)));
        const started = ready();
        started.catch(() => {}); // the caller sees the race's outcome; a late failure is nobody's
        try {
          await Promise.race([started, late]);
        } catch (err) {
          // The database's own answer (down, full, refusing) as any other command gets it.
          const mapped = toDomainError(err);
          if (mapped instanceof StockctlError) throw mapped;
          throw new DatabaseUnavailableError(`Live stock cannot listen to the database: ${publicMessage(err).replace(/\.$/, '')}.`, 'live_stock_unavailable');
        } finally {
          clearTimeout(timer);
        }
        current = session;
      }
      clearTimeout(linger);
      const entry: Entry = { ...subscriber };
      subscribers.add(entry);
      return {
        id: `${current.epoch}-${seq}`,
        replay: resumeAfter === undefined ? undefined : replayAfter(resumeAfter, entry, current),
        close() {
          if (!subscribers.delete(entry)) return;
          entry.ended = true;
          if (subscribers.size === 0) scheduleLinger();
        },
      };
    },
    async close() {
      closed = true;
      clearTimeout(linger);
      await starting?.catch(() => {});
      const old = giveUp('closed');
      if (old) {
        await unregister(old.sql);
        await old.sql.end({ timeout: 2 }).catch(() => {});
      }
    },
  };
}

function notReady(): DatabaseUnavailableError {
  return new DatabaseUnavailableError(
    'Live stock is not ready yet: it waits for transactions older than its listener to end; try again in a few seconds.',
    'live_stock_unavailable',
  );
}

/**
 * Remove the rows of listeners whose sessions are gone (a process killed without leaving),
 * make `change` (register or leave), and set the count of live listeners, in one
 * transaction under one lock, so that two listeners never count at once. The count is set
 * before the commit: a listener registering is counted from that moment.
 */
function recount(on: Db | postgres.Sql, change?: SQL): Promise<unknown> {
  return transaction(on, async (tx) => {
    await execute(tx, sql`SELECT pg_advisory_xact_lock(hashtext('stockctl.stock_listeners'))`);
    await execute(
      tx,
      sql`DELETE FROM stock_listeners l
           WHERE NOT EXISTS (SELECT 1 FROM pg_stat_get_activity(l.pid) a
                              WHERE a.backend_start IS NULL OR a.backend_start = l.backend_start)`,
    );
    if (change) await execute(tx, change);
    // Written only when it changes: a sweep a minute, with nobody killed, writes nothing.
    await execute(
      tx,
      sql`SELECT setval('stock_listeners_live', c.n, true)
            FROM (SELECT count(*) AS n FROM stock_listeners) c
           WHERE c.n <> (SELECT last_value FROM stock_listeners_live)`,
    );
  });
}

/** Register this session as listening: writers notify from now on. */
async function register(on: postgres.Sql): Promise<void> {
  await recount(
    on,
    sql`INSERT INTO stock_listeners (pid, backend_start, application)
        SELECT pid, backend_start, application_name FROM pg_stat_get_activity(pg_backend_pid())`,
  );
}

async function unregister(on: postgres.Sql): Promise<void> {
  await recount(on, sql`DELETE FROM stock_listeners WHERE pid = pg_backend_pid()`).catch(() => {});
}

/**
 * Count the live listeners again, forgetting those whose sessions are gone, so that
 * writers stop notifying for a listener that was killed (each sweep does this).
 */
export async function recountListeners(db: Db): Promise<void> {
  await recount(db);
}

/**
 * Wait until every transaction of this database that has an id now (after the count
 * was set) has ended: a writer that read the count before it was set has one.
 * Transactions without an id have written nothing yet, and will read the count after
 * their first change, when it is set.
 */
async function waitForOlderWriters(sql: postgres.Sql): Promise<void> {
  const [{ xids }] = await sql.unsafe<{ xids: string[] }[]>(
    `SELECT coalesce(array_agg(backend_xid::text), '{}') AS xids FROM pg_stat_activity
      WHERE datname = current_database() AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()`,
  );
  for (let pause = 2; xids.length > 0; pause = Math.min(pause * 2, 50)) {
    const [{ running }] = await sql.unsafe<{ running: number }[]>(
      'SELECT count(*)::int AS running FROM pg_stat_activity WHERE backend_xid::text = ANY($1::text[])',
      [xids],
    );
    if (running === 0) return;
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
}
