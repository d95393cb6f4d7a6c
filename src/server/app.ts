/**
 * The HTTP edge: external plugins first (OpenAPI), then the shared schemas, the routes
 * (one plugin per resource, registered explicitly), and one error handler for the whole
 * app that turns any error into a problem document, as src/cli/run.ts turns it into an
 * exit code.
 */
import Fastify, { errorCodes, LogController, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type postgres from 'postgres';
import type { Db } from '../db/client.js';
import type { Strategy } from '../engine/orders.js';
import type { Settings } from '../engine/settings.js';
import type { PaymentWindowPolicy } from '../engine/windows.js';
import { STOCKCTL_VERSION } from '../version.js';
import { authenticator, type RequireRole } from './auth.js';
import type { StockFeed } from '../engine/stock-events.js';
import { clientErrorResponse, HttpProblem, MAX_PARAM_LENGTH, sendProblem } from './problems.js';
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
  /**
   * Take one of the --max-streams places for an event stream, with how to end it at
   * shutdown; returns the function that gives the place back when it ends, or undefined
   * when every place is taken.
   */
  trackStream(end: () => void): (() => void) | undefined;
}

export interface AppOptions {
  db: Db;
  sql: postgres.Sql;
  settings: Settings;
  /** PAYMENT_TIMEOUTS and PRIORITY_WINDOWS, as src/cli/config.ts read them. */
  paymentWindows: PaymentWindowPolicy;
  strategy: Strategy;
  /** Live stock changes (GET /stock/events). */
  feed: StockFeed;
  /** At most this many event streams at once (`serve --max-streams`). */
  maxStreams: number;
  /** Before any request that reads or writes: may the database be used (the embedded cluster's identity)? */
  checkDatabase?: () => Promise<void>;
  /** Where the JSON request log goes (stderr); false for none. */
  logStream?: NodeJS.WritableStream | false;
}

export interface StockctlApp {
  app: FastifyInstance;
  /** End every open event stream, so that a graceful close is not held open by them. */
  endStreams(): void;
}

/**
 * The first field of a parsed body that could reach an object's prototype if merged
 * (`__proto__`, or `constructor` holding `prototype`), as a dotted path (`items.0.__proto__`).
 */
function prototypeField(value: unknown): string | undefined {
  const stack: { node: unknown; path: string }[] = [{ node: value, path: '' }];
  while (stack.length > 0) {
    const { node, path } = stack.pop()!;
    if (node === null || typeof node !== 'object') continue;
    const at = (key: string) => (path ? `${path}.${key}` : key);
    if (Object.hasOwn(node, '__proto__')) return at('__proto__');
    const ctor = (node as Record<string, unknown>).constructor;
    if (Object.hasOwn(node, 'constructor') && ctor !== null && typeof ctor === 'object' && Object.hasOwn(ctor, 'prototype')) return at('constructor');
    for (const [key, child] of Object.entries(node).reverse()) stack.push({ node: child, path: at(key) });
  }
  return undefined;
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
    // Refused by Node's HTTP parser before there is a request (a 100,000-character URL is
    // a 431): a problem document too, and a log line, never Fastify's own JSON.
    clientErrorHandler(this: FastifyInstance, err, socket) {
      const answer = clientErrorResponse(err, socket);
      if (answer) {
        socket.write(answer.raw);
        this.log.info({ status: answer.status, code: answer.code }, 'request refused before routing');
      }
      socket.destroy(err);
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
  // JSON with a "__proto__" (or "constructor.prototype") key is valid JSON with a field no
  // route takes: 422 naming it, where Fastify's parser called it "not valid JSON" (400).
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    const text = String(body).replace(/^\uFEFF/, '');
    if (text.length === 0) return done(new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY(), undefined);
    let value: unknown;
    try {
      value = JSON.parse(text); // "__proto__" becomes an own property here, never the prototype
    } catch {
      return done(new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY(), undefined);
    }
    const field = prototypeField(value);
    if (field === undefined) return done(null, value);
    const message = `unknown field "${field}"`;
    done(new HttpProblem(422, 'invalid_input', `Invalid request body: ${message}.`, { errors: [{ field, message }] }), undefined);
  });
  app.addSchema(Problem);
  app.addSchema(StockItem);
  // A route without query parameters of its own takes none: an unknown one is a 422, as
  // an unknown body field is, never silently ignored (`POST /orders?ttl=1h`).
  app.addHook('onRoute', (route) => {
    if (route.schema?.querystring) return;
    route.schema = { ...route.schema, querystring: { type: 'object', properties: {}, additionalProperties: false } };
  });

  const streams = new Set<() => void>();
  const context: ServerContext = {
    db: opts.db,
    sql: opts.sql,
    settings: opts.settings,
    paymentWindows: opts.paymentWindows,
    strategy: opts.strategy,
    feed: opts.feed,
    maxStreams: opts.maxStreams,
    requireRole: authenticator(opts.db),
    trackStream(end) {
      if (streams.size >= opts.maxStreams) return undefined;
      // Its own function, so that the same `end` twice holds two places.
      const place = () => end();
      streams.add(place);
      return () => streams.delete(place);
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
    endStreams: () => {
      for (const end of [...streams]) end();
    },
  };
}
