/** Operational figures (`report`) and the alert rules built on them (`check`). */
import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { array, likePrefix, rows } from '../db/query.js';
import type { AlertThresholds } from './settings.js';
import { NO_METHOD } from './windows.js';

export interface Report extends PaymentMethodFigures {
  window_seconds: number;
  /** Orders in the window whose reserve needed more than one attempt. */
  conflict_rate: number | null;
  avg_seconds_to_payment: number | null;
  /**
   * Conversion and expiry per payment method, keyed by method; orders made without one
   * (and before methods were recorded) under "none". Methods seen in the window only.
   */
  by_payment_method: Record<string, PaymentMethodFigures>;
  sweeps: {
    runs: number;
    failed_runs: number;
    consecutive_failures: number;
    last_run_at: string | null;
    last_error: string | null;
    seconds_since_last_run: number | null;
    orders_expired: number;
    units_released: number;
  };
}

/** The outcome of the orders created in the window: all of them, or those of one payment method. */
export interface PaymentMethodFigures {
  orders_created: number;
  orders_paid: number;
  orders_expired: number;
  orders_cancelled_by_hand: number;
  orders_pending: number;
  /** Paid orders out of orders created in the window that are settled (paid or cancelled). */
  conversion_rate: number | null;
  expired_reservations: number;
}

/** Each order's outcome, counted once (an order paid, then refunded, counts as paid). */
const OUTCOMES = sql`count(*)::int AS created,
               count(*) FILTER (WHERE status = 'paid' OR paid_at IS NOT NULL)::int AS paid,
               count(*) FILTER (WHERE status = 'cancelled' AND payment_status = 'expired')::int AS expired,
               count(*) FILTER (WHERE status = 'cancelled' AND payment_status <> 'expired' AND paid_at IS NULL)::int AS cancelled,
               count(*) FILTER (WHERE status = 'pending')::int AS pending`;
type Outcomes = Record<'created' | 'paid' | 'expired' | 'cancelled' | 'pending', number>;

const round = (x: number) => Math.round(x * 10000) / 10000;
/** Paid orders out of those settled (paid, expired or cancelled). */
const conversion = (o: Outcomes) => {
  const settled = Number(o.paid) + Number(o.expired) + Number(o.cancelled);
  return settled > 0 ? round(Number(o.paid) / settled) : null;
};

/** The outcome counts as reported, with the expiries of the same orders' reservations. */
const figuresOf = (o: Outcomes, expiredReservations: number): PaymentMethodFigures => ({
  orders_created: Number(o.created),
  orders_paid: Number(o.paid),
  orders_expired: Number(o.expired),
  orders_cancelled_by_hand: Number(o.cancelled),
  orders_pending: Number(o.pending),
  conversion_rate: conversion(o),
  expired_reservations: expiredReservations,
});

async function figuresByPaymentMethod(db: Db, since: SQL): Promise<Record<string, PaymentMethodFigures>> {
  const method = sql`coalesce(payment_method, ${NO_METHOD})`;
  const outcomes = await rows<Outcomes & { method: string }>(
    db,
    sql`SELECT ${method} AS method, ${OUTCOMES} FROM orders WHERE created_at >= ${since} GROUP BY 1`,
  );
  const expiries = await rows<{ method: string; expired: number }>(
    db,
    sql`SELECT ${method} AS method, count(*)::int AS expired
          FROM stock_reservations r JOIN orders o USING (order_id)
         WHERE r.status = 'expired' AND r.released_at >= ${since} GROUP BY 1`,
  );
  const methods = [...new Set([...outcomes, ...expiries].map((m) => m.method))];
  // Methods by name, orders without one last.
  methods.sort((a, b) => Number(a === NO_METHOD) - Number(b === NO_METHOD) || (a < b ? -1 : a > b ? 1 : 0));
  const none: Outcomes = { created: 0, paid: 0, expired: 0, cancelled: 0, pending: 0 };
  return Object.fromEntries(
    methods.map((m) => [m, figuresOf(outcomes.find((x) => x.method === m) ?? none, expiries.find((x) => x.method === m)?.expired ?? 0)]),
  );
}

