/**
 * The server's one log line per request (method, url, status, ms, actor), never a body or
 * a token: a token pasted into the query string by mistake is masked.
 */
import type { FastifyRequest } from 'fastify';
import { TOKEN_PATTERN, TOKEN_PREFIX } from '../engine/tokens.js';

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
