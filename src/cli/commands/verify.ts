import type { CommandContext } from '../run.js';

export default async function verify(ctx: CommandContext, flags: { repair?: boolean }) {
  const { db } = await ctx.openDb({ application: 'stockctl-verify', lockTimeoutMs: 10_000 });
  const { findViolations, repairCounters } = await import('../../engine/verify.js');
  const spinner = ctx.out.spinner('Checking invariants');
  const found = await findViolations(db);
  const repairs = flags.repair && found.length > 0 ? await repairCounters(db, ctx.config.actor) : [];
  const remaining = repairs.length > 0 ? await findViolations(db) : found;
  spinner.stop();
  const ok = remaining.length === 0;
  ctx.out.result({ ok, violations: found, repairs, remaining: flags.repair ? remaining : undefined }, () => {
    const { chalk } = ctx.out;
    if (found.length === 0) return ctx.out.line(chalk.green('Every invariant holds: counters, reservations, orders and the ledger agree.'));
    for (const v of found) ctx.out.line(`${chalk.red('✗')} ${v.message}`);
    for (const r of repairs) {
      const parts = [];
      if (r.recorded_drift) parts.push(`recorded an outside change (on hand ${r.recorded_drift.stock_delta}, reserved ${r.recorded_drift.reserved_delta}) in the ledger`);
      if (r.reserved_correction) parts.push(`corrected reserved by ${r.reserved_correction > 0 ? '+' : ''}${r.reserved_correction}`);
      ctx.out.line(`${chalk.green('repaired')} ${r.sku}: ${parts.join('; ')}`);
    }
    if (flags.repair && ok) ctx.out.line(chalk.green('All repaired.'));
    else if (flags.repair && repairs.length === 0) ctx.out.line(chalk.red(`${remaining.length} problem(s) need a person: see above.`));
    else if (flags.repair) {
      // Some were repaired: say which problems are left, each with what to do.
      ctx.out.line('Left for a person:');
      for (const v of remaining) ctx.out.line(`${chalk.red('✗')} ${v.message}`);
      ctx.out.line(chalk.red(`${remaining.length} problem(s) need a person.`));
    }
    else ctx.out.line(`${found.length} problem(s). Run \`stockctl verify --repair\` to fix counters through the ledger.`);
  });
  return ok ? 0 : 6;
}
