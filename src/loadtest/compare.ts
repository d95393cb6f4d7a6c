/**
 * `loadtest --compare before.json after.json`: two saved `loadtest --json` documents side
 * by side, the change per strategy (and for the bare-UPDATE baseline they were measured
 * against, so that a slower machine is told apart from a slower stockctl).
 */
import type { LoadtestReport } from './run.js';

/** One figure in both runs, and its relative change (null when either is missing or before is 0). */
export interface Change {
  before: number | null;
  after: number | null;
  change: number | null;
}

export interface StrategyChange {
  strategy: string;
  throughput_rps: Change;
  ratio_to_bare_update: Change;
  p95_ms: Change;
  p99_ms: Change;
  /** Its checks passed; null where it did not run (and always for the baseline, which has no checks). */
  ok: { before: boolean | null; after: boolean | null };
}

/** Which run a side of the comparison is. */
export interface ComparedRun {
  run_id: string;
  started_at: string;
  stockctl_version: string;
  server_version: string;
  ok: boolean;
  /** Its figures cover only the buyers fired before it was stopped. */
  interrupted: boolean;
  config: LoadtestReport['config'];
}

export interface Comparison {
  before: ComparedRun;
  after: ComparedRun;
  /** Settings that differ between the runs (their figures are then not like for like). */
  config_differs: (keyof LoadtestReport['config'])[];
  strategies: StrategyChange[];
}

/** Relative change, after over before, minus one; null when either is missing or before is 0. */
const change = (before: number | null, after: number | null) =>
  before === null || after === null || before === 0 ? null : Math.round((after / before - 1) * 1000) / 1000;

const pair = (before: number | null | undefined, after: number | null | undefined): Change => ({
  before: before ?? null,
  after: after ?? null,
  change: change(before ?? null, after ?? null),
});

export function compareReports(before: LoadtestReport, after: LoadtestReport): Comparison {
  const names = [...new Set(['bare_update', ...before.strategies.map((s) => s.strategy), ...after.strategies.map((s) => s.strategy)])];
  const find = (report: LoadtestReport, name: string) =>
    name === 'bare_update' ? { ...report.baseline, ratio_to_bare_update: 1, violations: undefined } : report.strategies.find((s) => s.strategy === name);
  const passed = (s: ReturnType<typeof find>) => (s?.violations ? s.violations.length === 0 : null);
  const strategies = names.map((name): StrategyChange => {
    const b = find(before, name);
    const a = find(after, name);
    return {
      strategy: name,
      throughput_rps: pair(b?.throughput_rps, a?.throughput_rps),
      ratio_to_bare_update: pair(b?.ratio_to_bare_update, a?.ratio_to_bare_update),
      p95_ms: pair(b?.latency_ms.p95, a?.latency_ms.p95),
      p99_ms: pair(b?.latency_ms.p99, a?.latency_ms.p99),
      ok: { before: passed(b), after: passed(a) },
    };
  });
  const keys = [...new Set([...Object.keys(before.config), ...Object.keys(after.config)])] as (keyof LoadtestReport['config'])[];
  const run = (r: LoadtestReport): ComparedRun => ({
    run_id: r.run_id,
    started_at: r.started_at,
    stockctl_version: r.stockctl_version,
    server_version: r.server_version,
    ok: r.ok,
    interrupted: r.interrupted,
    config: r.config,
  });
  return {
    before: run(before),
    after: run(after),
    config_differs: keys.filter((k) => JSON.stringify(before.config[k]) !== JSON.stringify(after.config[k])),
    strategies,
  };
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const hasFigures = (v: unknown) =>
  isObject(v) && typeof v.throughput_rps === 'number' && isObject(v.latency_ms) && typeof v.latency_ms.p95 === 'number' && typeof v.latency_ms.p99 === 'number';

/**
 * Why this parsed JSON is not a `loadtest --json` document (undefined when it is one): the
 * first field that is missing or of the wrong shape, as a clause ("it has no …").
 */
export function loadtestReportProblem(value: unknown): string | undefined {
  if (!isObject(value)) return 'it is not a JSON object';
  if (isObject(value.error) && !('run_id' in value)) {
    return `it is the error document of a failed command, not a loadtest's figures (${typeof value.error.message === 'string' ? value.error.message : 'no message'})`;
  }
  for (const field of ['run_id', 'config', 'baseline', 'strategies'] as const) {
    if (!(field in value)) return `it has no "${field}" (save one with \`stockctl loadtest --json > run.json\`)`;
  }
  if (!isObject(value.config)) return '"config" is not an object';
  if (!hasFigures(value.baseline)) return '"baseline" has no throughput_rps and latency_ms';
  if (!Array.isArray(value.strategies)) return '"strategies" is not a list';
  const bad = value.strategies.findIndex((s) => !(hasFigures(s) && typeof s.strategy === 'string' && Array.isArray(s.violations)));
  if (bad >= 0) return `"strategies"[${bad}] has no strategy, throughput_rps, latency_ms and violations`;
  return undefined;
}
