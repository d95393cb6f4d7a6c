/**
 * API tokens for `stockctl serve`. A token is 32 random bytes shown once when created;
 * only its SHA-256 is stored, so a copy of the database gives no one access. The
 * token's name is the actor recorded with every change made with it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { TOKEN_ROLES } from '../db/schema.js';
import { InvalidInputError, NotFoundError, RefusedError } from '../errors.js';
import { SQLSTATE, sqlState } from '../db/errors.js';
import { quote } from './input.js';
import { execute, iso, rows } from '../db/query.js';

export type Role = (typeof TOKEN_ROLES)[number];
export const ROLES: readonly Role[] = TOKEN_ROLES;

/**
 * The role lattice, one line: read < shop < support < admin. Each role may do all that
 * the roles below it may: a shop's checkout reserves, pays and cancels its own pending
 * orders; support also cancels paid orders, extends windows and moves fulfilment;
 * admin may do everything support may (and is the role for future admin routes).
 */
const RANK: Record<Role, number> = { read: 0, shop: 1, support: 2, admin: 3 };

export function roleAllows(role: Role, needed: Role): boolean {
  return RANK[role] >= RANK[needed];
}

/** Token names are actors: short, printable, no spaces (they appear in ledgers and logs). */
export const TOKEN_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
export const TOKEN_PREFIX = 'stk_';
/** A token anywhere in a text (to mask it in a log line). */
export const TOKEN_PATTERN = new RegExp(`${TOKEN_PREFIX}[A-Za-z0-9_-]+`, 'g');

export function parseTokenName(raw: string): string {
  if (!TOKEN_NAME_PATTERN.test(raw)) {
    throw new InvalidInputError(
      `Invalid token name ${quote(raw)}: use 1 to 64 letters, digits, dots, dashes, underscores or @, starting with a letter or digit.`,
    );
  }
  return raw;
}

export function parseRole(raw: string): Role {
  if (!(ROLES as readonly string[]).includes(raw)) {
    throw new InvalidInputError(`Invalid role ${quote(raw)}: use one of ${ROLES.join(', ')}.`);
  }
  return raw as Role;
}

export const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');

export interface CreatedToken {
  name: string;
  role: Role;
  /** The secret itself: shown this once, never stored. */
  token: string;
  created_at: string;
}

export async function createToken(db: Db, input: { name: string; role: Role; actor: string }): Promise<CreatedToken> {
  const token = `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
  try {
    const [row] = await rows<{ createdAt: string }>(
      db,
      sql`INSERT INTO api_tokens (name, role, token_hash, created_by)
          VALUES (${input.name}, ${input.role}, ${hashToken(token)}, ${input.actor})
          RETURNING created_at AS "createdAt"`,
    );
    return { name: input.name, role: input.role, token, created_at: new Date(row.createdAt).toISOString() };
  } catch (err) {
    if (sqlState(err) === SQLSTATE.uniqueViolation) {
      throw new RefusedError(
        `A token named ${quote(input.name)} already exists (names stay taken after a revoke, so that the ledger's actors stay unambiguous); choose another name.`,
        'token_exists',
        { name: input.name },
      );
    }
    throw err;
  }
}

export interface TokenInfo {
  name: string;
  role: Role;
  created_at: string;
  created_by: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
}

export async function listTokens(db: Db): Promise<TokenInfo[]> {
  return rows<TokenInfo>(
    db,
    sql`SELECT name, role, ${iso('created_at')} AS created_at, created_by, ${iso('last_used_at')} AS last_used_at,
               ${iso('revoked_at')} AS revoked_at
          FROM api_tokens ORDER BY name`,
  );
}

export interface RevokedToken {
  name: string;
  revoked_at: string;
  /** True when it had been revoked before: nothing changed. */
  replay: boolean;
}

export async function revokeToken(db: Db, input: { name: string }): Promise<RevokedToken> {
  const [row] = await rows<{ revokedAt: string; replay: boolean }>(
    db,
    sql`WITH old AS (SELECT token_id, revoked_at FROM api_tokens WHERE name = ${input.name} FOR UPDATE)
        UPDATE api_tokens t SET revoked_at = coalesce(old.revoked_at, now())
          FROM old WHERE t.token_id = old.token_id
        RETURNING ${iso('t.revoked_at')} AS "revokedAt", old.revoked_at IS NOT NULL AS replay`,
  );
  if (!row) throw new NotFoundError(`No token is named ${quote(input.name)}; list them with \`stockctl token list\`.`, 'token_not_found', { name: input.name });
  return { name: input.name, revoked_at: row.revokedAt, replay: row.replay };
}

export interface Caller {
  name: string;
  role: Role;
}

/** The live (not revoked) token with this secret, or undefined. */
export async function authenticateToken(db: Db, token: string): Promise<Caller | undefined> {
  if (!token.startsWith(TOKEN_PREFIX) || token.length > 200) return undefined;
  const [row] = await rows<Caller>(
    db,
    sql`SELECT name, role FROM api_tokens WHERE token_hash = ${hashToken(token)} AND revoked_at IS NULL`,
  );
  return row;
}

/** Record that a token was used (the server calls this at most once a minute per token). */
export async function touchToken(db: Db, name: string): Promise<void> {
  await execute(db, sql`UPDATE api_tokens SET last_used_at = now() WHERE name = ${name}`);
}

/**
 * The role of a live (not revoked) token, by name, or undefined. An event stream asks
 * this once it has joined the live feed: a revoke committed before then is seen here, one
 * committed after it arrives on the feed (src/engine/stock-events.ts).
 */
export async function liveTokenRole(db: Db, name: string): Promise<Role | undefined> {
  const [row] = await rows<{ role: Role }>(db, sql`SELECT role FROM api_tokens WHERE name = ${name} AND revoked_at IS NULL`);
  return row?.role;
}
