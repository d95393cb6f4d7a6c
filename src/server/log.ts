/**
 * The server's one log line per request (method, url, status, ms, actor; the request id
 * and trace id come with every line of the request), never a body or a token: a token
 * pasted into the query string by mistake is masked.
 */
import type { FastifyRequest } from 'fastify';
import { TOKEN_PATTERN, TOKEN_PREFIX } from '../engine/tokens.js';

/** A request id a caller may choose: 1 to 200 printable ASCII characters, no spaces (two headers joined by ", " are not one). */
const SANE_REQUEST_ID = /^[\x21-\x7e]{1,200}$/;

/** The X-Request-Id to keep, or undefined when there is none or it is not sane (then the server makes one). */
export function requestIdOf(header: string | string[] | undefined): string | undefined {
  return typeof header === 'string' && SANE_REQUEST_ID.test(header) ? header : undefined;
}

/** W3C Trace Context: version-traceid-parentid-flags, lower-case hex, no all-zero ids, version ff invalid. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(?:-.*)?$/;

/** The trace id a `traceparent` header names, for the log; nothing when it is absent or malformed. */
export function traceOf(header: string | string[] | undefined): { trace_id?: string } {
  const value = typeof header === 'string' ? header.trim() : '';
  const match = TRACEPARENT.exec(value);
  if (!match) return {};
  const [, version, traceId, parentId] = match;
  if (version === 'ff' || /^0+$/.test(traceId) || /^0+$/.test(parentId)) return {};
  // Version 00 has exactly four fields; later versions may add more.
  if (version === '00' && value.length !== 55) return {};
  return { trace_id: traceId };
}

export function logRequest(request: FastifyRequest, status: number, elapsedMs: number): void {
  request.log.info(
    {
      method: request.method,
      url: request.url.replace(TOKEN_PATTERN, `${TOKEN_PREFIX}[redacted]`),
      status,
      ms: Math.round(elapsedMs * 10) / 10,
      actor: request.caller?.name,
    },
    'request',
  );
}