export async function buildReport(db: Db, windowSeconds: number): Promise<Report> {
  const since = sql`now() - make_interval(secs => ${windowSeconds})`;
  const [o] = await rows<Outcomes & { conflicted: number; to_pay: number | null }>(
    db,
    sql`SELECT ${OUTCOMES},
               count(*) FILTER (WHERE reserve_attempts > 1)::int AS conflicted,
               avg(extract(epoch FROM paid_at - created_at)) FILTER (WHERE paid_at IS NOT NULL)::float8 AS to_pay
          FROM orders WHERE created_at >= ${since}`,
  );
  const [r] = await rows<{ expired: number }>(
    db,
    sql`SELECT count(*)::int AS expired FROM stock_reservations WHERE status = 'expired' AND released_at >= ${since}`,
  );
  const byPaymentMethod = await figuresByPaymentMethod(db, since);
  const [s] = await rows<Report['sweeps']>(
    db,
    sql`SELECT count(*)::int AS runs,
               count(*) FILTER (WHERE error IS NOT NULL AND error <> 'interrupted')::int AS failed_runs,
               coalesce(sum(orders_expired), 0)::int AS orders_expired,
               coalesce(sum(units_released), 0)::int AS units_released
          FROM sweep_runs WHERE started_at >= ${since} AND NOT dry_run`,
  );
  const recent = await rows<{ error: string | null; startedAt: string; age: number }>(
    db,
    sql`SELECT error, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "startedAt",
               extract(epoch FROM now() - started_at)::float8 AS age
          FROM sweep_runs WHERE NOT dry_run ORDER BY started_at DESC LIMIT 20`,
  );
  let consecutive = 0;
  for (const run of recent) {
    if (run.error && run.error !== 'interrupted') consecutive++;
    else break;
  }
  const created = Number(o.created);
  return {
    window_seconds: windowSeconds,
    ...figuresOf(o, r.expired),
    conflict_rate: created > 0 ? round(Number(o.conflicted) / created) : null,
    avg_seconds_to_payment: o.to_pay === null ? null : Math.round(Number(o.to_pay) * 10) / 10,
    by_payment_method: byPaymentMethod,
    sweeps: {
      ...s,
      consecutive_failures: consecutive,
      last_run_at: recent[0]?.startedAt ?? null,
      last_error: recent[0]?.error ?? null,
      seconds_since_last_run: recent[0] ? Math.round(recent[0].age) : null,
    },
  };
}

export type { AlertThresholds } from './settings.js';

export interface Alert {
  rule: string;
  firing: boolean;
  value: number | string[];
  /** null: the rule is off (CHECK_LOW_STOCK=off). */
  threshold: number | null;
  message: string;
}

export interface AlertScope {
  /** SKUs under these prefixes are not the catalogue (a loadtest's own rows): no low-stock alert. */
  exceptSkuPrefixes?: string[];
}

export async function evaluateAlerts(db: Db, t: AlertThresholds, scope: AlertScope = {}): Promise<Alert[]> {
  const hour = await buildReport(db, 3600);
  const except = (scope.exceptSkuPrefixes ?? []).map(likePrefix);
  const low =
    t.lowStock === null
      ? []
      : await rows<{ sku: string; available: number }>(
          db,
          sql`SELECT sku, (stock_quantity - reserved_stock)::int AS available FROM stock_items
               WHERE stock_quantity - reserved_stock <= ${t.lowStock} AND NOT sku LIKE ANY(${array(except)}::text[])
               ORDER BY sku LIMIT 100`,
        );
  const conflict = hour.conflict_rate ?? 0;
  return [
    {
      rule: 'expired_reservations',
      firing: hour.expired_reservations > t.maxExpiredPerHour,
      value: hour.expired_reservations,
      threshold: t.maxExpiredPerHour,
      message: `${hour.expired_reservations} reservations expired in the last hour (alert above ${t.maxExpiredPerHour})`,
    },
    {
      rule: 'conflict_rate',
      firing: conflict > t.maxConflictRate,
      value: conflict,
      threshold: t.maxConflictRate,
      message: `${(conflict * 100).toFixed(1)} % of orders in the last hour needed a stock retry (alert above ${(t.maxConflictRate * 100).toFixed(0)} %)`,
    },
    {
      rule: 'failed_sweeps',
      firing: hour.sweeps.consecutive_failures >= t.maxFailedSweeps,
      value: hour.sweeps.consecutive_failures,
      threshold: t.maxFailedSweeps,
      message: `${hour.sweeps.consecutive_failures} failed sweep(s) in a row (alert at ${t.maxFailedSweeps})${hour.sweeps.last_error ? `; last error: ${hour.sweeps.last_error}` : ''}`,
    },
    {
      rule: 'low_stock',
      firing: low.length > 0,
      value: low.map((l) => `${l.sku}=${l.available}`),
      threshold: t.lowStock,
      message:
        t.lowStock === null
          ? 'off (CHECK_LOW_STOCK=off)'
          : low.length > 0
            ? `${low.length} SKU(s) at or below ${t.lowStock} available: ${low.slice(0, 10).map((l) => `${l.sku} (${l.available})`).join(', ')}`
            : `no SKU at or below ${t.lowStock} available`,
    },
  ];
}
