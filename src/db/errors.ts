/**
 * Mapping driver errors to domain errors. We branch on SQLSTATE (found by walking
 * `err.cause`, because drizzle wraps driver errors) and never on message text; the
 * drizzle wrapper's message contains bound parameters, so it is never shown to a user.
 */
import { DatabaseUnavailableError, InvalidInputError, StockctlError } from '../errors.js';

/** postgres.js codes for connections that never came up or went away. */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'CONNECT_TIMEOUT',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
]);

interface CodedError {
  code?: unknown;
  cause?: unknown;
  message?: unknown;
}

/** The first error in the cause chain that carries a code (a SQLSTATE or a socket code). */
export function errorCode(err: unknown): string | undefined {
  let current: unknown = err;
  for (let depth = 0; current && depth < 8; depth++) {
    const { code, cause } = current as CodedError;
    if (typeof code === 'string') return code;
    current = cause;
  }
  return undefined;
}

/** A PostgreSQL SQLSTATE such as 40001, or undefined for non-database errors. */
export function sqlState(err: unknown): string | undefined {
  const code = errorCode(err);
  return code && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** Transient conflicts that a transaction may simply run again. */
export const RETRYABLE_SQLSTATES = new Set(['40001', '40P01']);

export function isRetryable(err: unknown): boolean {
  const state = sqlState(err);
  return state !== undefined && RETRYABLE_SQLSTATES.has(state);
}

/** Is this the database being unreachable (as opposed to a query being wrong)? */
export function isConnectionFailure(err: unknown): boolean {
  const code = errorCode(err);
  if (!code) return false;
  if (CONNECTION_CODES.has(code)) return true;
  // 08: connection exception; 57P0x: shutting down / cannot connect now; 53300: too many
  // connections; 28: authentication; 3D000: database does not exist.
  return /^(08|57P0|28)/.test(code) || code === '53300' || code === '3D000';
}

/**
 * Turn an error from the database layer into a domain error where we know what it
 * means; anything else is returned as is (and will be reported as a bug).
 */
export function toDomainError(err: unknown, where?: string): unknown {
  if (err instanceof StockctlError) return err;
  if (isConnectionFailure(err)) {
    const code = errorCode(err);
    const target = where ? ` at ${where}` : '';
    if (code === '53300') {
      return new DatabaseUnavailableError(
        `The database${target} is full (too many connections); retry later, or raise its max_connections.`,
      );
    }
    const why =
      code === 'CONNECT_TIMEOUT'
        ? 'did not answer in time'
        : code === 'ECONNREFUSED'
          ? 'refused the connection'
          : code === '3D000'
            ? 'has no such database'
            : code?.startsWith('28')
              ? 'rejected the credentials'
              : `is unavailable (${code})`;
    return new DatabaseUnavailableError(
      `The database${target} ${why}; check DATABASE_URL and that the server is running, then retry.`,
    );
  }
  return err;
}

/** A connection string with any password masked, safe to print. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable DATABASE_URL>';
  }
}

/** The driver's own message, never drizzle's wrapper (whose message carries bound parameters). */
export function publicMessage(err: unknown): string {
  let current: unknown = err;
  for (let depth = 0; depth < 8; depth++) {
    const next = (current as { cause?: unknown } | null)?.cause;
    if (!next || (current as { severity?: string }).severity) break;
    current = next;
  }
  return current instanceof Error ? current.message : String(current);
}

/** A DATABASE_URL that cannot even be parsed is bad input (exit 2), not an outage. */
export function checkDatabaseUrl(url: string): string {
  let protocol = '';
  try {
    protocol = new URL(url).protocol;
  } catch {
    /* reported below */
  }
  if (protocol !== 'postgres:' && protocol !== 'postgresql:') {
    throw new InvalidInputError(
      `DATABASE_URL (or --database-url) is not a PostgreSQL URL: ${protocol ? `"${protocol}" scheme` : 'cannot parse it'}; use postgres://user@host:5432/dbname.`,
    );
  }
  return url;
}
