/**
 * How stockctl connects, for every command and for `migrate`: a short connect timeout
 * for a server that is down or silent, a longer wait for one that is full, and deadlines
 * so that nothing waits forever, whatever sits between us and PostgreSQL (a pooler, a
 * dead network): the server ends statements and idle transactions that run too long,
 * and the client gives up on a query the server never answers.
 */
import net from 'node:net';
import postgres from 'postgres';
import { DatabaseUnavailableError } from '../errors.js';
import { errorCode, isWaitForSlot, SQLSTATE, sqlState } from './errors.js';
import { parseDatabaseUrl, type ConnectionTarget } from './url.js';
import { DEFAULT_STATEMENT_TIMEOUT_S } from './limits.js';

/**
 * Seconds of waiting for a server that does not answer a connection attempt before we
 * give up with exit 7. A server that refuses, or a URL whose every host refuses, fails at
 * once; this is for one that accepts and then says nothing (a frozen server, a pooler
 * that cannot reach its server). Generous, because a server swamped by a hundred
 * connection attempts at once answers them one after another: on a slow two-core machine
 * 6 s turned 45 of 100 `reserve` processes away (CI), and through a proxy that passes one
 * connection every 200 ms, 10 s still turned 27 away, 20 s none. postgres.js's own
 * default is 30 s.
 */
export const CONNECT_TIMEOUT_S = 20;

/**
 * The longest a statement waits for a lock that another session holds on a row or table
 * (lock_timeout; PostgreSQL counts each wait on its own): then it fails with 55P03, "lock
 * timeout" (exit 7). Every session that openDatabase opens has it, whatever the command or
 * strategy; never more than the statement timeout. `migrate` opens its own session, which
 * waits for another host's migrate (an advisory lock) as long as its statement timeout allows.
 */
export const LOCK_TIMEOUT_MS = 10_000;

/** Beyond the server's own statement_timeout, how long the client still waits for its answer. */
const CLIENT_GRACE_S = 10;

export interface ClientOptions {
  application?: string;
  max?: number;
  /** How long a statement may wait for a lock (lock_timeout; none when 0 or absent). */
  lockTimeoutMs?: number;
  /** The longest a statement may run or a transaction sit idle (STOCKCTL_STATEMENT_TIMEOUT). */
  statementTimeoutS?: number;
  /** Named prepared statements (off for PgBouncer in transaction mode: STOCKCTL_PREPARE=0). */
  prepare?: boolean;
  /** Send the timeouts as startup parameters (a pooler such as PgBouncer refuses them). */
  sessionSettings?: boolean;
  /** Told whenever one of the pool's connections closes (it reconnects on next use). */
  onConnectionClosed?: () => void;
  /** A session kept open however long it idles or lives (a LISTEN connection), told of each notification. */
  session?: { onNotify(channel: string, payload: string): void };
}

/** The client gave up on a database that did not answer (exit 7, with a sentence saying so). */
export class DeadlineError extends DatabaseUnavailableError {
  constructor(what: string, seconds: number) {
    super(
      `The database did not answer ${what} within ${seconds} s; check the server and anything in between (a pooler, the network), then retry.`,
      'timeout',
    );
  }
}

export function createClient(url: string, opts: ClientOptions = {}): postgres.Sql {
  return clientFor(parseDatabaseUrl(url), opts);
}

