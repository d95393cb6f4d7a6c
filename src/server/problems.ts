/**
 * The one mapping from errors to HTTP: every domain error becomes an RFC 9457 problem
 * document whose `code` is the CLI's error code, and whose status follows from the CLI's
 * exit code, as src/cli/run.ts maps the same errors to exit codes.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { StockctlError, type Remedy } from '../errors.js';
import { publicMessage, sqlState, toDomainError } from '../db/errors.js';
import { MUST_BE_WORDS, PROBLEM_MEDIA_TYPE } from './schemas.js';

/** Exit code → HTTP status: 2 invalid input, 3 short of stock, 4 not found, 5 refused by state, 7 database down. */
const STATUS_BY_EXIT: Record<number, number> = { 2: 422, 3: 409, 4: 404, 5: 409, 7: 503 };
/**
 * Codes whose status is not their exit code's: an Idempotency-Key reused with another
 * request is 422, as the IETF Idempotency-Key draft says (the CLI keeps exit 5).
 */
const STATUS_BY_CODE: Record<string, number> = { ref_conflict: 422 };

/** Seconds a client is told to wait (Retry-After) when the database is away or the server is stopping. */
export const RETRY_AFTER_S = 5;
/** At most this many failing fields are listed in a 422's `errors`. */
export const MAX_LISTED_ERRORS = 20;

const TITLES: Record<number, string> = {
  400: 'Malformed request',
  401: 'Authentication required',
  403: 'Forbidden',
  404: 'Not found',
  405: 'Method not allowed',
  408: 'Request timeout',
  409: 'Conflict with the current state',
  413: 'Request body too large',
  414: 'URI too long',
  415: 'Unsupported media type',
  422: 'Invalid input',
  429: 'Too many requests',
  431: 'Request header fields too large',
  500: 'Internal error',
  503: 'Service unavailable',
};

export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export interface ProblemDocument {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  code: string;
  request_id: string;
  [extra: string]: unknown;
}

/** Where a problem happened: the request's path and id. */
export interface ProblemContext {
  instance?: string;
  requestId: string;
}

/**
 * The engine's details under the API's names: one name per field, so a SKU is always
 * `skus` (the CLI's JSON also says `sku` where one SKU is meant).
 */
function apiDetails(details: Record<string, unknown>): Record<string, unknown> {
  if (!('sku' in details)) return details;
  const { sku, ...rest } = details;
  return { skus: [sku], ...rest };
}

/** The engine's sentence without its final full stop, to go on with a clause. */
const clause = (message: string) => message.replace(/\.$/, '');

/** What an HTTP client can do about a refusal, in its own terms (the CLI's are in src/cli/wording.ts). */
const REMEDIES: Record<Remedy, (message: string) => string> = {
  list_stock: (m) => `${clause(m)}; list them with GET /stock.`,
  guarded_strategy: (m) => `${clause(m)}; try again.`,
  allow_late: (m) => `${m} Send {"allow_late": true} to sell it anyway if stock remains.`,
  restock: (m) => `${clause(m)}; send {"restock": true} (role support) to cancel it and put its units back on hand.`,
};

const httpMessage = (err: StockctlError) => (err.remedy ? REMEDIES[err.remedy](err.message) : err.message);

export function problemDocument(status: number, code: string, detail: string, details: Record<string, unknown>, at: ProblemContext): ProblemDocument {
  return {
    type: `urn:stockctl:problem:${code}`,
    title: TITLES[status] ?? 'Error',
    status,
    detail,
    ...(at.instance ? { instance: at.instance } : {}),
    code,
    request_id: at.requestId,
    ...apiDetails(details),
  };
}

