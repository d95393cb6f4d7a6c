import type { CommandContext } from '../run.js';
import { InvalidInputError } from '../../errors.js';
import { parseCount, parseQuantity, parseRetrySetting, parseStockLevel, quote } from '../../engine/input.js';
import { withRetryFlags } from '../../engine/settings.js';
import { STRATEGIES, type Strategy } from '../../engine/orders.js';
import { progressMeter } from '../output.js';
import type { BaselineReport, ChaosConfig, LoadtestLeftovers, StrategyReport } from '../../loadtest/run.js';
import type { HttpTarget } from '../../loadtest/http.js';
import { BARE_UPDATE_LABEL, checkState, count, faultSentence, mixSentence, ms, NONE, plural } from '../../loadtest/format.js';

interface Flags {
  buyers: string;
  stock: string;
  quantity: string;
  concurrency: string;
  skus: string;
  strategy: Strategy | 'all';
  keep?: boolean;
  mix?: boolean;
  cleanup?: boolean;
  maxRetries?: string;
  retryBackoff?: string;
  url?: string;
  token?: string;
  report?: string;
  compare?: string[];
  /** `--chaos` alone is true; `--chaos 50ms` gives the mean time between kills. */
  chaos?: boolean | string;
}

/** `--chaos [interval]`: the mean time between two kills, `200ms`, `1s`, or bare milliseconds; 10 ms to 60 s. */
export function parseChaosInterval(raw: boolean | string, fallbackMs: number): number {
  if (raw === true) return fallbackMs;
  const found = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(String(raw).trim());
  const ms = found ? Number(found[1]) * (found[2] === 's' ? 1000 : 1) : NaN;
  if (!(ms >= 10 && ms <= 60_000)) {
    throw new InvalidInputError(`Invalid --chaos ${quote(raw)}: give the mean time between two kills, like 200ms or 1s (10ms to 60s).`);
  }
  return Math.round(ms);
}

function describeLeftovers(l: LoadtestLeftovers): string {
  return `${plural(l.skus, 'SKU')}, ${plural(l.orders, 'order')}, ${plural(l.scratch_tables, 'scratch table')}`;
}