function clientFor(target: ConnectionTarget, opts: ClientOptions): postgres.Sql {
  const statementS = opts.statementTimeoutS ?? DEFAULT_STATEMENT_TIMEOUT_S;
  const connection: Record<string, string> = { application_name: opts.application ?? 'stockctl' };
  if (opts.sessionSettings !== false) {
    connection.statement_timeout = String(statementS * 1000);
    connection.idle_in_transaction_session_timeout = String(statementS * 1000);
    if (opts.lockTimeoutMs) connection.lock_timeout = String(Math.min(opts.lockTimeoutMs, statementS * 1000));
  }
  const sql = postgres(target.url, {
    // postgres.js takes arrays of hosts and ports (one per host), though its types say one.
    host: target.options.host as unknown as string | undefined,
    port: target.options.port as unknown as number | undefined,
    path: target.options.path,
    max: opts.max ?? 2,
    // postgres.js's own timer for a connection counts wall time, so on a machine too busy to
    // run us it fired while the server had answered. The first connection is ended by our
    // own deadline (connectDeadline); this one is the backstop, for the pool's later ones.
    connect_timeout: 2 * CONNECT_TIMEOUT_S,
    // A LISTEN session lives as long as its listener: no idle or age limit (0 and null: none).
    idle_timeout: opts.session ? 0 : 30,
    // onnotify is postgres.js's own option (listen() uses it), missing from its types.
    ...(opts.session ? ({ max_lifetime: null, onnotify: opts.session.onNotify } as { max_lifetime: null }) : {}),
    prepare: opts.prepare ?? true,
    onnotice: () => {},
    ...(opts.onConnectionClosed ? { onclose: opts.onConnectionClosed } : {}),
    connection,
  });
  return withClientDeadline(sql, statementS + CLIENT_GRACE_S);
}

type Pending = PromiseLike<unknown> & { cancel?: () => unknown; values?: () => unknown };

const isQuery = (value: unknown): value is Pending =>
  typeof (value as Pending | null)?.then === 'function' && typeof (value as Pending).cancel === 'function';

/**
 * Every query and transaction on `sql` gets a client-side deadline: the server's
 * statement_timeout normally answers first, but a server or pooler that never answers
 * (postgres.js can wait forever, e.g. porsager/postgres#1174) is given up on, and the
 * caller gets a DeadlineError instead of a hang. Only postgres.js's public surface is
 * used: calling `sql` as a tag or `unsafe` gives a Query (a promise with `values` and
 * `cancel`), `begin` runs a callback with a transaction's own `sql`.
 */
function withClientDeadline(sql: postgres.Sql, seconds: number): postgres.Sql {
  const timer = () => deadlineFor('a statement', seconds);

  const wrapQuery = (query: Pending): Pending => {
    const proxy: Pending = new Proxy(query, {
      get(target, prop) {
        if (prop === 'then') {
          return (onFulfilled?: (v: unknown) => unknown, onRejected?: (e: unknown) => unknown) => {
            // No cancel request: the server's statement_timeout ends the statement if the
            // server is there at all (and postgres.js leaves a failed cancel unhandled).
            const deadline = timer();
            deadline.arm();
            return raceDeadline(target, deadline).then(onFulfilled, onRejected);
          };
        }
        if (prop === 'values') return () => (target.values?.(), proxy);
        const value = Reflect.get(target, prop, target) as unknown;
        if (typeof value !== 'function') return value;
        // catch and finally go through `then` above; everything else is the query's own.
        return value.bind(prop === 'catch' || prop === 'finally' ? proxy : target);
      },
    });
    return proxy;
  };

  const wrapSql = <S extends postgres.Sql | postgres.TransactionSql>(inner: S): S =>
    new Proxy(inner, {
      apply(target, self, args) {
        const result = Reflect.apply(target as (...a: unknown[]) => unknown, self, args);
        return isQuery(result) ? wrapQuery(result) : result;
      },
      get(target, prop) {
        const value = Reflect.get(target, prop, target) as unknown;
        if (prop === 'unsafe') {
          return (...args: unknown[]) => wrapQuery((value as (...a: unknown[]) => Pending).apply(target, args));
        }
        if (prop === 'begin' || prop === 'savepoint') {
          return (...args: unknown[]) => {
            const fn = args.pop() as (tx: postgres.TransactionSql) => Promise<unknown>;
            // BEGIN before the callback and COMMIT or ROLLBACK after it have a deadline;
            // the callback's statements each have their own.
            const deadline = timer();
            deadline.arm();
            const work = (value as (...a: unknown[]) => PromiseLike<unknown>).apply(target, [
              ...args,
              async (tx: postgres.TransactionSql) => {
                deadline.disarm();
                try {
                  return await fn(wrapSql(tx));
                } finally {
                  deadline.arm();
                }
              },
            ]);
            return raceDeadline(work, deadline);
          };
        }
        return typeof value === 'function' ? value.bind(target) : value;
      },
    }) as S;

  return wrapSql(sql);
}

