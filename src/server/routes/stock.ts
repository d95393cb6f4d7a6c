/** /stock: levels as `stock --json` gives them, and live changes as Server-Sent Events. */
import type { ServerResponse } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import { listLevels, listStock, listStockPage } from '../../engine/catalogue.js';
import { findLocation } from '../../engine/locations.js';
import type { StockItem } from '../../engine/stock-item.js';
import { SKU_PATTERN } from '../../engine/input.js';
import type { StockEvent, Subscription } from '../../engine/stock-events.js';
import { liveTokenRole, roleAllows } from '../../engine/tokens.js';
import { invalidToken, roleTooLow } from '../auth.js';
import { logRequest } from '../log.js';
import type { ServerContext } from '../context.js';
import { HttpProblem } from '../problems.js';
import { DatabaseUnavailableError, InvalidInputError } from '../../errors.js';
import { AUTHENTICATED, EventsHeaders, EventsQuery, LINK_NEXT, ok, okAs, problems, SkuParams, StockList, StockQuery, WITH_PARAMS, WITH_QUERY } from '../schemas.js';
import { nextLink } from './paging.js';

const security = [{ bearer: [] }];
const AUTH = [...AUTHENTICATED, ...WITH_QUERY];

/** GET /stock's page size unless ?limit= says. */
const STOCK_PAGE = 100;
/** A stock page's cursor: the last SKU of the page, base64url (opaque to the client). */
const stockCursor = (sku: string) => Buffer.from(sku, 'utf8').toString('base64url');
/** The SKU a stock cursor names; a cursor that is not one of ours is a 422. */
function afterSku(cursor: string): string {
  const sku = Buffer.from(cursor, 'base64url').toString('utf8');
  if (stockCursor(sku) !== cursor || !SKU_PATTERN.test(sku)) {
    throw new InvalidInputError('Invalid cursor: pass the next_cursor of the previous page unchanged.', 'invalid_cursor');
  }
  return sku;
}
const asList = (value: string | string[] | undefined) => (value === undefined ? undefined : Array.isArray(value) ? value : [value]);

/** Keeps proxies and load balancers from closing a quiet stream. */
const HEARTBEAT_MS = 15_000;
/**
 * What one stream may hold for a client that does not read (about a thousand changes):
 * past it, the stream is dropped, and the client reconnects to a snapshot.
 */
export const STREAM_BUFFER_BYTES = 256 * 1024;
/** The snapshot goes out in pieces of about this size, each once the one before has left. */
const SNAPSHOT_PIECE_BYTES = 64 * 1024;
/**
 * A stream writes at most once in this many milliseconds: changes that come faster go out
 * together, as one TCP segment for its client to wake up for, not one each (a change after
 * a quiet while still goes out at once). Fanning a busy feed out to 100 streams is then
 * about 2 µs of serve's CPU per change and client (docs/benchmarks.md).
 */
const FLUSH_MS = 25;
/** Retry-After for a stream refused because every place is taken. */
const FULL_RETRY_S = 5;

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  connection: 'keep-alive',
  'x-accel-buffering': 'no',
};

interface Sse {
  text: string;
  bytes: number;
}
const sse = (text: string): Sse => ({ text, bytes: Buffer.byteLength(text) });

/** Each change's SSE text, made once however many streams carry it. */
const eventTexts = new WeakMap<StockEvent, Sse>();
function eventText(event: StockEvent): Sse {
  let text = eventTexts.get(event);
  if (text === undefined) eventTexts.set(event, (text = sse(`event: stock\nid: ${event.id}\ndata: ${JSON.stringify({ ...event.item, level: event.level })}\n\n`)));
  return text;
}
const snapshotText = (item: StockItem) => `event: snapshot\ndata: ${JSON.stringify(item)}\n\n`;

/**
 * Snapshots of the same SKUs that streams ask for in one turn of the event loop are read
 * once, after every one of them joined the feed (so the read shows all that they will not
 * be sent), and their text is shared: a thousand clients reconnecting at once after a
 * restart cost one read of the catalogue, not a thousand.
 */
