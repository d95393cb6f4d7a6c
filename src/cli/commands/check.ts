import type { CommandContext } from '../run.js';
import { InvalidInputError } from '../../errors.js';
import { DEFAULT_THRESHOLDS, type AlertThresholds } from '../../engine/report.js';

/** Thresholds from the environment (CHECK_*), defaults from the seed design. */
function thresholds(env = process.env): AlertThresholds {
  const read = (name: string, fallback: number) => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < 0) throw new InvalidInputError(`${name} must be a non-negative number, got "${raw}".`);
    return value;
  };
  return {
    maxExpiredPerHour: read('CHECK_MAX_EXPIRED_PER_HOUR', DEFAULT_THRESHOLDS.maxExpiredPerHour),
    maxConflictRate: read('CHECK_MAX_CONFLICT_RATE', DEFAULT_THRESHOLDS.maxConflictRate),
    maxFailedSweeps: read('CHECK_MAX_FAILED_SWEEPS', DEFAULT_THRESHOLDS.maxFailedSweeps),
    lowStock: read('CHECK_LOW_STOCK', DEFAULT_THRESHOLDS.lowStock),
  };
}

export default async function check(ctx: CommandContext) {
  const t = thresholds();
  const { db } = await ctx.openDb({ application: 'stockctl-check' });
  const { evaluateAlerts } = await import('../../engine/report.js');
  const alerts = await evaluateAlerts(db, t);
  const firing = alerts.filter((a) => a.firing);
  ctx.out.result({ ok: firing.length === 0, firing: firing.map((a) => a.rule), alerts }, () => {
    const { chalk } = ctx.out;
    for (const a of alerts) ctx.out.line(`${a.firing ? chalk.red('FIRING') : chalk.green('ok    ')}  ${a.rule}: ${a.message}`);
  });
  return firing.length === 0 ? 0 : 6;
}
