/** /stock: levels as `stock --json` gives them, and live changes as Server-Sent Events. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { listStock } from '../../engine/catalogue.js';
import { logRequest } from '../log.js';
import type { ServerContext } from '../app.js';
import { EventsQuery, problems, SkuParams, StockList, StockQuery } from '../schemas.js';

const security = [{ bearer: [] }];
const AUTH = [401, 403, 422, 503];
const asList = (value: string | string[] | undefined) => (value === undefined ? undefined : Array.isArray(value) ? value : [value]);

/** Keeps proxies and load balancers from closing a quiet stream. */
const HEARTBEAT_MS = 15_000;

export const stockRoutes: FastifyPluginAsyncTypebox<ServerContext> = async (app, ctx) => {
  const { db, requireRole } = ctx;

  app.get(
    '/stock',
    {
      onRequest: requireRole('read'),
      schema: {
        tags: ['stock'],
        summary: 'Stock levels of every SKU (or of ?sku=…), as `stock --json`',
        security,
        querystring: StockQuery,
        response: { 200: StockList, ...problems(...AUTH, 404) },
      },
    },
    async (request) => ({
      items: await listStock(db, { skus: asList(request.query.sku), low: request.query.low === undefined ? undefined : Number(request.query.low) }),
    }),
  );

  app.get(
    '/stock/events',
    {
      onRequest: requireRole('read'),
      schema: {
        tags: ['stock'],
        summary: 'Server-Sent Events: one `stock` event per committed stock change, its data the changed row as a `stock --json` item',
        description:
          'Each event has `event: stock`, `id: <sku>@<version>` and `data: <item JSON>`. Versions only grow: a client that also reads GET /stock keeps the higher version. ' +
          'After the server lost and regained its database listener it sends `event: resync`: read GET /stock again.',
        security,
        querystring: EventsQuery,
        response: { 200: { description: 'text/event-stream', type: 'string' }, ...problems(...AUTH) },
      },
    },
    async (request, reply) => {
      const only = asList(request.query.sku);
      const skus = only ? new Set(only) : undefined;
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      res.write('retry: 2000\n: connected\n\n');
      const unsubscribe = ctx.events.subscribe((item) => {
        if (skus && !skus.has(item.sku)) return;
        res.write(`event: stock\nid: ${item.sku}@${item.version}\ndata: ${JSON.stringify(item)}\n\n`);
      });
      const unresync = ctx.onResync(() => res.write('event: resync\ndata: {}\n\n'));
      const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), HEARTBEAT_MS);
      const started = Date.now();
      const end = ctx.trackStream(() => res.end());
      res.on('close', () => {
        clearInterval(heartbeat);
        unsubscribe();
        unresync();
        end();
        // A stream the server ended (at shutdown) finished, and the onResponse hook logged
        // it; one the client left did not: logged here. One line either way.
        if (!res.writableFinished) logRequest(request, 200, Date.now() - started);
      });
    },
  );

  app.get(
    '/stock/:sku',
    {
      onRequest: requireRole('read'),
      schema: {
        tags: ['stock'],
        summary: 'One SKU, as a `stock --json` item',
        security,
        params: SkuParams,
        response: { 200: { $ref: 'StockItem' }, ...problems(...AUTH, 404) },
      },
    },
    async (request) => (await listStock(db, { skus: [request.params.sku] }))[0],
  );
};