function sharedSnapshots(read: (skus: string[] | undefined) => Promise<StockItem[]>) {
  const next = new Map<string, Promise<{ items: StockItem[]; pieces: string[] }>>();
  return (skus: string[] | undefined) => {
    const key = skus ? [...skus].sort().join(' ') : '';
    let snapshot = next.get(key);
    if (!snapshot) {
      snapshot = new Promise((resolve) => setImmediate(resolve))
        .then(() => {
          next.delete(key);
          return read(skus);
        })
        .then((items) => ({ items, pieces: pieces(items.map(snapshotText)) }));
      next.set(key, snapshot);
    }
    return snapshot;
  };
}

/**
 * One event stream's output, bounded: text waits in `queue` while the socket is full
 * (res.write said so), and a stream holding more than STREAM_BUFFER_BYTES, queued or in
 * the socket's own buffer, is dropped. Writes made in one turn of the event loop go out
 * as one. Nothing is written before `open()`: until then, ending or overflowing only
 * marks it ended, and the route answers with a status instead.
 */
class EventStream {
  private queue: string[] = [];
  private queued = 0;
  private flushing?: NodeJS.Timeout;
  private flushedAt = 0;
  /** Changes heard before the snapshot (or replay) was written: sent after it. */
  private early?: StockEvent[] = [];
  private earlyBytes = 0;
  private opened = false;
  ended = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly onDrop: (heldBytes: number) => void,
  ) {}

  open(): void {
    this.opened = true;
    this.res.writeHead(200, SSE_HEADERS);
    this.res.on('drain', () => this.flush());
  }

  change(event: StockEvent): void {
    if (this.ended) return;
    if (this.early) {
      this.early.push(event);
      this.earlyBytes += eventText(event).bytes;
      this.withinBound(this.earlyBytes);
      return;
    }
    this.send(eventText(event));
  }

  send({ text, bytes }: Sse): void {
    if (this.ended) return;
    this.queue.push(text);
    this.queued += bytes;
    // At most one write per FLUSH_MS: a change after a quiet while goes out at once, a
    // burst in one write (each write is a TCP segment for the client to wake up for).
    if (this.withinBound(this.queued)) this.flushing ??= setTimeout(() => this.flush(), Math.max(0, this.flushedAt + FLUSH_MS - performance.now()));
  }

  /** The snapshot (or the replayed changes) first, each piece once the socket took the one before. */
  async writeFirst(pieces: string[]): Promise<void> {
    for (const piece of pieces) {
      if (this.ended) return;
      if (!this.res.write(piece)) await this.drained();
    }
  }

  /** Now live: the changes heard meanwhile follow, but those the snapshot already shows. */
  goLive(shown?: Map<string, number>): void {
    const early = this.early ?? [];
    this.early = undefined;
    for (const event of early) if ((shown?.get(event.item.sku) ?? -1) < event.item.version) this.send(eventText(event));
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (!this.opened) return;
    clearTimeout(this.flushing);
    const rest = this.queue.join('');
    this.queue = [];
    this.res.end(rest);
  }

  private flush(): void {
    this.flushing = undefined;
    this.flushedAt = performance.now();
    if (this.ended || this.queue.length === 0 || this.res.writableNeedDrain) return;
    const text = this.queue.length === 1 ? this.queue[0] : this.queue.join('');
    this.queue = [];
    this.queued = 0;
    this.res.write(text);
  }

  /** False, and the stream dropped, when it holds more than it may. */
  private withinBound(held: number): boolean {
    const total = held + this.res.writableLength;
    if (total <= STREAM_BUFFER_BYTES) return true;
    this.ended = true;
    this.queue = [];
    this.early = undefined;
    clearTimeout(this.flushing);
    if (this.opened) {
      this.onDrop(total);
      this.res.destroy();
    }
    return false;
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.res.off('drain', done);
        this.res.off('close', done);
        resolve();
      };
      this.res.on('drain', done);
      this.res.on('close', done);
    });
  }
}

