import type { CommandContext } from '../run.js';
import { parseCount } from '../../engine/input.js';

export default async function sweep(ctx: CommandContext, flags: { dryRun?: boolean; batchSize: string; quiet?: boolean }) {
  const batchSize = parseCount(flags.batchSize, '--batch-size', 10_000);
  const { db } = await ctx.openDb({ application: 'stockctl-sweep', max: 1 });
  const { expireDueOrders } = await import('../../engine/sweep.js');
  const spinner = ctx.out.spinner('Sweeping expired orders');
  const result = await expireDueOrders(db, {
    batchSize,
    dryRun: flags.dryRun,
    actor: ctx.actor,
    signal: ctx.signal,
    onBatch: (p) => (spinner.text = `Sweeping: ${p.expired_orders} orders expired, ${p.released_units} units released`),
  });
  spinner.stop();
  if (flags.quiet && !ctx.out.json) return result.interrupted ? 130 : 0;
  ctx.out.result(result, () => {
    const verb = result.dry_run ? 'Would expire' : 'Expired';
    ctx.out.line(
      `${verb} ${result.expired_orders} order(s), ${result.dry_run ? 'releasing' : 'released'} ${result.released_units} unit(s)` +
        (result.dry_run ? '.' : ` in ${result.batches} batch(es), ${result.duration_ms} ms.`) +
        (result.remaining_due > 0 ? ` ${result.remaining_due} due order(s) were busy; the next sweep takes them.` : ''),
    );
  });
}