export default async function loadtest(ctx: CommandContext, flags: Flags) {
  if (flags.compare) {
    const given = (['report', 'cleanup', 'url', 'keep', 'mix', 'chaos'] as const).filter((f) => flags[f] !== undefined).map((f) => `--${f}`);
    return (await import('./loadtest-report.js')).compareRuns(ctx, flags.compare, given);
  }
  if (flags.report !== undefined && flags.cleanup) throw new InvalidInputError('--report goes with a run, not with --cleanup.');
  if (flags.chaos !== undefined && flags.cleanup) throw new InvalidInputError('--chaos goes with a run, not with --cleanup.');
  const cfg = {
    buyers: parseCount(flags.buyers, '--buyers', 1_000_000),
    stock: parseStockLevel(flags.stock, '--stock'),
    quantity: parseQuantity(flags.quantity, '--quantity'),
    concurrency: parseCount(flags.concurrency, '--concurrency', 500),
    skus: parseCount(flags.skus, '--skus', 1000),
    strategies: flags.strategy === 'all' ? STRATEGIES : [flags.strategy],
    actor: ctx.config.actor,
    settings: withRetryFlags(ctx.config.settings, flags, parseRetrySetting),
    signal: ctx.signal,
    mix: Boolean(flags.mix),
  };
  const { connectionsFor, findLeftovers, removeLeftovers, runLoadtest } = await import('../../loadtest/run.js');
  const chaosModule = flags.chaos === undefined ? undefined : await import('../../loadtest/chaos.js');
  const chaosIntervalMs = chaosModule && parseChaosInterval(flags.chaos!, chaosModule.DEFAULT_CHAOS_INTERVAL_MS);
  if (flags.cleanup) {
    const database = await ctx.openDb({ application: 'stockctl-loadtest', max: 1 });
    const removed = await removeLeftovers(database);
    ctx.out.result({ removed }, () => {
      ctx.out.line(
        removed.runs.length === 0
          ? 'No loadtest leftovers found.'
          : `Removed the leftovers of ${plural(removed.runs.length, 'loadtest run')} (${removed.runs.join(', ')}): ` +
              `${describeLeftovers(removed)}, ${plural(removed.reservations, 'reservation')}, ${plural(removed.ledger_rows, 'ledger row')}.`,
      );
    });
    return 0;
  }
  const reportFile = flags.report === undefined ? undefined : await (await import('./loadtest-report.js')).prepareReportFile(flags.report);
  const connections = connectionsFor(cfg);
  // --url: the buyers go through a running server's POST /orders (its strategy is the
  // one measured); the products, the baseline and every check still use the database.
  let http: HttpTarget | undefined;
  if (flags.url !== undefined) {
    const token = flags.token ?? process.env.STOCKCTL_TOKEN;
    if (!token) throw new InvalidInputError('With --url, give a token of role shop or above: --token T or STOCKCTL_TOKEN.');
    const { connectHttpTarget } = await import('../../loadtest/http.js');
    http = await connectHttpTarget(flags.url, token, connections);
    if (flags.strategy !== 'all' && flags.strategy !== http.strategy) {
      http.close();
      throw new InvalidInputError(`The server at ${flags.url} runs the ${http.strategy} strategy, not ${flags.strategy}; restart it with --strategy ${flags.strategy}, or leave --strategy out.`);
    }
    Object.assign(cfg, { strategies: [http.strategy as Strategy], reserve: http.reserve, url: flags.url });
  } else if (flags.token !== undefined) {
    throw new InvalidInputError('--token goes with --url (a server to fire the buyers at).');
  }
  // With --chaos, this pool is the checker's alone (set-up, checks), never killed: the
  // buyers get a pool of their own from the run (see ChaosConfig), so two connections do.
  const database = await ctx.openDb({ application: 'stockctl-loadtest', max: chaosIntervalMs === undefined ? connections : 2 });
  let chaos: ChaosConfig | undefined;
  if (chaosModule && chaosIntervalMs !== undefined) {
    if (database.pooled) {
      http?.close();
      throw new InvalidInputError('--chaos needs a direct connection to PostgreSQL: behind a pooler (PgBouncer), a backend serves other clients too.');
    }
    const { openDatabase } = await import('../../db/client.js');
    chaos = {
      intervalMs: chaosIntervalMs,
      openPool: (application, max) =>
        openDatabase({ url: database.url, application, max, statementTimeoutS: ctx.config.statementTimeoutS, prepare: ctx.config.prepare }),
      ...(http ? { serverApplication: chaosModule.SERVE_APPLICATION } : {}),
    };
  }
  const leftovers = await findLeftovers(database);
  if (leftovers.runs.length > 0) {
    ctx.out.note(
      `Found leftovers of ${plural(leftovers.runs.length, 'earlier loadtest run')} (${leftovers.runs.join(', ')}): ` +
        `${describeLeftovers(leftovers)}; \`stockctl loadtest --cleanup\` removes them.`,
    );
  }
  const spinner = ctx.out.spinner('Measuring a bare guarded UPDATE');
  const meters = new Map<string, ReturnType<typeof progressMeter>>();
  const onProgress = (p: { strategy: string; done: number; total: number; faults?: number }) => {
    if (!meters.has(p.strategy)) meters.set(p.strategy, progressMeter(spinner, p.strategy, p.total));
    meters.get(p.strategy)?.update(p.done, p.faults === undefined ? '' : `  ${plural(p.faults, 'backend')} killed`);
  };
  const report = await runLoadtest(
    database,
    { ...cfg, onProgress, ...(chaos ? { chaos } : {}) },
    { keep: flags.keep },
  ).finally(() => http?.close());
  spinner.stop();
  ctx.out.result(report, () => {
    const { chalk } = ctx.out;
    ctx.out.line(
      `${count(cfg.buyers)} buyers × ${count(cfg.quantity)} unit(s), ${count(cfg.stock)} in stock on each of ${count(cfg.skus)} SKU(s), ${count(connections)} connections` +
        (database.embedded ? ' (embedded PostgreSQL)' : '') +
        (http ? `, through ${flags.url} (its strategy: ${http.strategy})` : ''),
    );
    // The bare UPDATE sells nothing: only its rate and latency mean something.
    const baselineRow = (b: BaselineReport) => [
      BARE_UPDATE_LABEL, NONE, NONE, NONE, NONE, count(b.throughput_rps), '1.00',
      ms(b.latency_ms.p50), ms(b.latency_ms.p95), ms(b.latency_ms.p99), NONE,
    ];
    const checks = (s: StrategyReport) => {
      const state = checkState(s, cfg.buyers);
      return state === 'fail' ? chalk.red('FAIL') : state === 'partial' ? chalk.yellow('partial') : chalk.green('ok');
    };
    const row = (s: StrategyReport) => [
      s.strategy,
      count(s.successes),
      count(s.rejections),
      count(s.false_rejections),
      count(s.retries),
      count(s.throughput_rps),
      s.ratio_to_bare_update === null ? NONE : s.ratio_to_bare_update.toFixed(2),
      ms(s.latency_ms.p50),
      ms(s.latency_ms.p95),
      ms(s.latency_ms.p99),
      checks(s),
    ];
    ctx.out.line(
      ctx.out.table(
        ['Strategy', 'Won', 'Sold out', 'False rejects', 'Retries', 'Reserve/s', 'vs bare', 'p50 ms', 'p95 ms', 'p99 ms', 'Checks'],
        [baselineRow(report.baseline), ...report.strategies.map(row)],
        { align: ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'left'] },
      ),
    );
    if (report.baseline.errors > 0) {
      ctx.out.line(chalk.red(`bare UPDATE: ${plural(report.baseline.errors, 'statement')} failed: ${report.baseline.first_error}`));
    }
    for (const s of report.strategies) {
      if (s.mix) ctx.out.line(`${s.strategy}: ${mixSentence(s.successes, s.mix, s.faults?.committed_unacknowledged.reserves)}`);
      if (s.faults) ctx.out.line(`${s.strategy}: ${faultSentence(s)}`);
      for (const v of s.violations) ctx.out.line(chalk.red(`${s.strategy}: ${v.message}`));
    }
    if (report.config.chaos && chaosModule) {
      const whose = [`the run's workers (${chaosModule.workersApplication(report.run_id)})`, ...(http ? [`the server's (${chaosModule.SERVE_APPLICATION})`] : [])];
      ctx.out.line(
        `Chaos: ${plural(report.faults_injected ?? 0, 'backend')} of ${whose.join(' and ')} terminated ` +
          `(about one every ${count(report.config.chaos.interval_ms)} ms), ${plural(report.failed_by_faults ?? 0, 'operation')} failed by them.`,
      );
    }
    if (report.interrupted) {
      const done = report.strategies.map((s) => `${s.strategy} ${count(s.buyers)}`).join(', ');
      ctx.out.line(
        chalk.yellow(
          `Interrupted: these figures cover only the buyers fired before the stop (${done || 'none'} of ${count(cfg.buyers)} each); ` +
            'no verdict on this run.',
        ),
      );
    } else if (report.ok) {
      ctx.out.line(chalk.green('No oversell, no false rejection by guarded/locking/batched, every invariant holds.'));
    }
  });
  // Written whatever the verdict (a failed or stopped run is the one worth looking at).
  const reportWritten = reportFile === undefined || (await (await import('./loadtest-report.js')).writeReportFile(ctx, reportFile, report));
  if (report.interrupted) return 130;
  return report.ok ? (reportWritten ? 0 : 2) : 6;
}
