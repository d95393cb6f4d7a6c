/**
 * Every setting stockctl takes from its environment, read here and nowhere else, once per
 * command, and checked with the same rules as the flags that override them. `--help`
 * lists this table, so the two cannot drift apart.
 */
import os from 'node:os';
import path from 'node:path';
import { InvalidInputError } from '../errors.js';
import { checkDuration, durationSeconds, MAX_DURATION_S, parseRetrySetting, parseText, quote } from '../engine/input.js';
import { nameProblem, type PaymentWindowPolicy } from '../engine/windows.js';
import { DEFAULT_CLEANUP_INTERVAL_MINUTES } from './environment.js';
import {
  DEFAULT_SETTINGS,
  DEFAULT_STATEMENT_TIMEOUT_S,
  DEFAULT_METRICS_MAX_SKUS,
  DEFAULT_THRESHOLDS,
  type AlertThresholds,
  type Settings,
} from '../engine/settings.js';
import { checkDatabaseUrl } from '../db/errors.js';
import type { EmbeddedPlace } from '../db/embedded/index.js';

import { DEFAULT_SPLIT_POLICY, SPLIT_POLICIES, type SplitPolicy } from '../engine/names.js';

type Env = NodeJS.ProcessEnv;

export interface Config {
  /** --database-url or DATABASE_URL; undefined means the embedded server. */
  databaseUrl: string | undefined;
  /** STOCKCTL_LISTEN_URL: the session live stock listens on, when DATABASE_URL is a pooler in transaction mode. */
  listenUrl: string | undefined;
  embedded: EmbeddedPlace;
  actor: string;
  statementTimeoutS: number;
  prepare: boolean;
  /** `sweep --every` without a value: CLEANUP_INTERVAL_MINUTES, in seconds. */
  cleanupIntervalS: number;
  settings: Settings;
  /** PAYMENT_TIMEOUTS and PRIORITY_WINDOWS, over PAYMENT_TIMEOUT_MINUTES. */
  paymentWindows: PaymentWindowPolicy;
  thresholds: AlertThresholds;
  /** Per-SKU series in `report --format prometheus` and GET /metrics. */
  metricsMaxSkus: number;
  /** SPLIT_POLICY: where a reserve may take an order's units when no one location covers it. */
  splitPolicy: SplitPolicy;
}

export interface ConfigFlags {
  databaseUrl?: string;
  actor?: string;
}

const set = (env: Env, name: string): string | undefined => {
  const raw = env[name];
  return raw === undefined || raw.trim() === '' ? undefined : raw;
};

export function loadConfig(flags: ConfigFlags, env: Env = process.env): Config {
  const databaseUrl = flags.databaseUrl || set(env, 'DATABASE_URL');
  const listenUrl = set(env, 'STOCKCTL_LISTEN_URL');
  const settings = settingsOf(env);
  const split = set(env, 'SPLIT_POLICY');
  if (split !== undefined && !(SPLIT_POLICIES as string[]).includes(split.trim())) {
    throw new InvalidInputError(`Invalid SPLIT_POLICY ${quote(split)}: use ${SPLIT_POLICIES.join(', ')}.`);
  }
  return {
    splitPolicy: (split?.trim() as SplitPolicy | undefined) ?? DEFAULT_SPLIT_POLICY,
    databaseUrl: databaseUrl ? checkDatabaseUrl(databaseUrl) : undefined,
    listenUrl: listenUrl ? checkListenUrl(listenUrl) : undefined,
    embedded: embeddedPlace(env),
    actor: actorOf(flags, env),
    statementTimeoutS: statementTimeout(env),
    prepare: prepareStatements(env),
    cleanupIntervalS: cleanupInterval(env),
    settings,
    paymentWindows: paymentWindowsOf(env, settings),
    thresholds: thresholdsOf(env),
    metricsMaxSkus: metricsMaxSkus(env),
  };
}

function checkListenUrl(url: string): string {
  try {
    return checkDatabaseUrl(url);
  } catch {
    throw new InvalidInputError('STOCKCTL_LISTEN_URL is not a PostgreSQL URL; use one like postgres://user@db-host:5432/shop.');
  }
}

/** Where the embedded server lives; also what the test suite uses for its own. */
export function embeddedPlace(env: Env = process.env): EmbeddedPlace {
  const home = path.resolve(set(env, 'STOCKCTL_HOME') ?? path.join(os.homedir(), '.local', 'share', 'stockctl'));
  const raw = set(env, 'STOCKCTL_EMBEDDED_PORT');
  if (raw === undefined) return { home };
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1024 || port > 65535 || port === 5432) {
    throw new InvalidInputError(`STOCKCTL_EMBEDDED_PORT must be a TCP port between 1024 and 65535 other than 5432, got ${quote(raw)}.`);
  }
  return { home, port };
}