/** Text in pieces of about SNAPSHOT_PIECE_BYTES. */
function pieces(texts: string[]): string[] {
  const out: string[] = [];
  let piece: string[] = [];
  let size = 0;
  for (const text of texts) {
    piece.push(text);
    size += text.length;
    if (size >= SNAPSHOT_PIECE_BYTES) {
      out.push(piece.join(''));
      piece = [];
      size = 0;
    }
  }
  if (piece.length > 0) out.push(piece.join(''));
  return out;
}

export const stockRoutes: FastifyPluginAsyncTypebox<ServerContext> = async (app, ctx) => {
  const { db, requireRole } = ctx;
  const snapshotOf = sharedSnapshots((skus) => listStock(db, { skus }));
  const keepAlive = sse(': keep-alive\n\n');

  app.get(
    '/stock',
    {
      onRequest: requireRole('read'),
      schema: {
        tags: ['stock'],
        operationId: 'listStock',
        summary: 'Stock levels of every SKU (or of ?sku=…), as `stock --json`, in SKU order and in pages (follow next_cursor, or the Link header)',
        description:
          "Each item is a SKU's totals over its locations (StockItem). With `?location=CODE`, each is the SKU's level at that location " +
          '(LevelItem, as `stock --location CODE --json`), SKUs without a level there left out, and the page says `location`.',
        security,
        querystring: StockQuery,
        response: { 200: ok(StockList, 'one page of stock rows', LINK_NEXT), ...problems(...AUTH, 404) },
      },
    },
    async (request, reply) => {
      const { query } = request;
      const limit = query.limit ?? STOCK_PAGE;
      const after = query.cursor === undefined ? undefined : afterSku(query.cursor);
      if (query.location !== undefined) {
        const location = (await findLocation(db, query.location)).code;
        const skus = asList(query.sku);
        // Unknown SKUs are a 404 naming them, as without ?location=.
        if (skus) await listStock(db, { skus });
        const levels = await listLevels(db, { skus, location, low: query.low, after, limit: limit + 1 });
        const items = levels.slice(0, limit);
        const next = levels.length > limit ? stockCursor(items[items.length - 1].sku) : null;
        if (next) reply.header('link', nextLink('/stock', query, next));
        return { location, items, next_cursor: next };
      }
      const page = await listStockPage(db, {
        skus: asList(query.sku),
        low: query.low,
        after,
        limit,
      });
      const next = page.more ? stockCursor(page.items[page.items.length - 1].sku) : null;
      if (next) reply.header('link', nextLink('/stock', query, next));
      return { items: page.items, next_cursor: next };
    },
  );

  /** A token revoked, or whose role no longer reads, since the request was authenticated: as auth would have answered. */
  const checkStillAllowed = async (request: FastifyRequest) => {
    const name = request.caller!.name;
    const role = await liveTokenRole(db, name);
    if (!role) throw invalidToken();
    if (!roleAllows(role, 'read')) throw roleTooLow(name, role, 'read');
  };

  app.get(
    '/stock/events',
    {
      onRequest: requireRole('read'),
      // Fastify's own HEAD route would run the stream: HEAD is answered below, at once.
      exposeHeadRoute: false,
      schema: {
        tags: ['stock'],
        operationId: 'streamStockEvents',
        summary: 'Server-Sent Events: the current state of the SKUs, then one `stock` event per committed change',
        description:
          'First one `snapshot` event per SKU (its data a `stock --json` item), then one `ready` event (`{"snapshot":true,"items":N}`), ' +
          'then one `stock` event per committed change of a level (a SKU at a location) of a subscribed SKU, its data the SKU\'s totals ' +
          'after the change as a `stock --json` item, with the changed level as `level` ({location, active, stock_quantity, reserved_stock, incoming, available, version}). ' +
          '`ready` and `stock` events carry an id; a client that reconnects with `Last-Event-ID` (EventSource does) gets the changes ' +
          'after it, then `ready` with `"snapshot":false`, or, when the server no longer holds them, the snapshot again. Versions only grow: ' +
          'keep the highest version per SKU and you hold the database\'s state. The stream ends when its token is revoked or loses its role, ' +
          `when the server restarts or lost its database session, and when the client does not read (over ${STREAM_BUFFER_BYTES / 1024} KiB waiting): reconnect. ` +
          'HEAD answers the headers. 503 with Retry-After when the server has its --max-streams streams open.',
        security,
        querystring: EventsQuery,
        headers: EventsHeaders,
        response: { 200: okAs('text/event-stream', 'the event stream (it stays open)'), ...problems(...AUTH, 404) },
      },
    },
    async (request, reply) => {
      const only = asList(request.query.sku);
      // An unknown SKU is a 404, as on GET /stock.
      if (only) await listStock(db, { skus: only });
      const res = reply.raw;
      const stream = new EventStream(res, (held) =>
        request.log.warn(
          { actor: request.caller?.name, held_bytes: held, limit_bytes: STREAM_BUFFER_BYTES },
          'dropped an event stream whose client does not read; it reconnects to a snapshot',
        ),
      );
      const release = ctx.trackStream(() => stream.end());
      if (!release) {
        throw new HttpProblem(503, 'too_many_streams', `This server has its ${ctx.maxStreams} event streams open (serve --max-streams); try again shortly.`, {}, {
          'retry-after': String(FULL_RETRY_S),
        });
      }
      const started = Date.now();
      let subscription: Subscription | undefined;
      let heartbeat: NodeJS.Timeout | undefined;
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        clearInterval(heartbeat);
        subscription?.close();
        release();
        stream.ended = true;
      };
      res.on('close', finish);
      let snapshot: { items: StockItem[]; pieces: string[] } | undefined;
      try {
        const lastId = request.headers['last-event-id'];
        subscription = await ctx.feed.subscribe(
          { skus: only && new Set(only), token: request.caller!.name, onEvent: (event) => stream.change(event), onEnd: () => stream.end() },
          { resumeAfter: typeof lastId === 'string' ? lastId.trim() : undefined },
        );
        // On the feed from here: a revoke committed after this check arrives on it and ends the stream.
        await checkStillAllowed(request);
        if (!subscription.replay) snapshot = await snapshotOf(only);
        // Ended meanwhile: the feed restarted, the token changed, or the client left.
        if (stream.ended) throw new DatabaseUnavailableError('The live stock feed restarted while this stream began; connect again.', 'live_stock_unavailable');
      } catch (err) {
        finish();
        throw err;
      }
      reply.hijack();
      stream.open();
      heartbeat = setInterval(() => stream.send(keepAlive), HEARTBEAT_MS);
      res.on('close', () => {
        // A stream the server ended (at shutdown) finished, and the onResponse hook logged
        // it; one the client left did not: logged here. One line either way.
        if (!res.writableFinished) logRequest(request, 200, Date.now() - started);
      });
      const first = snapshot ? snapshot.pieces : pieces(subscription.replay!.map((e) => eventText(e).text));
      const count = snapshot ? snapshot.items.length : subscription.replay!.length;
      const ready = `event: ready\nid: ${subscription.id}\ndata: ${JSON.stringify({ snapshot: !!snapshot, items: count })}\n\n`;
      await stream.writeFirst(['retry: 2000\n\n', ...first, ready]);
      stream.goLive(snapshot && new Map(snapshot.items.map((i) => [i.sku, i.version])));
    },
  );

  app.head(
    '/stock/events',
    {
      onRequest: requireRole('read'),
      // Not listed in /openapi.json, as no HEAD route is; GET's description says that HEAD answers.
      schema: { hide: true, querystring: EventsQuery },
    },
    async (request, reply) => {
      const only = asList(request.query.sku);
      if (only) await listStock(db, { skus: only });
      return reply.headers(SSE_HEADERS).code(200).send();
    },
  );

  app.get(
    '/stock/:sku',
    {
      onRequest: requireRole('read'),
      schema: {
        tags: ['stock'],
        operationId: 'getStockItem',
        summary: 'One SKU, as a `stock --json` item',
        security,
        params: SkuParams,
        response: { 200: ok(Type.Ref('StockItem'), 'the stock row'), ...problems(...AUTH, ...WITH_PARAMS, 404) },
      },
    },
    async (request) => (await listStock(db, { skus: [request.params.sku] }))[0],
  );
};
