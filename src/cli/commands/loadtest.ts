import type { CommandContext } from '../run.js';
import { parseCount, parseQuantity, parseRetrySetting, parseStockLevel } from '../../engine/input.js';
import { withRetryFlags } from '../../engine/settings.js';
import { STRATEGIES, type Strategy } from '../../engine/orders.js';
import type { StrategyReport } from '../../loadtest/run.js';

interface Flags {
  buyers: string;
  stock: string;
  quantity: string;
  concurrency: string;
  skus: string;
  strategy: Strategy | 'all';
  keep?: boolean;
  mix?: boolean;
  maxRetries?: string;
  retryBackoff?: string;
}

export default async function loadtest(ctx: CommandContext, flags: Flags) {
  const cfg = {
    buyers: parseCount(flags.buyers, '--buyers', 1_000_000),
    stock: parseStockLevel(flags.stock, '--stock'),
    quantity: parseQuantity(flags.quantity, '--quantity'),
    concurrency: parseCount(flags.concurrency, '--concurrency', 500),
    skus: parseCount(flags.skus, '--skus', 1000),
    strategies: flags.strategy === 'all' ? STRATEGIES : [flags.strategy],
    actor: ctx.actor,
    settings: withRetryFlags(ctx.settings, flags, parseRetrySetting),
    signal: ctx.signal,
    mix: Boolean(flags.mix),
  };
  const database = await ctx.openDb({ application: 'stockctl-loadtest', max: cfg.concurrency });
  const { runLoadtest } = await import('../../loadtest/run.js');
  const spinner = ctx.out.spinner('Measuring a bare guarded UPDATE');
  const report = await runLoadtest(
    database,
    { ...cfg, onProgress: (p) => (spinner.text = `${p.strategy}: ${p.done}/${p.total} buyers`) },
    { keep: flags.keep },
  );
  spinner.stop();
  ctx.out.result(report, () => {
    const { chalk } = ctx.out;
    ctx.out.line(
      `${cfg.buyers} buyers × ${cfg.quantity} unit(s), ${cfg.stock} in stock on each of ${cfg.skus} SKU(s), ${cfg.concurrency} connections` +
        (database.embedded ? ' (embedded PostgreSQL)' : ''),
    );
    const row = (s: StrategyReport) => [
      s.strategy === 'bare_update' ? 'bare UPDATE (limit)' : s.strategy,
      s.successes,
      s.rejections,
      s.false_rejections,
      s.retries,
      s.throughput_rps,
      s.ratio_to_bare_update === null ? '' : s.ratio_to_bare_update.toFixed(2),
      s.latency_ms.p50,
      s.latency_ms.p95,
      s.latency_ms.p99,
      s.strategy === 'bare_update' ? '' : s.violations.length === 0 ? chalk.green('ok') : chalk.red('FAIL'),
    ];
    ctx.out.line(
      ctx.out.table(
        ['Strategy', 'Won', 'Sold out', 'False rejects', 'Retries', 'Reserve/s', 'vs bare', 'p50 ms', 'p95 ms', 'p99 ms', 'Checks'],
        [row(report.baseline), ...report.strategies.map(row)],
        { align: ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'left'] },
      ),
    );
    for (const s of report.strategies) {
      if (s.mix) {
        const m = s.mix;
        ctx.out.line(`${s.strategy}: ${m.paid} paid (${m.units_sold} units sold), ${m.cancelled} cancelled, ${m.expired_by_sweep} expired by the sweep, ${m.late_pays_refused} late pays refused`);
      }
      for (const v of s.violations) ctx.out.line(chalk.red(`${s.strategy}: ${v.message}`));
    }
    if (report.ok) ctx.out.line(chalk.green('No oversell, no false rejection by guarded/locking, every invariant holds.'));
  });
  if (report.interrupted) return 130;
  return report.ok ? 0 : 6;
}