/** A name recorded with every change: no blank one, which would name nobody. */
function actorName(raw: string, what: string): string {
  if (raw.trim() === '') throw new InvalidInputError(`Invalid ${what}: it is blank; give a name, or leave it out to record the OS user.`);
  return parseText(raw, what, 200)!;
}

/** --actor, else STOCKCTL_ACTOR, else the OS user: checked like any other text a user types. */
function actorOf(flags: ConfigFlags, env: Env): string {
  if (flags.actor) return actorName(flags.actor, 'actor (--actor)');
  const fromEnv = set(env, 'STOCKCTL_ACTOR');
  if (fromEnv) return actorName(fromEnv, 'actor (STOCKCTL_ACTOR)');
  try {
    return os.userInfo().username;
  } catch {
    return 'unknown';
  }
}

function statementTimeout(env: Env): number {
  const raw = set(env, 'STOCKCTL_STATEMENT_TIMEOUT')?.trim();
  if (raw === undefined) return DEFAULT_STATEMENT_TIMEOUT_S;
  const seconds = durationSeconds(raw) ?? NaN;
  if (!(seconds >= 1 && seconds <= 86_400)) {
    throw new InvalidInputError(`STOCKCTL_STATEMENT_TIMEOUT must be a duration from 1s to 24h, like 30s or 5m, got ${quote(raw)}.`);
  }
  return seconds;
}

function prepareStatements(env: Env): boolean {
  const raw = set(env, 'STOCKCTL_PREPARE');
  if (raw === undefined || raw === '1') return true;
  if (raw === '0') return false;
  throw new InvalidInputError(`STOCKCTL_PREPARE must be 1 or 0, got ${quote(raw)}.`);
}

/** A setting in whole minutes, 1 minute to 366 days. */
function wholeMinutes(raw: string, name: string): number {
  const most = MAX_DURATION_S / 60;
  // 1.5 or 90s is not out of range but not minutes at all: say so, not "must be between".
  if (!/^\d+$/.test(raw.trim())) throw new InvalidInputError(`Invalid ${name} ${quote(raw)}: must be a whole number of minutes, from 1 to ${most}.`);
  const minutes = Number(raw);
  checkDuration(minutes * 60, name, raw, ` (1 to ${most} minutes)`);
  return minutes;
}

/** The seed design's sweep interval, in whole minutes, as seconds. */
function cleanupInterval(env: Env): number {
  const raw = set(env, 'CLEANUP_INTERVAL_MINUTES');
  return (raw === undefined ? DEFAULT_CLEANUP_INTERVAL_MINUTES : wholeMinutes(raw, 'CLEANUP_INTERVAL_MINUTES')) * 60;
}

/** The seed design's settings; the same rules as --ttl, --max-retries and --retry-backoff. */
function settingsOf(env: Env): Settings {
  const settings = { ...DEFAULT_SETTINGS };
  const minutes = set(env, 'PAYMENT_TIMEOUT_MINUTES');
  if (minutes !== undefined) settings.paymentTimeoutMinutes = wholeMinutes(minutes, 'PAYMENT_TIMEOUT_MINUTES');
  const attempts = set(env, 'MAX_STOCK_RETRY_ATTEMPTS');
  if (attempts !== undefined) settings.maxStockRetryAttempts = parseRetrySetting(attempts, 'MAX_STOCK_RETRY_ATTEMPTS', '--max-retries');
  const backoff = set(env, 'STOCK_RETRY_BACKOFF_MS');
  if (backoff !== undefined) settings.stockRetryBackoffMs = parseRetrySetting(backoff, 'STOCK_RETRY_BACKOFF_MS', '--retry-backoff');
  return settings;
}

/**
 * "name=duration,..." (PAYMENT_TIMEOUTS, PRIORITY_WINDOWS): durations as --ttl takes them.
 * A bad entry is exit 2 naming it; so is an empty one (`card=15m,,bank=1d`, a trailing
 * comma), which is most often a variable that was meant to fill it and was not set.
 */
function windowTable(env: Env, name: string, example: string, opts: { refuseDefault?: string } = {}): Map<string, number> {
  const table = new Map<string, number>();
  const raw = set(env, name);
  if (raw === undefined) return table;
  const entries = raw.split(',').map((e) => e.trim());
  const empty = entries.indexOf('');
  if (empty >= 0) {
    throw new InvalidInputError(`${name} entry ${empty + 1} of ${entries.length} is empty (${quote(raw)}): remove the extra comma, or give the entry, like ${example}.`);
  }
  for (const entry of entries) {
    const bad = (why: string) => new InvalidInputError(`${name} entry ${quote(entry)}: ${why}.`);
    const eq = entry.indexOf('=');
    if (eq < 0) throw bad(`use NAME=DURATION, like ${example}`);
    const key = entry.slice(0, eq).trim();
    const value = entry.slice(eq + 1).trim();
    const problem = nameProblem(key);
    if (problem) throw bad(problem);
    if (key === 'default' && opts.refuseDefault) throw bad(opts.refuseDefault);
    const seconds = durationSeconds(value);
    if (seconds === undefined) throw bad('use a number and a unit, like 90s, 15m, 2h or 1d');
    if (seconds < 1 || seconds > MAX_DURATION_S) throw bad('the duration must be between 1s and 366d');
    if (table.has(key)) throw bad(`${key} is listed twice`);
    table.set(key, seconds);
  }
  return table;
}