/**
 * A client on which `first` has run: the first connection waits out a full server, and a
 * pooler is detected. PgBouncer refuses startup parameters it does not track (08P01, the
 * timeouts above) and, in transaction mode, cannot keep named prepared statements; so on
 * 08P01 we connect again without either. Through a pooler the client-side deadline still
 * holds, and the pooler's own `query_timeout` and `idle_transaction_timeout` apply.
 */
export async function openClient<T>(
  url: string,
  opts: ClientOptions,
  first: (sql: postgres.Sql) => Promise<T>,
): Promise<{ sql: postgres.Sql; first: T; pooled: boolean }> {
  const target = parseDatabaseUrl(url);
  const attempt = async (options: ClientOptions) => {
    const sql = clientFor(target, options);
    const refused = everyHostRefuses(target);
    try {
      return { sql, first: await Promise.race([whenConnected(() => first(sql)), refused.verdict]) };
    } catch (err) {
      // Nothing to drain: a connection that never came up is dropped at once.
      await sql.end({ timeout: 0 });
      throw err;
    } finally {
      refused.stop();
    }
  };
  try {
    return { ...(await attempt(opts)), pooled: false };
  } catch (err) {
    if (sqlState(err) !== SQLSTATE.protocolViolation || opts.sessionSettings === false) throw err;
    return { ...(await attempt({ ...opts, sessionSettings: false, prepare: false })), pooled: true };
  }
}

/**
 * Seconds a command waits for a slot on a full server ("too many clients") or one still
 * starting up. Both answer at once, so this is not a hang: when a hundred buyers start
 * together against max_connections = 100, the last few must wait for the first to finish,
 * which on a busy machine takes longer than the connect timeout.
 */
export const BUSY_SERVER_WAIT_S = 30;

/**
 * Waits out a full server or one still starting up (see BUSY_SERVER_WAIT_S). Each attempt
 * has a client-side deadline of its own: postgres.js may never settle a connection to a
 * URL whose every host is down (porsager/postgres#1174).
 */
