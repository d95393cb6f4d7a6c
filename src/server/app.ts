/**
 * The HTTP edge: external plugins first (OpenAPI, rate limits, CORS when asked for), then
 * the shared schemas, the routes (one plugin per resource, registered explicitly), and one
 * error handler for the whole app that turns any error into a problem document, as
 * src/cli/run.ts turns it into an exit code.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import Fastify, { errorCodes, LogController, type FastifyInstance, type FastifyRequest } from 'fastify';
import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { STOCKCTL_VERSION } from '../version.js';
import { authenticator } from './auth.js';
import type { AppOptions, ServerContext } from './context.js';
import { clientErrorResponse, HttpProblem, MAX_PARAM_LENGTH, RETRY_AFTER_S, sendProblem } from './problems.js';
import { logRequest, requestIdOf, traceOf } from './log.js';
import { createServerMetrics, routeLabel, type ServerMetrics } from './metrics.js';
import { Allocation, LevelItem, Location, Problem, StockItem } from './schemas.js';
import { metaRoutes } from './routes/meta.js';
import { orderRoutes } from './routes/orders.js';
import { stockRoutes } from './routes/stock.js';
import { locationRoutes } from './routes/locations.js';

/** Request bodies above this are refused with 413 before they are parsed. */
export const BODY_LIMIT = 64 * 1024;

export interface StockctlApp {
  app: FastifyInstance;
  metrics: ServerMetrics;
  /** End every open event stream, so that a graceful close is not held open by them. */
  endStreams(): void;
  /**
   * The server is stopping: from now on /readyz and any new request answer 503 (a problem
   * document with Retry-After), and every response says `Connection: close`.
   */
  startDraining(): void;
  /** Resolves once no request taken before the drain is still being answered. */
  settled(): Promise<void>;
}

/** The status a request is counted under when its client left before any answer (nginx's). */
const CLIENT_CLOSED = 499;

/** Failed authentications per client address in a window; past them the address gets 429 (src/server/auth.ts). */
export const FAILED_AUTH_LIMIT = { max: 20, windowMs: 60_000 };

/** HTTP methods in the order Allow lists them. */
const METHOD_ORDER = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

/**
 * The methods each route path takes, for the 405 of a method it does not: path patterns
 * (`/orders/:id`) as regular expressions, matched as the router matches them.
 */
function routeTable() {
  const paths = new Map<string, { pattern: RegExp; methods: Set<string> }>();
  return {
    add(url: string, methods: string | string[]) {
      if (url.includes('*')) return; // CORS's catch-all OPTIONS route is not a resource
      const entry = paths.get(url) ?? { pattern: new RegExp(`^${url.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/:[A-Za-z0-9_]+/g, '[^/]+')}$`), methods: new Set<string>() };
      for (const m of [methods].flat()) entry.methods.add(m.toUpperCase());
      paths.set(url, entry);
    },
    /** The methods the path takes, in Allow order; empty when no route has the path. */
    allowed(path: string): string[] {
      const methods = new Set<string>();
      for (const { pattern, methods: own } of paths.values()) if (pattern.test(path)) for (const m of own) methods.add(m);
      if (methods.has('GET')) methods.add('HEAD');
      return METHOD_ORDER.filter((m) => methods.has(m));
    },
  };
}

/** The request headers every route reads: never refused (an insane X-Request-Id is replaced, a malformed traceparent ignored). */
const TRACING_HEADERS = {
  'x-request-id': { type: 'string', description: 'your id for this request (1 to 200 printable ASCII characters): sent back, logged, and in any problem document; otherwise the server makes one' },
  traceparent: { type: 'string', description: 'W3C Trace Context: its trace id is logged with the request' },
};