/**
 * The payment window policy: a window per method (PAYMENT_TIMEOUTS; `default=` for any
 * other method, or none, else PAYMENT_TIMEOUT_MINUTES), and extra time per tier.
 */
function paymentWindowsOf(env: Env, settings: Settings): PaymentWindowPolicy {
  const methods = windowTable(env, 'PAYMENT_TIMEOUTS', 'card=15m');
  const tiers = windowTable(env, 'PRIORITY_WINDOWS', 'vip=45m', {
    refuseDefault: 'there is no default tier; name each tier, like vip=45m',
  });
  const fallback = methods.get('default') ?? settings.paymentTimeoutMinutes * 60;
  methods.delete('default');
  return { methods, defaultSeconds: fallback, tiers };
}

/** `check`'s thresholds (CHECK_*), defaults from the seed design. */
function thresholdsOf(env: Env): AlertThresholds {
  const read = (name: string, fallback: number, rule: { min: number; max?: number; whole?: boolean; says: string }, raw = set(env, name)) => {
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < rule.min || (rule.max !== undefined && value > rule.max) || (rule.whole && !Number.isInteger(value))) {
      throw new InvalidInputError(`${name} must be ${rule.says}, got ${quote(raw)}.`);
    }
    return value;
  };
  const lowStock = set(env, 'CHECK_LOW_STOCK');
  const sweepAge = set(env, 'CHECK_MAX_SWEEP_AGE');
  return {
    maxExpiredPerHour: read('CHECK_MAX_EXPIRED_PER_HOUR', DEFAULT_THRESHOLDS.maxExpiredPerHour, { min: 0, says: 'a non-negative number' }),
    maxConflictRate: read('CHECK_MAX_CONFLICT_RATE', DEFAULT_THRESHOLDS.maxConflictRate, {
      min: 0,
      max: 1,
      says: 'a rate between 0 and 1 (0.1 is 10 %)',
    }),
    maxFailedSweeps: read('CHECK_MAX_FAILED_SWEEPS', DEFAULT_THRESHOLDS.maxFailedSweeps, { min: 1, whole: true, says: 'a whole number of 1 or more' }),
    lowStock:
      lowStock?.trim().toLowerCase() === 'off'
        ? null
        : read('CHECK_LOW_STOCK', DEFAULT_THRESHOLDS.lowStock ?? 0, { min: 0, whole: true, says: 'a whole number of 0 or more, or off' }, lowStock),
    maxSweepAgeSeconds:
      sweepAge === undefined
        ? DEFAULT_THRESHOLDS.maxSweepAgeSeconds
        : sweepAge.trim().toLowerCase() === 'off'
          ? null
          : (() => {
              const seconds = durationSeconds(sweepAge);
              if (seconds === undefined || seconds < 1 || seconds > MAX_DURATION_S) {
                throw new InvalidInputError(`CHECK_MAX_SWEEP_AGE must be a duration from 1s to 366d such as 15m or 2h, or off, got ${quote(sweepAge)}.`);
              }
              return seconds;
            })(),
  };
}

/** STOCKCTL_METRICS_MAX_SKUS: how many SKUs get a series of their own in the metrics. */
function metricsMaxSkus(env: Env): number {
  const raw = set(env, 'STOCKCTL_METRICS_MAX_SKUS');
  if (raw === undefined) return DEFAULT_METRICS_MAX_SKUS;
  if (!/^\d{1,5}$/.test(raw.trim()) || Number(raw) > 10_000) {
    throw new InvalidInputError(`STOCKCTL_METRICS_MAX_SKUS must be a whole number from 0 to 10000 (0: no per-SKU series), got ${quote(raw)}.`);
  }
  return Number(raw);
}

/** STOCKCTL_DEBUG=1: stack traces, like --verbose (needed before the rest is read). */
export const debugRequested = (env: Env = process.env) => env.STOCKCTL_DEBUG === '1';

/** NO_COLOR set, or a dumb terminal: no colour whatever stdout is. */
export const colourRefused = (env: Env = process.env) => Boolean(env.NO_COLOR) || env.TERM === 'dumb';