export async function whenConnected<T>(first: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + BUSY_SERVER_WAIT_S * 1000;
  // Once the server has said it is full or starting, it is there: an attempt that then
  // waits too long is a server too busy to answer in time (a hundred buyers at once on a
  // slow machine), and is tried again within the same wait, not taken for a silent one.
  let answered = false;
  for (let attempt = 1; ; attempt++) {
    try {
      return await connectDeadline(first());
    } catch (err) {
      const busy = isWaitForSlot(err);
      answered ||= busy;
      const slow = err instanceof DeadlineError || errorCode(err) === 'CONNECT_TIMEOUT';
      if (!(busy || (answered && slow)) || Date.now() > deadline) throw err;
      // Jittered and growing, so that waiting processes do not retry in step.
      const pause = Math.min(1000, 50 * attempt) * (0.5 + Math.random());
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }
}

function connectDeadline<T>(work: Promise<T>): Promise<T> {
  const deadline = deadlineFor('a connection attempt', CONNECT_TIMEOUT_S);
  deadline.arm();
  return raceDeadline(work, deadline);
}

type Deadline = { expired: Promise<never>; arm: () => void; disarm: () => void };

/** A deadline for `what` that can be disarmed and armed again, for the phases of a transaction. */
function deadlineFor(what: string, seconds: number): Deadline {
  let stop = () => {};
  let fail: (err: Error) => void = () => {};
  const expired = new Promise<never>((_, reject) => (fail = reject));
  const disarm = () => stop();
  const arm = () => {
    disarm();
    stop = patientDeadline(seconds, () => fail(new DeadlineError(what, seconds)));
  };
  return { expired, arm, disarm };
}

/** `work`, or the deadline's DeadlineError if it expires first; the deadline is disarmed either way. */
function raceDeadline<T>(work: PromiseLike<T>, deadline: Deadline): Promise<T> {
  return Promise.race([Promise.resolve(work), deadline.expired]).finally(deadline.disarm);
}

/** How often a deadline looks at the clock. */
const DEADLINE_TICK_MS = 250;

/**
 * Calls `expire` once this process has waited `seconds` for an answer, and returns what
 * disarms it. A deadline is for a server that does not answer, not for a machine so busy
 * (a hundred CLI processes started at once on two cores) that this process itself could
 * not run: a tick that fires late counts as at most two ticks. And `expire` runs only
 * after the I/O that arrived meanwhile was handled (setImmediate comes after the poll
 * phase), so an answer that is already here is never taken for a timeout. The ticks
 * do not keep the process alive.
 */
function patientDeadline(seconds: number, expire: () => void): () => void {
  let waited = 0;
  let last = performance.now();
  let timeout: NodeJS.Timeout | undefined;
  let immediate: NodeJS.Immediate | undefined;
  const tick = () => {
    const now = performance.now();
    waited += Math.min(now - last, 2 * DEADLINE_TICK_MS);
    last = now;
    if (waited >= seconds * 1000) {
      // Not unref'd: an unref'd immediate waits for something else to wake the loop.
      immediate = setImmediate(expire);
    } else {
      timeout = setTimeout(tick, DEADLINE_TICK_MS);
      timeout.unref();
    }
  };
  timeout = setTimeout(tick, DEADLINE_TICK_MS);
  timeout.unref();
  return () => {
    clearTimeout(timeout);
    clearImmediate(immediate);
  };
}

/** Errors of a host where nothing takes a connection at all. */
const NOBODY_THERE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

/** How long a connection to a URL of several hosts may take before we knock on each. */
const KNOCK_AFTER_MS = 1000;

/**
 * postgres.js never settles a connection to a URL whose every host is down
 * (porsager/postgres#1174). For a URL of several hosts, once the real attempt has taken
 * a second (a server knocked on logs an "incomplete startup packet", so not before), we
 * knock on each host's port ourselves: `verdict` rejects with the first host's error as
 * soon as every one has refused, so that such a URL fails at once, as one host does. It
 * never resolves; `stop` ends the knocking.
 */
function everyHostRefuses(target: ConnectionTarget): { verdict: Promise<never>; stop: () => void } {
  const hosts = target.options.host ?? [];
  const ports = target.options.port ?? [];
  const sockets: net.Socket[] = [];
  let fail: (err: Error) => void = () => {};
  const verdict = new Promise<never>((_, reject) => (fail = reject));
  verdict.catch(() => {}); // seen by the race, or by nobody once the attempt has settled
  const knock = (host: string, port: number) =>
    new Promise<Error>((resolve) => {
      const socket = net.connect({ host, port });
      sockets.push(socket);
      socket.unref();
      socket.once('connect', () => socket.destroy());
      socket.on('error', (err) => {
        if (NOBODY_THERE.has(errorCode(err) ?? '')) resolve(err);
      });
    });
  const timer =
    hosts.length > 1
      ? setTimeout(() => {
          void Promise.all(hosts.map((host, i) => knock(host, ports[i] ?? 5432))).then((errors) => fail(errors[0]));
        }, KNOCK_AFTER_MS).unref()
      : undefined;
  const stop = () => {
    clearTimeout(timer);
    sockets.forEach((socket) => socket.destroy());
  };
  return { verdict, stop };
}