/** Query parameters a route declares as whole numbers: sent as text, read as numbers before validation. */
function integerQueryFields(querystring: unknown): string[] {
  const properties = (querystring as { properties?: Record<string, { type?: string }> } | undefined)?.properties ?? {};
  return Object.entries(properties)
    .filter(([, schema]) => schema.type === 'integer')
    .map(([name]) => name);
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
  let draining = false;
  /** Requests taken (not refused by the drain) and not yet answered, and who waits for none. */
  let inFlight = 0;
  let onSettled: (() => void) | undefined;
  const streams = new Set<() => void>();
  const metrics = createServerMetrics({ sseClients: () => streams.size });
  const app = Fastify({
    bodyLimit: BODY_LIMIT,
    // The caller's X-Request-Id when it is sane, else a new UUID: in the log (as
    // request_id), on every response and in every problem document.
    genReqId: (req: IncomingMessage) => requestIdOf(req.headers['x-request-id']) ?? randomUUID(),
    // Every log line of a request carries the W3C trace id its caller sent (traceparent).
    childLoggerFactory: (logger, bindings, options, rawReq) => logger.child({ ...bindings, ...traceOf(rawReq.headers.traceparent) }, options),
    // One line per request, written by the onResponse hook below, never the body or a token.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    logger:
      opts.logStream === false
        ? false
        : {
            level: 'info',
            stream: opts.logStream ?? process.stderr,
            redact: { paths: ['req.headers.authorization', 'headers.authorization'], censor: '[redacted]' },
            base: { service: 'stockctl' },
          },
    // Unknown fields are an error, never silently dropped; types are never coerced (the
    // whole numbers of a query string are read as numbers below, by name). Every failing
    // field is reported (a 422 lists at most 20), with the schema that failed (verbose),
    // whose description says in words what the value must be.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: true, verbose: true } },
    // Keep-alive connections that sit idle are closed at shutdown; busy ones finish first.
    forceCloseConnections: 'idle',
    // While draining, new requests get our own 503 (a problem document, Retry-After), below.
    return503OnClosing: false,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // A URL the router cannot read (a bad %-escape, an overlong segment) never reaches a
    // route or its hooks: answered here, as a problem document, with its log line.
    frameworkErrors: (err, request, reply) => {
      sendProblem(reply, request, err);
      logRequest(request, reply.statusCode, reply.elapsedTime);
      metrics.observeRequest(request.method, routeLabel(undefined), reply.statusCode, reply.elapsedTime / 1000);
    },
    // Refused by Node's HTTP parser before there is a request (a 100,000-character URL is
    // a 431): a problem document too, and a log line, never Fastify's own JSON.
    clientErrorHandler(this: FastifyInstance, err, socket) {
      const answer = clientErrorResponse(err, socket);
      if (answer) {
        socket.write(answer.raw);
        this.log.info({ request_id: answer.requestId, status: answer.status, code: answer.code }, 'request refused before routing');
      }
      socket.destroy(err);
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  // First of all hooks: the request id on the response, whatever answers it (a route, a
  // hook's refusal, a stream written by hand), and no new work once the server stops.
  app.addHook('onRequest', async (request, reply) => {
    reply.raw.setHeader('x-request-id', request.id);
    // Measured when its response is done or its connection gone, whatever answered it (an
    // event stream included); a client that left before any answer is counted as 499.
    reply.raw.once('close', () => {
      const status = reply.raw.headersSent ? reply.raw.statusCode : CLIENT_CLOSED;
      metrics.observeRequest(request.method, routeLabel(request.routeOptions.url), status, reply.elapsedTime / 1000);
    });
    if (draining) {
      throw new HttpProblem(503, 'shutting_down', 'The server is shutting down; send the request again (to another instance, or to this one once it is back).', {}, {
        'retry-after': String(RETRY_AFTER_S),
      });
    }
    // In flight until its response is done or its connection gone.
    inFlight++;
    reply.raw.once('close', () => {
      inFlight--;
      if (inFlight === 0) onSettled?.();
    });
  });
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'stockctl order API',
        version: STOCKCTL_VERSION,
        description:
          'Reserve stock for orders without overselling, pay, cancel, fulfil; live stock events. ' +
          'Errors are application/problem+json (RFC 9457) with `code` equal to the CLI error code and `request_id` equal to the X-Request-Id response header. ' +
          'Every response carries X-Request-Id: the one sent when it is 1 to 200 printable ASCII characters, else a new UUID; a W3C traceparent header is read into the log. ' +
          'A path the server has, with a method it does not take, is 405 method_not_allowed with Allow; a path it does not have is 404 route_not_found.',
      },
      // Relative: the server the document was fetched from.
      servers: [{ url: '/', description: 'this server' }],
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'a token from `stockctl token create`' } } },
      // Every route needs a token unless it says otherwise (security: [] on the public ones).
      security: [{ bearer: [] }],
      tags: [
        { name: 'orders', description: 'reserve, pay, cancel, fulfil' },
        { name: 'stock', description: 'stock levels and live changes' },
        { name: 'locations', description: 'the warehouses and stores that hold stock' },
        { name: 'meta', description: 'health, readiness, metrics and this document' },
      ],
    },
    // Shared schemas appear under their own $id in components.schemas.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`) },
    // A route whose body may be omitted says so (x-body-optional): @fastify/swagger marks every body required.
    transformObject: (document) => {
      if (!('openapiObject' in document)) return document.swaggerObject;
      const { openapiObject } = document;
      for (const item of Object.values(openapiObject.paths ?? {})) {
        for (const op of Object.values(item as Record<string, { requestBody?: { required?: boolean }; 'x-body-optional'?: boolean }>)) {
          if (!op || typeof op !== 'object' || !('x-body-optional' in op)) continue;
          if (op.requestBody) op.requestBody.required = false;
          delete op['x-body-optional'];
        }
      }
      return openapiObject;
    },
  });
  // Only the failed authentications and, with --token-rate-limit, each token's requests
  // are counted (src/server/auth.ts): no route is limited as such.
  await app.register(rateLimit, { global: false });
  if (opts.corsOrigins && opts.corsOrigins.length > 0) {
    const origins = new Set(opts.corsOrigins);
    await app.register(cors, {
      // A browser checkout on one of these origins may read (GET, HEAD, and their
      // preflight); anything else gets no CORS headers, and a browser refuses it.
      delegator: (request, done) => {
        const origin = request.headers.origin;
        const preflight = request.method === 'OPTIONS' && typeof request.headers['access-control-request-method'] === 'string';
        const reads = request.method === 'GET' || request.method === 'HEAD' || preflight;
        if (typeof origin !== 'string' || !origins.has(origin) || !reads) return done(null, { origin: false });
        done(null, {
          origin,
          methods: ['GET', 'HEAD'],
          allowedHeaders: ['Authorization', 'Last-Event-ID', 'X-Request-Id', 'traceparent'],
          exposedHeaders: ['X-Request-Id', 'Link', 'Retry-After', 'WWW-Authenticate'],
          maxAge: 600,
        });
      },
    });
  }
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
  app.addSchema(LevelItem);
  app.addSchema(Location);
  app.addSchema(Allocation);
  const routes = routeTable();
  app.addHook('onRoute', (route) => {
    routes.add(route.url, route.method);
    // A route without query parameters of its own takes none: an unknown one is a 422, as
    // an unknown body field is, never silently ignored (`POST /orders?ttl=1h`).
    if (!route.schema?.querystring) route.schema = { ...route.schema, querystring: { type: 'object', properties: {}, additionalProperties: false } };
    // Every route reads the tracing headers; the document says so.
    const headers = (route.schema.headers ?? {}) as { properties?: Record<string, unknown> };
    route.schema.headers = { ...headers, type: 'object', properties: { ...headers.properties, ...TRACING_HEADERS }, additionalProperties: true };
    // A query string is text: its whole numbers (`?limit=20`) are read as numbers, and only
    // those written as digits, so that `limit=1e2` or `limit=+5` is refused, not guessed at.
    const integers = integerQueryFields(route.schema.querystring);
    if (integers.length > 0) {
      const read = async (request: FastifyRequest) => {
        const query = request.query as Record<string, unknown>;
        for (const name of integers) if (typeof query[name] === 'string' && /^\d{1,15}$/.test(query[name])) query[name] = Number(query[name]);
      };
      route.preValidation = [read, ...[route.preValidation ?? []].flat()];
    }
  });

  const limits = {
    failures: app.createRateLimit({ max: FAILED_AUTH_LIMIT.max, timeWindow: FAILED_AUTH_LIMIT.windowMs }),
    perToken:
      opts.tokenRateLimit === undefined
        ? undefined
        : { max: opts.tokenRateLimit, check: app.createRateLimit({ max: opts.tokenRateLimit, timeWindow: 60_000, keyGenerator: (request) => `token:${request.caller?.name}` }) },
  };
  const context: ServerContext = {
    db: opts.db,
    sql: opts.sql,
    settings: opts.settings,
    paymentWindows: opts.paymentWindows,
    strategy: opts.strategy,
    splitPolicy: opts.splitPolicy,
    feed: opts.feed,
    maxStreams: opts.maxStreams,
    metricsMaxSkus: opts.metricsMaxSkus,
    metrics,
    draining: () => draining,
    requireRole: authenticator(opts.db, limits),
    trackStream(end) {
      if (streams.size >= opts.maxStreams) return undefined;
      // Its own function, so that the same `end` twice holds two places.
      const place = () => end();
      streams.add(place);
      return () => streams.delete(place);
    },
  };

  // While draining, no connection is kept: a keep-alive client opens its next one elsewhere.
  app.addHook('onSend', async (_request, reply) => {
    if (draining) reply.header('connection', 'close');
  });
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
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0];
    const allowed = routes.allowed(path);
    if (allowed.length > 0) {
      return sendProblem(
        reply,
        request,
        new HttpProblem(405, 'method_not_allowed', `${path} does not take ${request.method}; it takes ${allowed.join(', ')}.`, { allowed_methods: allowed }, { allow: allowed.join(', ') }),
      );
    }
    return sendProblem(reply, request, new HttpProblem(404, 'route_not_found', `There is no ${request.method} ${path}; see GET /openapi.json for the routes.`));
  });

  await app.register(metaRoutes, context);
  await app.register(orderRoutes, context);
  await app.register(stockRoutes, context);
  await app.register(locationRoutes, context);

  return {
    app,
    metrics,
    endStreams: () => {
      for (const end of [...streams]) end();
    },
    startDraining: () => {
      draining = true;
    },
    settled: () =>
      inFlight === 0
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            onSettled = resolve;
          }),
  };
}
