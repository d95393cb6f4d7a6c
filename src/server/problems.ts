/**
 * The one mapping from errors to HTTP: every domain error becomes an RFC 9457 problem
 * document whose `code` is the CLI's error code, and whose status follows from the CLI's
 * exit code, as src/cli/run.ts maps the same errors to exit codes.
 */
import http from 'node:http';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { StockctlError, type Remedy } from '../errors.js';
import { publicMessage, sqlState, toDomainError } from '../db/errors.js';
import { PATTERN_WORDS } from './schemas.js';

/** Exit code → HTTP status: 2 invalid input, 3 short of stock, 4 not found, 5 refused by state, 7 database down. */
const STATUS_BY_EXIT: Record<number, number> = { 2: 422, 3: 409, 4: 404, 5: 409, 7: 503 };

const TITLES: Record<number, string> = {
  400: 'Malformed request',
  401: 'Authentication required',
  403: 'Forbidden',
  404: 'Not found',
  408: 'Request timeout',
  409: 'Conflict with the current state',
  413: 'Request body too large',
  414: 'URI too long',
  415: 'Unsupported media type',
  422: 'Invalid input',
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
  [extra: string]: unknown;
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

export function problemDocument(status: number, code: string, detail: string, details: Record<string, unknown> = {}, instance?: string): ProblemDocument {
  return {
    type: `urn:stockctl:problem:${code}`,
    title: TITLES[status] ?? 'Error',
    status,
    detail,
    ...(instance ? { instance } : {}),
    code,
    ...details,
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
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

/** One sentence for a schema violation, naming the field as the caller wrote it. */
function validationSentence(errors: AjvError[], context: string | undefined): { detail: string; errors: { field: string; message: string }[] } {
  const where = context === 'body' ? 'body' : context === 'querystring' ? 'query' : context === 'params' ? 'path' : (context ?? 'request');
  // A choice of values (a union of constants) fails once per value, then as a whole:
  // said once, with the values allowed.
  const allowed = new Map<string, unknown[]>();
  for (const e of errors) {
    if (e.keyword === 'const') allowed.set(e.instancePath, [...(allowed.get(e.instancePath) ?? []), e.params.allowedValue]);
  }
  const said = new Set<string>();
  const merged = errors.flatMap((e): AjvError[] => {
    const values = allowed.get(e.instancePath);
    if (!values || (e.keyword !== 'const' && e.keyword !== 'anyOf')) return [e];
    if (said.has(e.instancePath)) return [];
    said.add(e.instancePath);
    return [{ ...e, keyword: 'enum', message: `must be one of ${values.map((v) => JSON.stringify(v)).join(', ')}` }];
  });
  const listed = merged.map((e) => {
    const path = e.instancePath.replace(/^\//, '').replace(/\//g, '.');
    const extra = e.keyword === 'additionalProperties' ? String(e.params.additionalProperty) : e.keyword === 'required' ? String(e.params.missingProperty) : '';
    const field = [where === 'body' ? '' : where, path, extra].filter(Boolean).join('.') || where;
    let message: string;
    if (e.keyword === 'additionalProperties') message = `unknown field "${field}"`;
    else if (e.keyword === 'required') message = `missing field "${field}"`;
    else if (e.keyword === 'pattern' && PATTERN_WORDS.has(String(e.params.pattern))) message = `"${field}" must be ${PATTERN_WORDS.get(String(e.params.pattern))}`;
    else message = `"${field}" ${e.message ?? 'is invalid'}`;
    return { field, message };
  });
  const first = listed[0]?.message ?? 'the request is invalid';
  const sentence = `Invalid ${where === 'body' ? 'request body' : where === 'query' ? 'query string' : where}: ${first}.`;
  return { detail: sentence, errors: listed };
}

/** What to answer for any error a route or hook threw. */
export function toProblem(err: unknown, instance?: string): { doc: ProblemDocument; headers: Record<string, string>; internal: boolean } {
  if (err instanceof HttpProblem) {
    return { doc: problemDocument(err.status, err.code, err.message, err.details, instance), headers: err.headers, internal: false };
  }
  const fastifyError = err as FastifyError & { validation?: AjvError[]; validationContext?: string };
  if (fastifyError?.validation) {
    const { detail, errors } = validationSentence(fastifyError.validation, fastifyError.validationContext);
    return { doc: problemDocument(422, 'invalid_input', detail, { errors }, instance), headers: {}, internal: false };
  }
  const known = typeof fastifyError?.code === 'string' ? FASTIFY_CLIENT_ERRORS[fastifyError.code] : undefined;
  if (known) return { doc: problemDocument(known.status, known.code, known.detail(fastifyError), {}, instance), headers: {}, internal: false };

  const mapped = toDomainError(err);
  if (mapped instanceof StockctlError) {
    const status = STATUS_BY_EXIT[mapped.exitCode] ?? 500;
    const headers: Record<string, string> = status === 503 ? { 'retry-after': '5' } : {};
    return { doc: problemDocument(status, mapped.code, httpMessage(mapped), mapped.details ?? {}, instance), headers, internal: status === 500 };
  }
  // A Fastify error we did not list, with a 4xx status of its own: keep its status.
  if (typeof fastifyError?.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    return {
      doc: problemDocument(fastifyError.statusCode, 'bad_request', `${publicMessage(err).replace(/\.$/, '')}.`, {}, instance),
      headers: {},
      internal: false,
    };
  }
  const state = sqlState(err);
  return {
    doc: problemDocument(500, 'internal_error', `Internal error${state ? ` (SQLSTATE ${state})` : ''}; the server log has the details.`, {}, instance),
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
export function clientErrorResponse(err: NodeJS.ErrnoException, socket: { destroyed: boolean; writable: boolean }): { status: number; code: string; raw: string } | undefined {
  if (err.code === 'ECONNRESET' || socket.destroyed || !socket.writable) return undefined;
  const [status, code, detail] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'headers_too_large', `The request line and headers are larger than ${Math.round(http.maxHeaderSize / 1024)} KiB (a URL that long?); no route takes a URL or header that large.`]
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'request_timeout', 'The request did not arrive in time; send it again.']
        : [400, 'malformed_request', 'The request is not valid HTTP/1.1.'];
  const body = JSON.stringify(problemDocument(status, code, detail));
  const raw =
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Type: application/problem+json; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
  return { status, code, raw };
}

export function sendProblem(reply: FastifyReply, request: FastifyRequest, err: unknown): FastifyReply {
  const { doc, headers, internal } = toProblem(err, request.url.split('?')[0]);
  if (internal) {
    // Never the drizzle wrapper's message: it carries the query's bound parameters.
    request.log.error({ err: { message: publicMessage(err), stack: (err as Error)?.stack?.split('\n').slice(1).join('\n'), sqlstate: sqlState(err) } }, 'internal error');
  }
  return reply.code(doc.status).headers(headers).type('application/problem+json').send(doc);
}