/** Fastify's own request errors that are the client's fault, by code. */
const FASTIFY_CLIENT_ERRORS: Record<string, { status: number; code: string; detail: (e: FastifyError) => string }> = {
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, code: 'malformed_json', detail: () => 'The request body is not valid JSON; send one JSON object.' },
  FST_ERR_CTP_EMPTY_JSON_BODY: {
    status: 400,
    code: 'malformed_json',
    detail: () => 'The request says Content-Type: application/json but has an empty body; send a JSON object, or no Content-Type.',
  },
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'body_too_large', detail: () => 'The request body is larger than 64 KiB; send a smaller one.' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    status: 415,
    code: 'unsupported_media_type',
    detail: () => 'Send request bodies as JSON, with Content-Type: application/json.',
  },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, code: 'malformed_request', detail: () => 'The Content-Length does not match the body sent.' },
  FST_ERR_BAD_URL: { status: 400, code: 'malformed_url', detail: () => 'The URL is not valid (a bad %-escape?); percent-encode it as UTF-8.' },
  FST_ERR_MAX_PARAM_LENGTH: {
    status: 414,
    code: 'uri_too_long',
    detail: () => `A part of the path is longer than ${MAX_PARAM_LENGTH} characters; no order id or ref is that long.`,
  },
};

/** The longest path parameter the router accepts (an order id, a ref, a SKU): longer is 414. */
export const MAX_PARAM_LENGTH = 1000;

interface AjvError {
  instancePath: string;
  schemaPath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
  /** With the validator's `verbose` option: the schema that failed. */
  parentSchema?: { description?: string };
}

/**
 * A choice (anyOf) fails once per branch, then as a whole: said once. A choice of
 * constants names the values allowed; any other choice says what the branch that got
 * furthest into the value says (`sku=bad!` is not a SKU, rather than "not an array").
 */
function oneErrorPerChoice(errors: AjvError[]): AjvError[] {
  const out: AjvError[] = [];
  for (const e of errors) {
    if (e.keyword !== 'anyOf') {
      out.push(e);
      continue;
    }
    const branches: AjvError[] = [];
    while (out.length > 0 && out[out.length - 1].schemaPath.startsWith(`${e.schemaPath}/`)) branches.unshift(out.pop()!);
    if (branches.length > 0 && branches.every((b) => b.keyword === 'const' && b.instancePath === e.instancePath)) {
      const values = branches.map((b) => JSON.stringify(b.params.allowedValue)).join(', ');
      out.push({ ...e, keyword: 'enum', message: `must be one of ${values}` });
      continue;
    }
    const deepest = branches.reduce<AjvError | undefined>((best, b) => (!best || b.instancePath.length > best.instancePath.length ? b : best), undefined);
    out.push(deepest ?? e);
  }
  return out;
}

/** Keywords whose failure the schema's words say better than the validator does. */
const WORDED_KEYWORDS = new Set(['pattern', 'type', 'minimum', 'maximum']);

/**
 * One sentence for a schema violation, and every failing field (up to MAX_LISTED_ERRORS),
 * each named as the caller wrote it.
 */
