import type { CommandContext } from '../run.js';
import { DatabaseUnavailableError, InvalidInputError } from '../../errors.js';
import { parseCount, parseQuantity, parseRetrySetting, parseStockLevel, quote } from '../../engine/input.js';
import { withRetryFlags } from '../../engine/settings.js';
import { STRATEGIES, type Strategy } from '../../engine/orders.js';
import { progressMeter } from '../output.js';
import type { ChaosConfig } from '../../loadtest/run.js';
import type { BaselineReport, LocationProof, Spread, StrategyReport } from '../../loadtest/report.js';
import type { ConnectionRoom } from '../../loadtest/connections.js';
import type { KeptLeftovers, LoadtestLeftovers } from '../../loadtest/leftovers.js';
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
  repeat?: string;
  locations?: string;
  failIf?: string[];
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
  // Locations only when a run of several left some (a run of one makes none).
  const locations = l.locations > 0 ? `, ${plural(l.locations, 'location')}` : '';
  return `${plural(l.skus, 'SKU')}, ${plural(l.orders, 'order')}, ${plural(l.scratch_tables, 'scratch table')}${locations}`;
}

/**
 * Why --cleanup left some loadtest rows: the orders that hold a real SKU beside them, by id
 * and ref (the first five), and what stays with them.
 */
function keptSentence(kept: KeptLeftovers): string {
  const named = kept.holders.slice(0, 5).map((h) => `${h.order_id}${h.ref === null ? '' : ` (ref ${h.ref})`}, ${h.status}, holds ${h.real_skus.join(', ')}`);
  const more = kept.holders.length > 5 ? `; and ${plural(kept.holders.length - 5, 'order')} more` : '';
  const them = kept.skus.length === 1 ? 'it' : 'them';
  return (
    `Kept ${plural(kept.skus.length, 'loadtest SKU')} (${kept.skus.slice(0, 5).join(', ')}${kept.skus.length > 5 ? ', …' : ''}) and ${plural(kept.orders, 'order')} on ${them}: ` +
    `${kept.holders.length === 1 ? 'an order holds' : 'these orders hold'} a real SKU beside ${them}, so they are not the loadtest's to remove: ${named.join('; ')}${more}. ` +
    'They stay whole (verify still passes), and later runs do not count them as leftovers.'
  );
}

/** The server's room, in words: "max_connections 100, less 3 reserved for superusers and 41 in use". */
function roomSentence(room: ConnectionRoom): string {
  const limits = [
    `max_connections ${count(room.max_connections)}, less ${count(room.reserved_connections)} reserved for superusers and ${count(room.in_use)} in use`,
    ...(room.role_limit ? [`the role's CONNECTION LIMIT ${count(room.role_limit.limit)}, ${count(room.role_limit.in_use)} in use`] : []),
    ...(room.database_limit ? [`the database's CONNECTION LIMIT ${count(room.database_limit.limit)}, ${count(room.database_limit.in_use)} in use`] : []),
  ];
  return limits.join('; ');
}

/** The most locations a run spreads its stock over (--locations). */
const MAX_LOCATIONS = 100;

