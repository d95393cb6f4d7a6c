/**
 * Bearer tokens and the role check. Runs as the route's onRequest hook, before the body
 * is read or validated: a caller without a valid token learns nothing about the route's
 * input rules, and makes the server parse nothing.
 *
 * Failed authentications are counted per client address (@fastify/rate-limit's store).
 * Past the limit, that address gets 429 for every request that does not authenticate: at
 * once, without a database lookup, when it sends no token or one already refused (the
 * same wrong token 300 times costs one lookup); a token never seen before is looked up,
 * so that a valid one is still served, also one first used while its address is limited.
 * A token that works is always looked up, so that a revoke takes effect at once.
 */
import type { FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import type { Db } from '../db/client.js';
import { authenticateToken, hashToken, roleAllows, touchToken, type Caller, type Role } from '../engine/tokens.js';
import { formatWindow } from '../engine/windows.js';
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
/** Tokens seen to fail, remembered (as hashes) so that a limited address repeating one costs no lookup; the oldest are forgotten first. */
const REFUSED_TOKENS = 10_000;

/** A limiter made by @fastify/rate-limit's createRateLimit: the state of the request's key, counted or only read. */
type Limiter = (request: FastifyRequest, opts?: { increment?: boolean }) => Promise<
  { isAllowed: true; key: string } | { isAllowed: false; key: string; max: number; timeWindow: number; remaining: number; ttlInSeconds: number; isExceeded: boolean }
>;

export interface AuthLimits {
  /** Failed authentications per client address. */
  failures: Limiter;
  /** Requests per token a minute (serve --token-rate-limit). */
  perToken?: { max: number; check: Limiter };
}

/** A token that is unknown, or was revoked: 401, as every route answers it. */
export const invalidToken = () =>
  new HttpProblem(401, 'unauthorized', 'The bearer token is unknown or revoked; ask for a new one.', {}, {
    'www-authenticate': 'Bearer realm="stockctl", error="invalid_token"',
  });

/** A token whose role does not reach the route's: 403. */
export const roleTooLow = (name: string, role: Role, needed: Role) =>
  new HttpProblem(403, 'forbidden', `Token ${name} has role ${role}; this needs role ${needed} or above.`, { role, required_role: needed });

const tooMany = (detail: string, retryAfterS: number) =>
  new HttpProblem(429, 'too_many_requests', detail, {}, { 'retry-after': String(Math.max(1, retryAfterS)) });

export function authenticator(db: Db, limits: AuthLimits) {
  const touched = new Map<string, number>();
  // A revoked token never works again, so a refusal may be remembered as long as room allows.
  const refused = new Set<string>();
  const refuse = (hash: string) => {
    refused.delete(hash);
    refused.add(hash);
    if (refused.size > REFUSED_TOKENS) refused.delete(refused.values().next().value!);
  };

  /** A failed authentication: counted against the address; the 401, or the 429 once the address is limited. */
  const failed = async (request: FastifyRequest, problem: HttpProblem, limited: HttpProblem | undefined): Promise<never> => {
    await limits.failures(request);
    throw limited ?? problem;
  };

  return function requireRole(needed: Role): onRequestAsyncHookHandler {
    return async (request: FastifyRequest) => {
      const header = request.headers.authorization;
      const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
      const hash = match ? hashToken(match[1]) : undefined;
      const state = await limits.failures(request, { increment: false });
      const limited =
        !state.isAllowed && state.remaining === 0
          ? tooMany(
              `Too many failed authentications from this address (${state.max} in ${formatWindow(state.timeWindow / 1000)}); try again in ${state.ttlInSeconds} s, with a valid token.`,
              state.ttlInSeconds,
            )
          : undefined;
      if (limited && (!hash || refused.has(hash))) return failed(request, limited, limited);
      if (!match) {
        return failed(request, new HttpProblem(401, 'unauthorized', 'Send a token as "Authorization: Bearer <token>" (create one with `stockctl token create`).', {}, CHALLENGE), limited);
      }
      const caller = await authenticateToken(db, match[1]);
      if (!caller) {
        refuse(hash!);
        return failed(request, invalidToken(), limited);
      }
      request.caller = caller; // logged as the actor, also when refused below
      if (limits.perToken) {
        const used = await limits.perToken.check(request);
        if (!used.isAllowed && used.isExceeded) {
          throw tooMany(`Token ${caller.name} made more than ${limits.perToken.max} requests in a minute (serve --token-rate-limit); try again in ${used.ttlInSeconds} s.`, used.ttlInSeconds);
        }
      }
      if (!roleAllows(caller.role, needed)) throw roleTooLow(caller.name, caller.role, needed);
      const now = Date.now();
      if ((touched.get(caller.name) ?? 0) + TOUCH_EVERY_MS < now) {
        touched.set(caller.name, now);
        touchToken(db, caller.name).catch(() => touched.delete(caller.name));
      }
    };
  };
}

export type RequireRole = ReturnType<typeof authenticator>;
