import type { CommandContext } from '../run.js';
import { parseDuration } from '../../engine/input.js';
import { LOADTEST_SKU_PREFIX } from '../../loadtest/skus.js';

const pct = (x: number | null) => (x === null ? '-' : `${(x * 100).toFixed(1)} %`);

export default async function report(ctx: CommandContext, flags: { since: string; format: 'table' | 'json' | 'prometheus'; byLocation?: boolean }) {
  const windowSeconds = parseDuration(flags.since, '--since');
  const { db } = await ctx.openDb({ application: 'stockctl-report' });
  const { buildReport, metricFamilies, prometheusText } = await import('../../engine/report.js');
  if (flags.format === 'prometheus' && !ctx.out.json) {
    // The textfile for node_exporter: the same database figures as GET /metrics.
    const families = await metricFamilies(db, { windowSeconds, maxSkus: ctx.config.metricsMaxSkus, exceptSkuPrefixes: [LOADTEST_SKU_PREFIX] });
    return void ctx.out.line(prometheusText(families));
  }
  const r = await buildReport(db, windowSeconds, { byLocation: flags.byLocation });
  if (flags.format === 'json' || ctx.out.json) return void process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
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
  if (r.by_location) {
    ctx.out.line(
      ctx.out.table(
        ['Location', 'Reserved / sold / expired / cancelled / held', 'On hand', 'Reserved', 'Incoming', 'Available'],
        Object.entries(r.by_location).map(([code, f]) => [
          f.active ? code : `${code} (inactive)`,
          `${f.units_reserved} / ${f.units_sold} / ${f.units_expired} / ${f.units_cancelled} / ${f.units_held}`,
          f.stock_quantity,
          f.reserved_stock,
          f.incoming,
          f.available,
        ]),
      ),
    );
  }
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
