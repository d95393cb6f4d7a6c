/**
 * Mapping driver errors to domain errors. We branch on SQLSTATE (found by walking
 * `err.cause`, because drizzle wraps driver errors) and never on message text; the
 * drizzle wrapper's message contains bound parameters, so it is never shown to a user.
 */
import { DatabaseUnavailableError, InvalidInputError, StockctlError } from '../errors.js';
import { parseDatabaseUrl } from './url.js';

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

/**
 * What to do about an error, by its code: a SQLSTATE, a SQLSTATE class (its first two
 * characters), or a postgres.js / socket code. The one table every layer consults
 * (graphile-worker keeps its retryable codes the same way).
 */
interface Policy {
  /** A transient conflict: run the transaction again after about this long (times the attempt). */
  retryAfterMs?: number;
  /** The server answered "not now" at once (full, starting up): wait for a slot and try again. */
  waitForSlot?: boolean;
  /** Database unavailable, exit 7: why, in words that follow "The database at <url>". */
  unavailable?: string;
  /** With `unavailable`: what to do instead of checking the URL and the server, and the error code it gets. */
  remedy?: { text: string; code: string };
  /** Timed out, exit 7 with code `timeout`: the whole sentence. */
  timeout?: string;
  /** With `unavailable`: what to do, where checking the URL and the server is not it. */
  advice?: string;
}

const UNREACHABLE: Policy = { unavailable: 'is unavailable' };
/** The server is there and the URL right: a session ended, a restart or a failover under way. */
const GOING_AWAY: Policy = { unavailable: 'is unavailable', advice: '; retry shortly (a restart or failover is over within seconds)' };

const POLICIES: Record<string, Policy> = {
  // Transaction conflicts: safe to run again.
  '40001': { retryAfterMs: 5 }, // serialization_failure
  '40P01': { retryAfterMs: 10 }, // deadlock_detected
  // The server answers at once but cannot take us now.
  '53300': { waitForSlot: true, unavailable: 'is full (too many connections); retry later, or raise its max_connections' },
  '57P03': { waitForSlot: true, unavailable: 'is starting up or shutting down' },
  // Deadlines (see src/db/connect.ts).
  '57014': {
    timeout:
      'A database statement ran longer than STOCKCTL_STATEMENT_TIMEOUT allows (or was cancelled by an administrator); retry later, or raise the timeout.',
  },
  '55P03': { timeout: 'Waited too long for a row or table locked by another session (lock timeout); retry shortly.' },
  '25P03': {
    timeout:
      'The database ended a transaction left idle for longer than STOCKCTL_STATEMENT_TIMEOUT; retry, and check what stalled the client.',
  },
  // Connecting, or the session went away under us.
  '08': UNREACHABLE, // connection_exception (class)
  '57P0': GOING_AWAY, // 57P01 terminated by an administrator, 57P02 crash shutdown, 57P04 database dropped
  '55000': { unavailable: 'is not accepting connections (ALLOW_CONNECTIONS false?)' }, // object_not_in_prerequisite_state
  // A standby: after a failover, a session still on the old primary, now demoted.
  '25006': { unavailable: 'is read-only (a standby, after a failover?)', advice: GOING_AWAY.advice },
  '28': { unavailable: 'rejected the credentials' }, // invalid_authorization (class)
  '3D000': { unavailable: 'has no such database' },
  // A stockctl table is missing: a database made (or restored) since the schema check.
  '42P01': {
    unavailable: 'is missing a stockctl table',
    remedy: { text: 'its schema is not migrated; run `stockctl migrate` first', code: 'not_migrated' },
  },
  ECONNREFUSED: { unavailable: 'refused the connection' },
  ENOTFOUND: { unavailable: 'has a host name that does not resolve' },
  CONNECT_TIMEOUT: { unavailable: 'did not answer in time' },
  ECONNRESET: UNREACHABLE,
  EPIPE: UNREACHABLE,
  EAI_AGAIN: UNREACHABLE,
  ETIMEDOUT: UNREACHABLE,
  EHOSTUNREACH: UNREACHABLE,
  ENETUNREACH: UNREACHABLE,
  CONNECTION_CLOSED: UNREACHABLE,
  CONNECTION_ENDED: UNREACHABLE,
  CONNECTION_DESTROYED: UNREACHABLE,
};

