/** Operational figures (`report`) and the alert rules built on them (`check`). */
import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { array, iso, likePrefix, rows } from '../db/query.js';
import type { AlertThresholds } from './settings.js';
import { levelAvailableSql } from './stock.js';
import { formatWindow, NO_METHOD } from './windows.js';

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
  /** With `byLocation`: each location's reservations in the window and its stock now, highest priority first. */
  by_location?: Record<string, LocationFigures>;
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

/** One location's share of the window (by its reservations) and its stock now. */
export interface LocationFigures {
  active: boolean;
  priority: number;
  /** Units reserved there in the window, and what became of them so far. */
  units_reserved: number;
  units_sold: number;
  units_expired: number;
  units_cancelled: number;
  units_held: number;
  stock_quantity: number;
  reserved_stock: number;
  incoming: number;
  available: number;
}

/** Each location's figures (see LocationFigures), in the order reserve tries them. */
async function locationFigures(db: Db, since: SQL): Promise<Record<string, LocationFigures>> {
  const found = await rows<LocationFigures & { code: string }>(
    db,
    sql`SELECT loc.code, loc.active, loc.priority,
               coalesce(r.reserved, 0)::int AS units_reserved, coalesce(r.sold, 0)::int AS units_sold,
               coalesce(r.expired, 0)::int AS units_expired, coalesce(r.cancelled, 0)::int AS units_cancelled,
               coalesce(r.held, 0)::int AS units_held,
               coalesce(l.stock, 0)::int AS stock_quantity, coalesce(l.reserved, 0)::int AS reserved_stock,
               coalesce(l.incoming, 0)::int AS incoming, coalesce(l.available, 0)::int AS available
          FROM locations loc
          LEFT JOIN (SELECT location, sum(quantity) AS reserved,
                            sum(quantity) FILTER (WHERE status = 'converted') AS sold,
                            sum(quantity) FILTER (WHERE status = 'expired') AS expired,
                            sum(quantity) FILTER (WHERE status = 'cancelled') AS cancelled,
                            sum(quantity) FILTER (WHERE status = 'active') AS held
                       FROM stock_reservations WHERE reserved_at >= ${since} GROUP BY location) r ON r.location = loc.code
          LEFT JOIN (SELECT l.location, sum(l.stock_quantity) AS stock, sum(l.reserved_stock) AS reserved, sum(l.incoming) AS incoming,
                            sum(${levelAvailableSql('l', 'loc.active')}) AS available
                       FROM stock_levels l JOIN locations loc ON loc.code = l.location GROUP BY l.location) l ON l.location = loc.code
         ORDER BY loc.priority DESC, loc.code`,
  );
  return Object.fromEntries(found.map(({ code, ...figures }) => [code, figures]));
}

/** Payment methods by name, orders without one ("none") last. */
const byMethodName = (a: string, b: string) => Number(a === NO_METHOD) - Number(b === NO_METHOD) || (a < b ? -1 : a > b ? 1 : 0);

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
  methods.sort(byMethodName);
  const none: Outcomes = { created: 0, paid: 0, expired: 0, cancelled: 0, pending: 0 };
  const byPaymentMethod = Object.fromEntries(
    methods.map((m) => [
      m,
      figuresOf(perMethod.find((x) => x.method === m) ?? none, expiriesPerMethod.find((x) => x.method === m)?.expired ?? 0),
    ]),
  );
  return { total, expiredReservations, byPaymentMethod };
}

