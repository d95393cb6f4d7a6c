import { describeError, type CommandContext } from '../run.js';
import { parseCount, parseDuration } from '../../engine/input.js';
import type { SweepResult } from '../../engine/sweep.js';
import { sleepUnlessAborted } from '../../engine/timers.js';

interface SweepFlags {
  dryRun?: boolean;
  batchSize: string;
  quiet?: boolean;
  every?: string | true;
}

export default async function sweep(ctx: CommandContext, flags: SweepFlags) {
  const batchSize = parseCount(flags.batchSize, '--batch-size', 10_000);
  const everyS = flags.every === undefined ? undefined : flags.every === true ? ctx.config.cleanupIntervalS : parseDuration(flags.every, '--every');
  if (everyS !== undefined) return sweepEvery(ctx, { ...flags, batchSize, everyS });
  const result = await sweepOnce(ctx, { ...flags, batchSize });
  if (flags.quiet && !ctx.out.json) return result.interrupted ? 130 : 0;
  ctx.out.result(result, () => ctx.out.line(describe(result)));
}

async function sweepOnce(ctx: CommandContext, flags: Omit<SweepFlags, 'batchSize'> & { batchSize: number }): Promise<SweepResult> {
  const { db } = await ctx.openDb({ application: 'stockctl-sweep', max: 1 });
  const { expireDueOrders } = await import('../../engine/sweep.js');
  const spinner = ctx.out.spinner('Sweeping expired orders');
  try {
    return await expireDueOrders(db, {
      batchSize: flags.batchSize,
      dryRun: flags.dryRun,
      actor: ctx.config.actor,
      signal: ctx.signal,
      onBatch: (p) => (spinner.text = `Sweeping: ${p.expired_orders} orders expired, ${p.released_units} units released`),
    });
  } finally {
    spinner.stop();
  }
}

function describe(result: SweepResult): string {
  const verb = result.dry_run ? 'Would expire' : 'Expired';
  return (
    `${verb} ${result.expired_orders} order(s), ${result.dry_run ? 'releasing' : 'released'} ${result.released_units} unit(s)` +
    (result.dry_run ? '.' : ` in ${result.batches} batch(es), ${result.duration_ms} ms.`) +
    (result.remaining_due > 0 ? ` ${result.remaining_due} due order(s) were busy; the next sweep takes them.` : '')
  );
}

/**
 * `sweep --every`: sweep, sleep, sweep again, until SIGTERM or Ctrl-C, which let the
 * current batch finish (each run is recorded in sweep_runs as a single sweep is). A run
 * that fails (the database is down, a timeout) is reported and tried again at the next
 * tick; the loop itself never stops for it. With --json, one JSON line per run.
 */
async function sweepEvery(ctx: CommandContext, flags: Omit<SweepFlags, 'batchSize'> & { batchSize: number; everyS: number }) {
  const { out } = ctx;
  if (!flags.quiet && !out.json) out.note(`Sweeping every ${flags.everyS} s until SIGTERM or Ctrl-C.`);
  while (!ctx.signal.aborted) {
    const at = new Date().toISOString();
    try {
      const result = await sweepOnce(ctx, flags);
      if (out.json) out.line(JSON.stringify({ at, ...result }));
      else if (!flags.quiet || result.expired_orders > 0) out.line(`${at}  ${describe(result)}`);
      if (result.interrupted) break;
    } catch (err) {
      const info = describeError(err);
      if (out.json) out.line(JSON.stringify({ at, error: { code: info.code, message: info.message } }));
      // Even with --quiet: a failing sweep is what its log is for.
      else process.stderr.write(`${at}  sweep failed: ${info.message} Trying again in ${flags.everyS} s.\n`);
    }
    await sleepUnlessAborted(flags.everyS * 1000, ctx.signal);
  }
  return 0;
}