function policyFor(err: unknown): { code: string; policy: Policy } | undefined {
  const code = errorCode(err);
  if (!code) return undefined;
  const policy = POLICIES[code] ?? POLICIES[code.slice(0, 4)] ?? POLICIES[code.slice(0, 2)];
  return policy ? { code, policy } : undefined;
}

/** The SQLSTATEs the code branches on by name, beside the policy table above. */
export const SQLSTATE = {
  undefinedTable: '42P01',
  invalidSchemaName: '3F000',
  duplicateDatabase: '42P04',
  invalidCatalogName: '3D000',
  cannotConnectNow: '57P03',
  tooManyConnections: '53300',
  protocolViolation: '08P01',
  uniqueViolation: '23505',
  insufficientPrivilege: '42501',
} as const;

/** Did the server refuse the credentials (class 28, invalid authorization: a wrong password, no such role)? */
export function refusedCredentials(err: unknown): boolean {
  return sqlState(err)?.startsWith('28') ?? false;
}

/** Milliseconds to wait before running a transaction again, or undefined if it must not be. */
export function retryAfterMs(err: unknown): number | undefined {
  return policyFor(err)?.policy.retryAfterMs;
}

/** Is this a server that cannot take a session right now, but will soon? */
export function isWaitForSlot(err: unknown): boolean {
  return policyFor(err)?.policy.waitForSlot === true;
}

/**
 * Did the server refuse the statement itself (bad data, a constraint): a SQLSTATE outside
 * the classes of its connection or its time (08 connection, 53 resources, 55 object
 * state, 57 operator intervention, 58 system error)? Then the statement is known to have
 * written nothing. Any other error (a lost connection, a timeout, one without a SQLSTATE)
 * leaves unknown whether it committed. The batched reserve (src/engine/reserve/batched.ts) tries
 * its buyers again one by one only after such a refusal.
 */
export function refusedByServer(err: unknown): boolean {
  const state = sqlState(err);
  return state !== undefined && !/^(08|53|55|57|58)/.test(state);
}

/**
 * Turn an error from the database layer into a domain error where we know what it
 * means; anything else is returned as is (and will be reported as a bug).
 */
export function toDomainError(err: unknown, where?: string): unknown {
  if (err instanceof StockctlError) return err;
  if (sqlState(err) === '42704' && where) {
    // At connection time: a setting in the URL's query string that the server does not know.
    return new InvalidInputError(`DATABASE_URL (or --database-url) sets a parameter the server does not know: ${publicMessage(err)}.`);
  }
  const found = policyFor(err);
  if (found?.policy.timeout) return new DatabaseUnavailableError(found.policy.timeout, 'timeout');
  if (found?.policy.unavailable) {
    const target = where ? ` at ${where}` : '';
    const { unavailable, remedy, waitForSlot } = found.policy;
    if (remedy) return new DatabaseUnavailableError(`The database${target} ${unavailable} (${publicMessage(err)}): ${remedy.text}.`, remedy.code);
    const why = found.policy === UNREACHABLE || found.policy === GOING_AWAY ? `${unavailable} (${found.code})` : unavailable;
    const advice = found.policy.advice ?? (waitForSlot ? '' : '; check DATABASE_URL and that the server is running, then retry');
    return new DatabaseUnavailableError(`The database${target} ${why}${advice}.`);
  }
  return err;
}

/** A connection string with any password masked, safe to print. */
export function redactUrl(url: string): string {
  try {
    return parseDatabaseUrl(url).display;
  } catch {
    return '<unreadable DATABASE_URL>';
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

/** A DATABASE_URL that cannot be read is bad input (exit 2), not an outage. */
export function checkDatabaseUrl(url: string): string {
  parseDatabaseUrl(url);
  return url;
}
