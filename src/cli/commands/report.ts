import type { CommandContext } from '../run.js';
import { parseDuration } from '../../engine/input.js';
import type { PaymentMethodFigures, Report } from '../../engine/report.js';

/** A Prometheus label value: backslash, double quote and newline escaped. */
const labelValue = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

const pct = (x: number | null) => (x === null ? '-' : `${(x * 100).toFixed(1)} %`);

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

export default async function report(ctx: CommandContext, flags: { since: string; format: 'table' | 'json' | 'prometheus' }) {
  const windowSeconds = parseDuration(flags.since, '--since');
  const { db } = await ctx.openDb({ application: 'stockctl-report' });
  const { buildReport } = await import('../../engine/report.js');
  const r = await buildReport(db, windowSeconds);
  if (flags.format === 'json' || ctx.out.json) return void process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  if (flags.format === 'prometheus') return void ctx.out.line(prometheus(r));
  ctx.out.line(
    ctx.out.table(
      ['Figure', `Last ${flags.since}`],
      [
        ['Orders created', r.orders_created],
        ['Paid / expired / cancelled / pending', `${r.orders_paid} / ${r.orders_expired} / ${r.orders_cancelled_by_hand} / ${r.orders_pending}`],
        ['Conversion rate', pct(r.conversion_rate)],
        ['Expired reservations', r.expired_reservations],
        ['Stock conflict rate', pct(r.conflict_rate)],
        ['Average time to payment', r.avg_seconds_to_payment === null ? '-' : `${r.avg_seconds_to_payment} s`],
        ['Sweeps (failed)', `${r.sweeps.runs} (${r.sweeps.failed_runs})`],
        ['Last sweep', r.sweeps.last_run_at ? `${r.sweeps.last_run_at}${r.sweeps.last_error ? ` — ${r.sweeps.last_error}` : ''}` : 'never'],
      ],
    ),
  );
  const byMethod = Object.entries(r.by_payment_method);
  if (byMethod.length === 0) return;
  ctx.out.line(
    ctx.out.table(
      ['Payment method', 'Orders', 'Paid / expired / cancelled / pending', 'Conversion rate', 'Expired reservations'],
      byMethod.map(([method, f]) => [
        method,
        f.orders_created,
        `${f.orders_paid} / ${f.orders_expired} / ${f.orders_cancelled_by_hand} / ${f.orders_pending}`,
        pct(f.conversion_rate),
        f.expired_reservations,
      ]),
    ),
  );
}