export default async function loadtest(ctx: CommandContext, flags: Flags) {
  if (flags.compare) {
    const given = (['report', 'cleanup', 'url', 'keep', 'mix', 'chaos', 'repeat', 'locations'] as const).filter((f) => flags[f] !== undefined).map((f) => `--${f}`);
    return (await import('./loadtest-report.js')).compareRuns(ctx, flags.compare, given, flags.failIf ?? []);
  }
  if (flags.failIf !== undefined) throw new InvalidInputError('--fail-if goes with --compare before.json after.json (it judges a comparison, not a run).');
  if (flags.report !== undefined && flags.cleanup) throw new InvalidInputError('--report goes with a run, not with --cleanup.');
  if (flags.chaos !== undefined && flags.cleanup) throw new InvalidInputError('--chaos goes with a run, not with --cleanup.');
  if (flags.repeat !== undefined && flags.cleanup) throw new InvalidInputError('--repeat goes with a run, not with --cleanup.');
  if (flags.locations !== undefined && flags.cleanup) throw new InvalidInputError('--locations goes with a run, not with --cleanup.');
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
    repeat: flags.repeat === undefined ? 1 : parseCount(flags.repeat, '--repeat', 100),
    locations: flags.locations === undefined ? 1 : parseCount(flags.locations, '--locations', MAX_LOCATIONS),
  };
  const { connectionsFor, runLoadtest, splitStock } = await import('../../loadtest/run.js');
  const { findLeftovers, removeLeftovers } = await import('../../loadtest/leftovers.js');
  const chaosModule = flags.chaos === undefined ? undefined : await import('../../loadtest/chaos.js');
  const chaosIntervalMs = chaosModule && parseChaosInterval(flags.chaos!, chaosModule.DEFAULT_CHAOS_INTERVAL_MS);
  if (flags.cleanup) {
    const database = await ctx.openDb({ application: 'stockctl-loadtest', max: 1 });
    const removed = await removeLeftovers(database);
    if (removed.kept.holders.length > 0) ctx.out.note(keptSentence(removed.kept));
    await ctx.out.result({ removed }, () => {
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
  // --url: the buyers go through a running server's POST /orders (its strategy is the
  // one measured); the products, the baseline and every check still use the database.
  let http: HttpTarget | undefined;
  if (flags.url !== undefined) {
    const token = flags.token ?? process.env.STOCKCTL_TOKEN;
    if (!token) throw new InvalidInputError('With --url, give a token of role shop or above: --token T or STOCKCTL_TOKEN.');
    const { connectHttpTarget } = await import('../../loadtest/http.js');
    http = await connectHttpTarget(flags.url, token, connectionsFor(cfg));
    if (flags.strategy !== 'all' && flags.strategy !== http.strategy) {
      http.close();
      throw new InvalidInputError(`The server at ${flags.url} runs the ${http.strategy} strategy, not ${flags.strategy}; restart it with --strategy ${flags.strategy}, or leave --strategy out.`);
    }
    Object.assign(cfg, { strategies: [http.strategy as Strategy], reserve: http.reserve, url: flags.url });
  } else if (flags.token !== undefined) {
    throw new InvalidInputError('--token goes with --url (a server to fire the buyers at).');
  }
  try {
    // This pool is the checker's (set-up, checks), never killed by --chaos; the workers
    // (buyers, pays, cancels, the sweep, the bare UPDATE) get a pool of their own from the
    // run, sized within what the server will take now.
    const database = await ctx.openDb({ application: 'stockctl-loadtest', max: 2 });
    if (chaosIntervalMs !== undefined && database.pooled) {
      throw new InvalidInputError('--chaos needs a direct connection to PostgreSQL: behind a pooler (PgBouncer), a backend serves other clients too.');
    }
    const { connectionRoom, planConnections, ownSessions } = await import('../../loadtest/connections.js');
    const room = database.pooled ? undefined : await connectionRoom(database);
    const plan = planConnections(connectionsFor(cfg), ownSessions({ chaos: chaosIntervalMs !== undefined, batchedHere: !http && cfg.strategies.includes('batched') }), room);
    if (plan.connections === 0) {
      throw new DatabaseUnavailableError(
        `The database has no room for the loadtest's connections (${roomSentence(room!)}; the run needs ${plan.own + 1} at least); retry when fewer sessions are connected.`,
      );
    }
    if (plan.capped) {
      ctx.out.note(
        `Using ${plural(plan.connections, 'connection')} for the buyers, not ${count(connectionsFor(cfg))}: the server takes ${count(room!.free)} more now ` +
          `(${roomSentence(room!)}), and the run keeps ${count(plan.own)} of those for its own checks${cfg.strategies.includes('batched') && !http ? ' and batch lanes' : ''}.`,
      );
    }
    const connections = plan.connections;
    const { openDatabase } = await import('../../db/client.js');
    const openPool = (application: string, max: number) =>
      openDatabase({ url: database.url, application, max, statementTimeoutS: ctx.config.statementTimeoutS, prepare: ctx.config.prepare });
    const chaos: ChaosConfig | undefined =
      chaosModule && chaosIntervalMs !== undefined
        ? { intervalMs: chaosIntervalMs, ...(http ? { serverApplication: chaosModule.SERVE_APPLICATION } : {}) }
        : undefined;
    const leftovers = await findLeftovers(database);
    if (leftovers.runs.length > 0) {
      ctx.out.note(
        `Found leftovers of ${plural(leftovers.runs.length, 'earlier loadtest run')} (${leftovers.runs.join(', ')}): ` +
          `${describeLeftovers(leftovers)}; \`stockctl loadtest --cleanup\` removes them.`,
      );
    }
    const spinner = ctx.out.spinner('Measuring a bare guarded UPDATE');
    // A meter per strategy's run: with --repeat, a strategy that starts again gets a new one.
    const meters = new Map<string, { meter: ReturnType<typeof progressMeter>; done: number }>();
    const onProgress = (p: { strategy: string; done: number; total: number; faults?: number }) => {
      let m = meters.get(p.strategy);
      if (!m || p.done < m.done) meters.set(p.strategy, (m = { meter: progressMeter(spinner, p.strategy, p.total), done: 0 }));
      m.done = p.done;
      m.meter.update(p.done, p.faults === undefined ? '' : `  ${plural(p.faults, 'backend')} killed`);
    };
    const report = await runLoadtest(database, { ...cfg, connections, openPool, onProgress, ...(chaos ? { chaos } : {}) }, { keep: flags.keep });
    spinner.stop();
    const buyersEach = cfg.buyers * cfg.repeat;
    await ctx.out.result(report, () => {
      const { chalk } = ctx.out;
      ctx.out.line(
        `${count(cfg.buyers)} buyers × ${count(cfg.quantity)} unit(s), ${count(cfg.stock)} in stock on each of ${count(cfg.skus)} SKU(s)` +
          (cfg.locations > 1 ? ` over ${count(cfg.locations)} locations (${splitStock(cfg.stock, cfg.locations).map(count).join(', ')})` : '') +
          `, ${count(connections)} connections` +
          (database.embedded ? ' (embedded PostgreSQL)' : '') +
          (http ? `, through ${flags.url} (its strategy: ${http.strategy})` : '') +
          (cfg.repeat > 1 ? `; ${count(cfg.repeat)} runs, strategies interleaved: medians` : ''),
      );
      // The bare UPDATE sells nothing: only its rate and latency mean something.
      const baselineRow = (b: BaselineReport) => [
        BARE_UPDATE_LABEL, NONE, NONE, NONE, NONE, count(b.throughput_rps), '1.00',
        ms(b.latency_ms.p50), ms(b.latency_ms.p95), ms(b.latency_ms.p99), NONE,
      ];
      const checks = (s: StrategyReport) => {
        const state = checkState(s, buyersEach);
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
      const atLocations = report.strategies.flatMap((s) => (s.proof?.locations ?? []).map((l) => locationRow(s, l)));
      if (atLocations.length > 0) {
        ctx.out.line(
          ctx.out.table(['Strategy', 'Location', 'Priority', 'Stock', 'Sold', 'Reserved', 'On hand', 'Ledger on hand', 'Ledger reserved', 'Active', 'Levels'], atLocations, {
            align: ['left', 'left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'left'],
          }),
        );
      }
      if (cfg.repeat > 1) {
        const spread = (name: string, s: { spread?: Spread }) => `${name} ${s.spread?.throughput_rps ? percent(s.spread.throughput_rps.relative) : NONE}`;
        ctx.out.line(
          `Spread of reserve/s over the ${count(cfg.repeat)} runs (max − min, over the median): ` +
            [spread(BARE_UPDATE_LABEL, report.baseline), ...report.strategies.map((s) => spread(s.strategy, s))].join(', ') + '.',
        );
      }
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
            `Interrupted: these figures cover only the buyers fired before the stop (${done || 'none'} of ${count(buyersEach)} each); ` +
              'no verdict on this run.',
          ),
        );
      } else if (report.unavailable && report.strategies.every((s) => s.violations.length === 0)) {
        ctx.out.line(chalk.yellow(unavailableSentence(report)));
      } else if (report.ok) {
        ctx.out.line(chalk.green('No oversell, no false rejection by guarded/locking/batched, every invariant holds.'));
      }
    });
    // Written whatever the verdict (a failed or stopped run is the one worth looking at).
    const reportWritten = reportFile === undefined || (await (await import('./loadtest-report.js')).writeReportFile(ctx, reportFile, report));
    if (report.interrupted) return 130;
    if (report.strategies.some((s) => s.violations.length > 0)) return 6;
    if (report.unavailable) {
      // The figures are on stdout; this is what a script reading the exit code is told.
      if (ctx.out.json) ctx.out.note(unavailableSentence(report));
      return 7;
    }
    return reportWritten ? 0 : 2;
  } finally {
    http?.close();
  }
}

/** A strategy's proof at one location: its sums, and whether every level there holds. */
function locationRow(s: StrategyReport, l: LocationProof): string[] {
  return [
    s.strategy,
    l.location,
    String(l.priority),
    count(l.stock),
    count(l.sold),
    count(l.reserved),
    count(l.on_hand),
    count(l.ledger_on_hand),
    count(l.ledger_reserved),
    count(l.active_reservations),
    l.bad_levels === 0 ? `${count(l.levels)} ok` : `${count(l.bad_levels)} of ${count(l.levels)} FAIL`,
  ];
}

/** No verdict, because the database turned operations away: the machine, not an invariant (exit 7). */
function unavailableSentence(report: { unavailable?: number; strategies: StrategyReport[] }): string {
  const first = report.strategies.find((s) => s.unavailable)?.first_error;
  return (
    `No verdict: the database turned away or lost ${plural(report.unavailable ?? 0, 'operation')}${first ? ` (${first})` : ''}; ` +
    'that is the server, not a broken invariant. Retry with a lower --concurrency, or when the server is less busy.'
  );
}

const percent = (fraction: number) => `${(Math.round(fraction * 1000) / 10).toFixed(1)}%`;
