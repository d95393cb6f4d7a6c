import type { CommandContext } from '../run.js';
import { LOADTEST_SKU_PREFIX } from '../../loadtest/skus.js';

export default async function check(ctx: CommandContext) {
  const { db } = await ctx.openDb({ application: 'stockctl-check' });
  const { evaluateAlerts } = await import('../../engine/report.js');
  // A loadtest's own SKUs (left by a killed run) are not the catalogue running low.
  const alerts = await evaluateAlerts(db, ctx.config.thresholds, { exceptSkuPrefixes: [LOADTEST_SKU_PREFIX] });
  const firing = alerts.filter((a) => a.firing);
  ctx.out.result({ ok: firing.length === 0, firing: firing.map((a) => a.rule), alerts }, () => {
    const { chalk } = ctx.out;
    for (const a of alerts) ctx.out.line(`${a.firing ? chalk.red('FIRING') : chalk.green('ok    ')}  ${a.rule}: ${a.message}`);
  });
  return firing.length === 0 ? 0 : 6;
}