function validationSentence(errors: AjvError[], context: string | undefined): { detail: string; details: Record<string, unknown> } {
  const where = context === 'body' ? 'body' : context === 'querystring' ? 'query' : context === 'params' ? 'path' : (context ?? 'request');
  const seen = new Set<string>();
  const listed = oneErrorPerChoice(errors).flatMap((e) => {
    const path = e.instancePath.replace(/^\//, '').replace(/\//g, '.');
    const extra = e.keyword === 'additionalProperties' ? String(e.params.additionalProperty) : e.keyword === 'required' ? String(e.params.missingProperty) : '';
    const field = [where === 'body' ? '' : where, path, extra].filter(Boolean).join('.') || where;
    const words = e.parentSchema?.description === undefined ? undefined : MUST_BE_WORDS.get(e.parentSchema.description);
    let message: string;
    if (e.keyword === 'additionalProperties') message = `unknown field "${field}"`;
    else if (e.keyword === 'required') message = `missing field "${field}"`;
    else if (words !== undefined && WORDED_KEYWORDS.has(e.keyword)) message = `"${field}" must be ${words}`;
    else if (e.keyword === 'enum' && Array.isArray(e.params.allowedValues)) message = `"${field}" must be one of ${e.params.allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
    else message = `"${field}" ${e.message ?? 'is invalid'}`;
    // A field that fails twice (a type and a bound, as words) is listed once.
    if (seen.has(message)) return [];
    seen.add(message);
    return [{ field, message }];
  });
  const shown = listed.slice(0, MAX_LISTED_ERRORS);
  const more = listed.length - shown.length;
  const first = listed[0]?.message ?? 'the request is invalid';
  const others = listed.length > 1 ? ` (and ${listed.length - 1} more: see errors)` : '';
  const sentence = `Invalid ${where === 'body' ? 'request body' : where === 'query' ? 'query string' : where}: ${first}${others}.`;
  return { detail: sentence, details: { errors: shown, ...(more > 0 ? { errors_omitted: more } : {}) } };
}

/** What to answer for any error a route or hook threw. */
export function toProblem(err: unknown, at: ProblemContext): { doc: ProblemDocument; headers: Record<string, string>; internal: boolean } {
  if (err instanceof HttpProblem) {
    return { doc: problemDocument(err.status, err.code, err.message, err.details, at), headers: err.headers, internal: false };
  }
  const fastifyError = err as FastifyError & { validation?: AjvError[]; validationContext?: string };
  if (fastifyError?.validation) {
    const { detail, details } = validationSentence(fastifyError.validation, fastifyError.validationContext);
    return { doc: problemDocument(422, 'invalid_input', detail, details, at), headers: {}, internal: false };
  }
  const known = typeof fastifyError?.code === 'string' ? FASTIFY_CLIENT_ERRORS[fastifyError.code] : undefined;
  if (known) return { doc: problemDocument(known.status, known.code, known.detail(fastifyError), {}, at), headers: {}, internal: false };

  const mapped = toDomainError(err);
  if (mapped instanceof StockctlError) {
    const status = STATUS_BY_CODE[mapped.code] ?? STATUS_BY_EXIT[mapped.exitCode] ?? 500;
    const headers: Record<string, string> = status === 503 ? { 'retry-after': String(RETRY_AFTER_S) } : {};
    return { doc: problemDocument(status, mapped.code, httpMessage(mapped), mapped.details ?? {}, at), headers, internal: status === 500 };
  }
  // A Fastify error we did not list, with a 4xx status of its own: keep its status.
  if (typeof fastifyError?.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    return {
      doc: problemDocument(fastifyError.statusCode, 'bad_request', `${publicMessage(err).replace(/\.$/, '')}.`, {}, at),
      headers: {},
      internal: false,
    };
  }
  const state = sqlState(err);
  return {
    doc: problemDocument(500, 'internal_error', `Internal error${state ? ` (SQLSTATE ${state})` : ''}; the server log has the details.`, {}, at),
    headers: {},
    internal: true,
  };
}

/**
 * What Node's HTTP parser refused before there was a request to route (a URL or headers
 * over its limit, a request that is not HTTP, one that never finished arriving): the raw
 * response to write to the socket, a problem document like every other answer; undefined
 * when the client is gone.
 */
export function clientErrorResponse(
  err: NodeJS.ErrnoException,
  socket: { destroyed: boolean; writable: boolean },
): { status: number; code: string; raw: string; requestId: string } | undefined {
  if (err.code === 'ECONNRESET' || socket.destroyed || !socket.writable) return undefined;
  const [status, code, detail] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'headers_too_large', `The request line and headers are larger than ${Math.round(http.maxHeaderSize / 1024)} KiB (a URL that long?); no route takes a URL or header that large.`]
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'request_timeout', 'The request did not arrive in time; send it again.']
        : [400, 'malformed_request', 'The request is not valid HTTP/1.1.'];
  // No request was read, so none of its headers: the id is a new one.
  const requestId = randomUUID();
  const body = JSON.stringify(problemDocument(status, code, detail, {}, { requestId }));
  const raw =
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Type: ${PROBLEM_MEDIA_TYPE}; charset=utf-8\r\n` +
    `X-Request-Id: ${requestId}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
  return { status, code, raw, requestId };
}

export function sendProblem(reply: FastifyReply, request: FastifyRequest, err: unknown): FastifyReply {
  const { doc, headers, internal } = toProblem(err, { instance: request.url.split('?')[0], requestId: request.id });
  if (internal) {
    // Never the drizzle wrapper's message: it carries the query's bound parameters.
    request.log.error({ err: { message: publicMessage(err), stack: (err as Error)?.stack?.split('\n').slice(1).join('\n'), sqlstate: sqlState(err) } }, 'internal error');
  }
  return reply.code(doc.status).header('x-request-id', request.id).headers(headers).type(PROBLEM_MEDIA_TYPE).send(doc);
}
