/**
 * The HTTP edge: external plugins first (OpenAPI), then the shared schemas, the routes
 * (one plugin per resource, registered explicitly), and one error handler for the whole
 * app that turns any error into a problem document, as src/cli/run.ts turns it into an
 * exit code.
 */
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type postgres from 'postgres';
import type { Db } from '../db/client.js';
import type { Strategy } from '../engine/orders.js';
import type { Settings } from '../engine/settings.js';
import type { PaymentWindowPolicy } from '../engine/windows.js';
import { STOCKCTL_VERSION } from '../version.js';
import { authenticator, type RequireRole } from './auth.js';
import type { StockEvents } from '../engine/stock-events.js';
import { HttpProblem, MAX_PARAM_LENGTH, sendProblem } from './problems.js';
import { logRequest } from './log.js';
import { Problem, StockItem } from './schemas.js';
import { metaRoutes } from './routes/meta.js';
import { orderRoutes } from './routes/orders.js';
import { stockRoutes } from './routes/stock.js';

/** Request bodies above this are refused with 413 before they are parsed. */
export const BODY_LIMIT = 64 * 1024;

/** What every route plugin is handed: the app's options, and its helpers. */
export interface ServerContext extends Omit<AppOptions, 'logStream'> {
  requireRole: RequireRole;
  /** Register for "the listener was lost and is back: re-read"; returns the unsubscribe. */
  onResync(fn: () => void): () => void;
  /** An open stream to end at shutdown; returns the function to call when it ends by itself. */
  trackStream(end: () => void): () => void;
}

export interface AppOptions {
  db: Db;
  sql: postgres.Sql;
  settings: Settings;
  /** PAYMENT_TIMEOUTS and PRIORITY_WINDOWS, as src/cli/config.ts read them. */
  paymentWindows: PaymentWindowPolicy;
  strategy: Strategy;
  events: StockEvents;
  /** Before any request that reads or writes: may the database be used (the embedded cluster's identity)? */
  checkDatabase?: () => Promise<void>;
  /** Where the JSON request log goes (stderr); false for none. */
  logStream?: NodeJS.WritableStream | false;
}

export interface StockctlApp {
  app: FastifyInstance;
  /** Tell SSE clients to re-read (after the LISTEN connection came back). */
  resync(): void;
  /** End every open event stream, so that a graceful close is not held open by them. */
  endStreams(): void;
}

export async function buildApp(opts: AppOptions): Promise<StockctlApp> {
  const app = Fastify({
    bodyLimit: BODY_LIMIT,
    // One line per request, written by the onResponse hook below, never the body or a token.
    logController: new LogController({ disableRequestLogging: true }),
    logger:
      opts.logStream === false
        ? false
        : {
            level: 'info',
            stream: opts.logStream ?? process.stderr,
            redact: { paths: ['req.headers.authorization', 'headers.authorization'], censor: '[redacted]' },
            base: { service: 'stockctl' },
          },
    // Unknown fields are an error, never silently dropped; types are never coerced.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false } },
    // Keep-alive connections that sit idle are closed at shutdown; busy ones finish first.
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // A URL the router cannot read (a bad %-escape, an overlong segment) never reaches a
    // route or its hooks: answered here, as a problem document, with its log line.
    frameworkErrors: (err, request, reply) => {
      sendProblem(reply, request, err);
      logRequest(request, reply.statusCode, reply.elapsedTime);
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'stockctl order API',
        version: STOCKCTL_VERSION,
        description:
          'Reserve stock for orders without overselling, pay, cancel, fulfil; live stock events. Errors are application/problem+json (RFC 9457) with `code` equal to the CLI error code.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'a token from `stockctl token create`' } } },
      tags: [{ name: 'orders' }, { name: 'stock' }, { name: 'meta' }],
    },
    // Shared schemas appear under their own $id in components.schemas.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`) },
  });
  // Bodies are JSON only: Fastify's own text/plain parser would let a JSON text through
  // as a string (a 422 then), where any other media type is a 415.
  app.removeContentTypeParser('text/plain');
  app.addSchema(Problem);
  app.addSchema(StockItem);
  // A route without query parameters of its own takes none: an unknown one is a 422, as
  // an unknown body field is, never silently ignored (`POST /orders?ttl=1h`).
  app.addHook('onRoute', (route) => {
    if (route.schema?.querystring) return;
    route.schema = { ...route.schema, querystring: { type: 'object', properties: {}, additionalProperties: false } };
  });

  const streams = new Set<() => void>();
  const resyncs = new Set<() => void>();
  const context: ServerContext = {
    db: opts.db,
    sql: opts.sql,
    settings: opts.settings,
    paymentWindows: opts.paymentWindows,
    strategy: opts.strategy,
    events: opts.events,
    requireRole: authenticator(opts.db),
    onResync(fn) {
      resyncs.add(fn);
      return () => resyncs.delete(fn);
    },
    trackStream(end) {
      streams.add(end);
      return () => streams.delete(end);
    },
  };

  app.addHook('onResponse', async (request, reply) => logRequest(request, reply.statusCode, reply.elapsedTime));
  // Before authentication, which reads tokens from the database: never another cluster's.
  const { checkDatabase } = opts;
  if (checkDatabase) {
    const needsNoDatabase = new Set(['/healthz', '/openapi.json']);
    app.addHook('onRequest', async (request) => {
      if (!needsNoDatabase.has(request.routeOptions.url ?? '')) await checkDatabase();
    });
  }
  app.setErrorHandler((err, request, reply) => sendProblem(reply, request, err));
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, request, new HttpProblem(404, 'route_not_found', `There is no ${request.method} ${request.url.split('?')[0]}; see GET /openapi.json for the routes.`)),
  );

  await app.register(metaRoutes, context);
  await app.register(orderRoutes, context);
  await app.register(stockRoutes, context);

  return {
    app,
    resync: () => {
      for (const fn of resyncs) fn();
    },
    endStreams: () => {
      for (const end of [...streams]) end();
    },
  };
}
