/** Operational figures (`report`) and the alert rules built on them (`check`). */
import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { array, iso, likePrefix, rows } from '../db/query.js';
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

/** The window's order outcomes and reservation expiries: in total, and per payment method. */
interface WindowFigures {
  total: Outcomes & { conflicted: number; to_pay: number | null };
  expiredReservations: number;
  byPaymentMethod: Record<string, PaymentMethodFigures>;
}

/**
 * One statement per table, each grouped both ways (GROUPING SETS): per payment method
 * (orders without one under NO_METHOD), and the grand total (`total`), which PostgreSQL
 * returns even for a window without a single row.
 */
async function windowFigures(db: Db, since: SQL): Promise<WindowFigures> {
  const outcomes = await rows<Outcomes & { method: string; total: boolean; conflicted: number; to_pay: number | null }>(
    db,
    sql`SELECT method, GROUPING(method) = 1 AS total, ${OUTCOMES},
               count(*) FILTER (WHERE reserve_attempts > 1)::int AS conflicted,
               avg(extract(epoch FROM paid_at - created_at)) FILTER (WHERE paid_at IS NOT NULL)::float8 AS to_pay
          FROM (SELECT *, coalesce(payment_method, ${NO_METHOD}) AS method FROM orders WHERE created_at >= ${since}) o
         GROUP BY GROUPING SETS ((method), ())`,
  );
  // Every reservation has its order (order_id is a NOT NULL foreign key), so the join drops none from the total.
  const expiries = await rows<{ method: string; total: boolean; expired: number }>(
    db,
    sql`SELECT method, GROUPING(method) = 1 AS total, count(*)::int AS expired
          FROM (SELECT coalesce(payment_method, ${NO_METHOD}) AS method
                  FROM stock_reservations r JOIN orders o USING (order_id)
                 WHERE r.status = 'expired' AND r.released_at >= ${since}) e
         GROUP BY GROUPING SETS ((method), ())`,
  );
  const total = outcomes.find((x) => x.total)!;
  const expiredReservations = expiries.find((x) => x.total)!.expired;
  const perMethod = outcomes.filter((x) => !x.total);
  const expiriesPerMethod = expiries.filter((x) => !x.total);
  const methods = [...new Set([...perMethod, ...expiriesPerMethod].map((m) => m.method))];
  // Methods by name, orders without one last.
  methods.sort((a, b) => Number(a === NO_METHOD) - Number(b === NO_METHOD) || (a < b ? -1 : a > b ? 1 : 0));
  const none: Outcomes = { created: 0, paid: 0, expired: 0, cancelled: 0, pending: 0 };
  const byPaymentMethod = Object.fromEntries(
    methods.map((m) => [
      m,
      figuresOf(perMethod.find((x) => x.method === m) ?? none, expiriesPerMethod.find((x) => x.method === m)?.expired ?? 0),
    ]),
  );
  return { total, expiredReservations, byPaymentMethod };
}

export async function buildReport(db: Db, windowSeconds: number): Promise<Report> {
  const since = sql`now() - make_interval(secs => ${windowSeconds})`;
  const { total: o, expiredReservations, byPaymentMethod } = await windowFigures(db, since);
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
    sql`SELECT error, ${iso('started_at')} AS "startedAt",
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
    ...figuresOf(o, expiredReservations),
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

/** A Prometheus label value: backslash, double quote and newline escaped. */
const labelValue = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

/** The report in the Prometheus text format (`report --format prometheus`, GET /metrics). */
export function prometheus(r: Report): string {
  const lines: string[] = [];
  const metric = (name: string, help: string, value: number | null) => {
    if (value === null) return;
    lines.push(`# HELP stockctl_${name} ${help}`, `# TYPE stockctl_${name} gauge`, `stockctl_${name} ${value}`);
  };
  metric('window_seconds', 'Length of the reporting window.', r.window_seconds);
  metric('orders_created', 'Orders created in the window.', r.orders_created);
  metric('orders_paid', 'Orders created in the window and paid.', r.orders_paid);
  metric('orders_expired', 'Orders created in the window and expired unpaid.', r.orders_expired);
  metric('orders_cancelled_by_hand', 'Orders created in the window and cancelled by hand.', r.orders_cancelled_by_hand);
  metric('orders_pending', 'Orders created in the window still pending.', r.orders_pending);
  metric('conversion_rate', 'Paid orders out of settled orders in the window.', r.conversion_rate);
  metric('expired_reservations', 'Reservations expired in the window.', r.expired_reservations);
  metric('conflict_rate', 'Orders in the window whose reserve needed a retry.', r.conflict_rate);
  metric('avg_seconds_to_payment', 'Average seconds from order to payment.', r.avg_seconds_to_payment);
  // The split by payment method: one labelled series per method ("none": orders without one).
  const byMethod = Object.entries(r.by_payment_method);
  const labelled = (name: string, help: string, value: (f: PaymentMethodFigures) => number | null) => {
    const series = byMethod.filter(([, f]) => value(f) !== null);
    if (series.length === 0) return;
    lines.push(`# HELP stockctl_${name} ${help}`, `# TYPE stockctl_${name} gauge`);
    for (const [method, f] of series) lines.push(`stockctl_${name}{payment_method="${labelValue(method)}"} ${value(f)}`);
  };
  labelled('payment_method_orders_created', 'Orders created in the window, by payment method.', (f) => f.orders_created);
  labelled('payment_method_orders_paid', 'Orders created in the window and paid, by payment method.', (f) => f.orders_paid);
  labelled('payment_method_orders_expired', 'Orders created in the window and expired unpaid, by payment method.', (f) => f.orders_expired);
  labelled('payment_method_conversion_rate', 'Paid orders out of settled orders in the window, by payment method.', (f) => f.conversion_rate);
  labelled('payment_method_expired_reservations', 'Reservations expired in the window, by payment method.', (f) => f.expired_reservations);
  metric('sweep_runs', 'Sweep runs in the window.', r.sweeps.runs);
  metric('sweep_failed_runs', 'Failed sweep runs in the window.', r.sweeps.failed_runs);
  metric('sweep_consecutive_failures', 'Failed sweep runs in a row, newest first.', r.sweeps.consecutive_failures);
  metric('sweep_seconds_since_last_run', 'Seconds since the last sweep started.', r.sweeps.seconds_since_last_run);
  return lines.join('\n');
}

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