export async function buildReport(db: Db, windowSeconds: number, opts: { byLocation?: boolean } = {}): Promise<Report> {
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
    ...(opts.byLocation ? { by_location: await locationFigures(db, since) } : {}),
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

/** One metric family of the Prometheus text format: its samples, each with its labels. */
export interface MetricFamily {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  samples: { labels?: Record<string, string>; value: number }[];
}

/** The text format of metric families (a node_exporter textfile, GET /metrics), each announced by its HELP and TYPE. */
export function prometheusText(families: MetricFamily[]): string {
  const lines: string[] = [];
  for (const f of families) {
    lines.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
    for (const { labels, value } of f.samples) {
      const set = labels ? Object.entries(labels).map(([k, v]) => `${k}="${labelValue(v)}"`).join(',') : '';
      lines.push(`${f.name}${set ? `{${set}}` : ''} ${Number.isFinite(value) ? value : 'NaN'}`);
    }
  }
  return lines.join('\n');
}

export interface MetricsOptions {
  /** The window of the conversion ratio, in seconds. */
  windowSeconds: number;
  /** Per-SKU available units for at most this many SKUs (those with the fewest units first); 0: none. */
  maxSkus: number;
  /** SKUs under these prefixes are not the catalogue (a loadtest's own rows): no series of their own. */
  exceptSkuPrefixes?: string[];
}

/**
 * Every figure a dashboard needs from the database, as Prometheus metrics: counters since
 * the first order (so that rate() and increase() work over any range, and sum() across
 * hosts), the sweep's last run as a timestamp (so that `time() - ...` keeps growing when
 * the sweep stops, and is huge when it never ran), per-SKU available units, and the
 * conversion ratio over the report window.
 */
export async function metricFamilies(db: Db, opts: MetricsOptions): Promise<MetricFamily[]> {
  const except = (opts.exceptSkuPrefixes ?? []).map(likePrefix);
  const [report, orders, reservations, sweeps, stock] = await Promise.all([
    buildReport(db, opts.windowSeconds),
    rows<{ method: string; total: boolean; created: number; paid: number; cancelled: number; retried: number; pending: number; wait: number }>(
      db,
      sql`SELECT method, GROUPING(method) = 1 AS total, count(*)::float8 AS created,
                 count(*) FILTER (WHERE paid_at IS NOT NULL)::float8 AS paid,
                 count(*) FILTER (WHERE status = 'cancelled' AND payment_status <> 'expired')::float8 AS cancelled,
                 count(*) FILTER (WHERE reserve_attempts > 1)::float8 AS retried,
                 count(*) FILTER (WHERE status = 'pending')::float8 AS pending,
                 coalesce(sum(extract(epoch FROM paid_at - created_at)) FILTER (WHERE paid_at IS NOT NULL), 0)::float8 AS wait
            FROM (SELECT *, coalesce(payment_method, ${NO_METHOD}) AS method FROM orders) o
           GROUP BY GROUPING SETS ((method), ())`,
    ),
    // Expiry marks every reservation of the order expired, and a late payment leaves them
    // so (it sells on new ones): an order expired once is counted once, also if paid later.
    rows<{ method: string; total: boolean; expired: number; orders: number }>(
      db,
      sql`SELECT method, GROUPING(method) = 1 AS total, count(*)::float8 AS expired, count(DISTINCT order_id)::float8 AS orders
            FROM (SELECT coalesce(o.payment_method, ${NO_METHOD}) AS method, r.order_id
                    FROM stock_reservations r JOIN orders o USING (order_id) WHERE r.status = 'expired') e
           GROUP BY GROUPING SETS ((method), ())`,
    ),
    rows<{ runs: number; failed: number; released: number; last: number | null }>(
      db,
      sql`SELECT count(*)::float8 AS runs,
                 count(*) FILTER (WHERE error IS NOT NULL AND error <> 'interrupted')::float8 AS failed,
                 coalesce(sum(units_released), 0)::float8 AS released,
                 extract(epoch FROM max(started_at))::float8 AS last
            FROM sweep_runs WHERE NOT dry_run`,
    ),
    opts.maxSkus > 0
      ? rows<{ sku: string; available: number }>(
          db,
          sql`SELECT sku, available FROM stock_items
               WHERE NOT sku LIKE ANY(${array(except)}::text[])
               ORDER BY available, sku LIMIT ${opts.maxSkus}`,
        )
      : Promise.resolve([]),
  ]);
  const all = orders.find((o) => o.total)!;
  const perMethod = orders.filter((o) => !o.total).sort((a, b) => byMethodName(a.method, b.method));
  const expiredAll = reservations.find((r) => r.total)!;
  const expiredPerMethod = reservations.filter((r) => !r.total);
  const expiredOf = (method: string) => expiredPerMethod.find((r) => r.method === method);
  const [sweep] = sweeps;
  const byMethod = (values: { method: string; value: number }[]) =>
    values.map(({ method, value }) => ({ labels: { payment_method: method }, value }));
  const counter = (name: string, help: string, value: number): MetricFamily => ({ name: `stockctl_${name}`, help, type: 'counter', samples: [{ value }] });
  const gauge = (name: string, help: string, samples: MetricFamily['samples']): MetricFamily => ({ name: `stockctl_${name}`, help, type: 'gauge', samples });
  const families: MetricFamily[] = [
    counter('orders_created_total', 'Orders created.', all.created),
    counter('orders_paid_total', 'Orders paid.', all.paid),
    counter('orders_expired_total', 'Orders whose payment window passed unpaid (released by the sweep or a reserve).', expiredAll.orders),
    counter('orders_cancelled_total', 'Orders cancelled by hand (not expired).', all.cancelled),
    counter('orders_retried_total', 'Orders whose reserve needed more than one attempt (stock conflicts).', all.retried),
    counter('orders_payment_wait_seconds_total', 'Seconds from order to payment, summed over paid orders (divide by stockctl_orders_paid_total for the mean).', all.wait),
    counter('reservations_expired_total', 'Reservations expired unpaid (one per order line).', expiredAll.expired),
    gauge('orders_pending', 'Orders waiting for payment now.', [{ value: all.pending }]),
    {
      name: 'stockctl_payment_method_orders_created_total',
      help: 'Orders created, by payment method ("none": orders without one).',
      type: 'counter',
      samples: byMethod(perMethod.map((m) => ({ method: m.method, value: m.created }))),
    },
    {
      name: 'stockctl_payment_method_orders_paid_total',
      help: 'Orders paid, by payment method.',
      type: 'counter',
      samples: byMethod(perMethod.map((m) => ({ method: m.method, value: m.paid }))),
    },
    {
      name: 'stockctl_payment_method_orders_expired_total',
      help: 'Orders expired unpaid, by payment method.',
      type: 'counter',
      samples: byMethod(perMethod.map((m) => ({ method: m.method, value: expiredOf(m.method)?.orders ?? 0 }))),
    },
    {
      name: 'stockctl_payment_method_reservations_expired_total',
      help: 'Reservations expired unpaid, by payment method.',
      type: 'counter',
      samples: byMethod(perMethod.map((m) => ({ method: m.method, value: expiredOf(m.method)?.expired ?? 0 }))),
    },
    gauge('window_seconds', 'Length of the window of the ratios below.', [{ value: report.window_seconds }]),
  ];
  if (report.conversion_rate !== null) {
    families.push(gauge('conversion_ratio', 'Paid orders out of the settled orders created in the window (0 to 1).', [{ value: report.conversion_rate }]));
  }
  const ratios = Object.entries(report.by_payment_method).filter(([, f]) => f.conversion_rate !== null);
  if (ratios.length > 0) {
    families.push(
      gauge(
        'payment_method_conversion_ratio',
        'Paid orders out of the settled orders created in the window, by payment method (0 to 1).',
        ratios.map(([method, f]) => ({ labels: { payment_method: method }, value: f.conversion_rate! })),
      ),
    );
  }
  families.push(
    counter('sweep_runs_total', 'Sweep runs (dry runs not counted).', sweep.runs),
    counter('sweep_failures_total', 'Sweep runs that failed.', sweep.failed),
    counter('sweep_units_released_total', 'Units released by sweeps.', sweep.released),
    gauge('sweep_consecutive_failures', 'Failed sweep runs in a row, newest first.', [{ value: report.sweeps.consecutive_failures }]),
    gauge('sweep_last_run_timestamp_seconds', 'When the last sweep started (Unix time; 0: no sweep has ever run).', [{ value: sweep.last ?? 0 }]),
  );
  if (opts.maxSkus > 0) {
    families.push(
      gauge(
        'stock_available',
        `Units available (on hand minus reserved), for the ${opts.maxSkus} SKUs with the fewest (STOCKCTL_METRICS_MAX_SKUS).`,
        stock.map((s) => ({ labels: { sku: s.sku }, value: s.available })),
      ),
    );
  }
  return families;
}

export interface Alert {
  rule: string;
  firing: boolean;
  /** null: nothing to measure (no sweep has ever run). */
  value: number | string[] | null;
  /** null: the rule is off (CHECK_LOW_STOCK=off, CHECK_MAX_SWEEP_AGE=off). */
  threshold: number | null;
  message: string;
}

/** "2h5m", "90s": an age as durations are written. */
const age = (seconds: number) => formatWindow(Math.max(0, Math.round(seconds)));

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
          sql`SELECT sku, available FROM stock_items
               WHERE available <= ${t.lowStock} AND NOT sku LIKE ANY(${array(except)}::text[])
               ORDER BY sku LIMIT 100`,
        );
  const conflict = hour.conflict_rate ?? 0;
  const sinceSweep = hour.sweeps.seconds_since_last_run;
  const maxSweepAge = t.maxSweepAgeSeconds;
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
    {
      // Fires when the sweep stopped (a lost crontab line, a dead `serve --sweep-every`), and
      // when it never ran: unpaid orders then hold their stock for ever.
      rule: 'sweep_age',
      firing: maxSweepAge !== null && (sinceSweep === null || sinceSweep > maxSweepAge),
      value: sinceSweep,
      threshold: maxSweepAge,
      message:
        maxSweepAge === null
          ? 'off (CHECK_MAX_SWEEP_AGE=off)'
          : sinceSweep === null
            ? `no sweep has ever run (alert after ${age(maxSweepAge)}); schedule \`stockctl sweep\` (cron) or run \`serve --sweep-every\``
            : sinceSweep > maxSweepAge
              ? `the last sweep started ${age(sinceSweep)} ago (alert after ${age(maxSweepAge)}); is its cron job still there?`
              : `a sweep started within the last ${age(maxSweepAge)}`,
    },
  ];
}
