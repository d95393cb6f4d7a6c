/**
 * Bearer tokens and the role check. Runs as the route's onRequest hook, before the body
 * is read or validated: a caller without a valid token learns nothing about the route's
 * input rules, and makes the server parse nothing.
 */
import type { FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import type { Db } from '../db/client.js';
import { authenticateToken, roleAllows, touchToken, type Caller, type Role } from '../engine/tokens.js';
import { HttpProblem } from './problems.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The token's owner: its name is the actor of every change this request makes. */
    caller?: Caller;
  }
}

const CHALLENGE = { 'www-authenticate': 'Bearer realm="stockctl"' };

/** last_used_at is written at most once a minute per token: not a write per request. */
const TOUCH_EVERY_MS = 60_000;

export function authenticator(db: Db) {
  const touched = new Map<string, number>();
  return function requireRole(needed: Role): onRequestAsyncHookHandler {
    return async (request: FastifyRequest) => {
      const header = request.headers.authorization;
      const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
      if (!match) {
        throw new HttpProblem(401, 'unauthorized', 'Send a token as "Authorization: Bearer <token>" (create one with `stockctl token create`).', {}, CHALLENGE);
      }
      const caller = await authenticateToken(db, match[1]);
      if (!caller) {
        throw new HttpProblem(401, 'unauthorized', 'The bearer token is unknown or revoked; ask for a new one.', {}, {
          'www-authenticate': 'Bearer realm="stockctl", error="invalid_token"',
        });
      }
      request.caller = caller; // logged as the actor, also when refused below
      if (!roleAllows(caller.role, needed)) {
        throw new HttpProblem(403, 'forbidden', `Token ${caller.name} has role ${caller.role}; this needs role ${needed} or above.`, {
          role: caller.role,
          required_role: needed,
        });
      }
      const now = Date.now();
      if ((touched.get(caller.name) ?? 0) + TOUCH_EVERY_MS < now) {
        touched.set(caller.name, now);
        touchToken(db, caller.name).catch(() => touched.delete(caller.name));
      }
    };
  };
}

export type RequireRole = ReturnType<typeof authenticator>;
