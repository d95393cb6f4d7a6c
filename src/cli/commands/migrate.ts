import { noteEmbeddedStarted, type CommandContext } from '../run.js';

export default async function migrate(ctx: CommandContext, flags: { dryRun?: boolean }) {
  const { runMigrations } = await import('../../db/migrate.js');
  let url = ctx.config.databaseUrl;
  if (!url) {
    const { ensureEmbedded } = await import('../../db/embedded/index.js');
    const info = await ensureEmbedded(ctx.config.embedded);
    noteEmbeddedStarted(ctx.out, info);
    url = info.url;
  }
  const spinner = ctx.out.spinner(flags.dryRun ? 'Checking migrations' : 'Applying migrations');
  try {
    const plan = await runMigrations(url, { dryRun: flags.dryRun, statementTimeoutS: ctx.config.statementTimeoutS });
    spinner.stop();
    ctx.out.result({ dry_run: Boolean(flags.dryRun), applied: flags.dryRun ? [] : plan.pending, pending: flags.dryRun ? plan.pending : [], already_applied: plan.applied }, () => {
      if (plan.pending.length === 0) ctx.out.line(`Schema is up to date (${plan.applied.length} migrations applied).`);
      else if (flags.dryRun) ctx.out.line(`Would apply ${plan.pending.length} migration(s):\n${plan.pending.map((t) => `  ${t}`).join('\n')}`);
      else ctx.out.line(`Applied ${plan.pending.length} migration(s):\n${plan.pending.map((t) => `  ${t}`).join('\n')}`);
    });
  } catch (err) {
    spinner.stop();
    const { redactUrl, toDomainError } = await import('../../db/errors.js');
    throw toDomainError(err, redactUrl(url));
  }
}
