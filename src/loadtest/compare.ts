/**
 * `loadtest --compare before.json after.json`: two saved `loadtest --json` documents side
 * by side, the change of each figure per strategy (and of the bare-UPDATE baseline they
 * were measured against), judged against the noise, and `--fail-if` conditions that gate a
 * CI job on them.
 *
 * Each strategy's change is normalised by its run's bare UPDATE (its figure over the bare
 * UPDATE's same figure), so that a slower machine is not read as a slower stockctl. A change
 * is better or worse only beyond the noise: the runs' own spread where `--repeat` measured
 * one, else DEFAULT_NOISE.
 */
import type { BaselineReport, LoadtestReport, RunFigures, StrategyReport } from './report.js';

/**
 * The noise assumed for a run that was not repeated: 25 %. Five single runs of the default
 * workload, minutes apart on a busy 2-core machine, moved each strategy's rate over its bare
 * UPDATE by up to 13 % (guarded), 20 % (batched) and more (locking, optimistic): below a
 * quarter, a change between single runs cannot be told from noise. `--repeat` measures it.
 */
export const DEFAULT_NOISE = 0.25;

export const FIGURES = ['throughput_rps', 'ratio_to_bare_update', 'p50_ms', 'p95_ms', 'p99_ms'] as const;
export type Figure = (typeof FIGURES)[number];

export type Verdict = 'better' | 'worse' | 'within_noise';
export type NoiseSource = 'repeat' | 'default';

/** One figure in both runs, its change, and how that change is judged. */
export interface Change {
  before: number | null;
  after: number | null;
  /** Relative change, after over before, minus one (null when either is missing or before is 0). */
  change: number | null;
  /** The same with each run's figure over its bare UPDATE's (the bare UPDATE's own row: as is). */
  normalised_change: number | null;
  /** The relative change within which it is noise (0.15 is 15 %), and where that came from. */
  noise: number | null;
  noise_source: NoiseSource | null;
  verdict: Verdict | null;
}

export interface StrategyChange {
  strategy: string;
  throughput_rps: Change;
  ratio_to_bare_update: Change;
  p50_ms: Change;
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
  /** --repeat: how many runs its figures are the medians of (1: a single run). */
  repeat: number;
  config: LoadtestReport['config'];
}

/** A `--fail-if` condition, read and then judged against the comparison. */
export interface FailCondition {
  /** As given. */
  condition: string;
  strategy: string;
  figure: Figure;
  operator: '<' | '<=' | '>' | '>=';
  /**
   * relative_change: `-10%`, the normalised relative change (as a fraction, -0.1); change:
   * `-100`, `+5` (a sign), the normalised change in the figure's unit; value: `50`, the
   * after run's own figure.
   */
  compares: 'relative_change' | 'change' | 'value';
  threshold: number;
}

export interface JudgedCondition extends FailCondition {
  /** What was compared with the threshold. */
  measured: number;
  /** For a change: is it beyond the noise? (A change within the noise never makes a condition hold.) Null for a value. */
  beyond_noise: boolean | null;
  holds: boolean;
}

export interface Comparison {
  before: ComparedRun;
  after: ComparedRun;
  /** Settings that differ between the runs (their figures are then not like for like). */
  config_differs: (keyof LoadtestReport['config'])[];
  /** How changes are normalised, and where the noise came from. */
  normalised_by: 'bare_update';
  noise: { source: NoiseSource; default: number };
  strategies: StrategyChange[];
  fail_if: JudgedCondition[];
  /** The conditions that hold: any makes `--compare` exit 6. */
  failed: string[];
}

/** Relative change, after over before, minus one; null when either is missing or before is 0. */
const change = (before: number | null, after: number | null) =>
  before === null || after === null || before === 0 ? null : Math.round((after / before - 1) * 1000) / 1000;

const higherIsBetter = (figure: Figure) => figure === 'throughput_rps' || figure === 'ratio_to_bare_update';

type Series = (Pick<StrategyReport, 'throughput_rps' | 'latency_ms'> & { repeats?: RunFigures[] }) | BaselineReport;

/** A series' figure; ratio_to_bare_update is worked out from the rates (never trusted from the file). */
function figureOf(report: LoadtestReport, s: Series | undefined, figure: Figure): number | null {
  if (!s) return null;
  switch (figure) {
    case 'throughput_rps':
      return s.throughput_rps;
    case 'ratio_to_bare_update':
      return report.baseline.throughput_rps > 0 ? Math.round((s.throughput_rps / report.baseline.throughput_rps) * 1000) / 1000 : null;
    default:
      return s.latency_ms[figure.slice(0, 3) as 'p50' | 'p95' | 'p99'] ?? null;
  }
}

/**
 * What a series' figure is normalised by: for a rate, the bare UPDATE's rate; for any
 * latency, the bare UPDATE's median, the machine's typical statement (its tail is a moment's
 * hiccup, unrelated to the strategy's own); nothing for a ratio, already relative.
 */
function referenceOf(report: LoadtestReport, figure: Figure): number | null {
  if (figure === 'ratio_to_bare_update') return 1;
  return figureOf(report, report.baseline, figure === 'throughput_rps' ? figure : 'p50_ms');
}

const runValue = (r: RunFigures, figure: Figure, bare?: RunFigures): number | null => {
  const own = (f: RunFigures, which: Figure) =>
    which === 'throughput_rps' ? f.throughput_rps : which === 'ratio_to_bare_update' ? f.ratio_to_bare_update : f.latency_ms[which.slice(0, 3) as 'p50'];
  if (!bare || figure === 'ratio_to_bare_update') return own(r, figure) ?? null;
  const reference = own(bare, figure === 'throughput_rps' ? figure : 'p50_ms');
  const value = own(r, figure);
  return value === null || !reference ? null : value / reference;
};

/**
 * The noise of one run's figure from its --repeat runs: the range of the figure over its
 * round's bare UPDATE (the bare UPDATE's own: as is), over their median. Undefined without repeats.
 */
function spreadOf(report: LoadtestReport, s: Series | undefined, figure: Figure, isBaseline: boolean): number | undefined {
  const runs = s?.repeats;
  const bare = report.baseline.repeats;
  if (!runs || runs.length < 2 || (!isBaseline && (!bare || bare.length < runs.length))) return undefined;
  const values = runs.map((r, i) => runValue(r, figure, isBaseline ? undefined : bare![i])).filter((v): v is number => v !== null);
  if (values.length < 2) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return median > 0 ? Math.round(((sorted[sorted.length - 1] - sorted[0]) / median) * 1000) / 1000 : undefined;
}

function judge(before: LoadtestReport, after: LoadtestReport, name: string, figure: Figure): Change {
  const isBaseline = name === 'bare_update';
  const find = (r: LoadtestReport): Series | undefined => (isBaseline ? r.baseline : r.strategies.find((s) => s.strategy === name));
  const [b, a] = [find(before), find(after)];
  const [bv, av] = [figureOf(before, b, figure), figureOf(after, a, figure)];
  const raw = change(bv, av);
  let normalised = raw;
  if (!isBaseline && raw !== null) {
    const [br, ar] = [referenceOf(before, figure), referenceOf(after, figure)];
    normalised = br && ar ? change(bv! / br, av! / ar) : raw;
  }
  const spreads = [spreadOf(before, b, figure, isBaseline), spreadOf(after, a, figure, isBaseline)].filter((n): n is number => n !== undefined);
  const noise = spreads.length > 0 ? Math.max(...spreads) : DEFAULT_NOISE;
  const verdict: Verdict | null =
    normalised === null ? null : Math.abs(normalised) <= noise ? 'within_noise' : normalised > 0 === higherIsBetter(figure) ? 'better' : 'worse';
  return {
    before: bv,
    after: av,
    change: raw,
    normalised_change: normalised,
    noise: normalised === null ? null : noise,
    noise_source: normalised === null ? null : spreads.length > 0 ? 'repeat' : 'default',
    verdict,
  };
}

const OPERATORS = ['<=', '>=', '<', '>'] as const;

/**
 * Read a `--fail-if` condition: `<strategy>.<figure> <operator> <threshold>`, like
 * `batched.throughput_rps < -10%` or `guarded.p99_ms > 50`. Returns a sentence saying what is
 * wrong instead when it cannot be read.
 */
export function parseCondition(text: string): FailCondition | string {
  const found = /^\s*([a-z_]+)\.([a-z0-9_]+)\s*(<=|>=|<|>)\s*([+-]?)(\d+(?:\.\d+)?)(%?)\s*$/.exec(text);
  if (!found) return 'write a strategy and a figure, an operator and a threshold, like \'batched.throughput_rps < -10%\'';
  const [, strategy, figure, operator, sign, digits, percent] = found;
  if (!(FIGURES as readonly string[]).includes(figure)) return `"${figure}" is not a figure: use one of ${FIGURES.join(', ')}`;
  const magnitude = Number(digits) * (sign === '-' ? -1 : 1);
  return {
    condition: text.trim(),
    strategy,
    figure: figure as Figure,
    operator: OPERATORS.find((o) => o === operator)!,
    compares: percent ? 'relative_change' : sign ? 'change' : 'value',
    threshold: percent ? Math.round(magnitude * 10) / 1000 : magnitude,
  };
}

const holdsBy: Record<FailCondition['operator'], (a: number, b: number) => boolean> = {
  '<': (a, b) => a < b,
  '<=': (a, b) => a <= b,
  '>': (a, b) => a > b,
  '>=': (a, b) => a >= b,
};

/**
 * Judge a condition; a sentence when it cannot be (its strategy missing from a run).
 * A change makes it hold only beyond the noise; the after run's own value, whatever the noise.
 */
function judgeCondition(c: FailCondition, strategies: StrategyChange[]): JudgedCondition | string {
  const row = strategies.find((s) => s.strategy === c.strategy);
  const names = strategies.map((s) => s.strategy).join(', ');
  if (!row) return `no run has the strategy "${c.strategy}" (these have ${names})`;
  const figure = row[c.figure];
  if (figure.after === null) return `${c.strategy} did not run in the after run`;
  if (c.compares === 'value') {
    return { ...c, measured: figure.after, beyond_noise: null, holds: holdsBy[c.operator](figure.after, c.threshold) };
  }
  if (figure.before === null || figure.normalised_change === null) return `${c.strategy} did not run in the before run, so it has no change`;
  // In the figure's unit: the after figure as if measured against the before run's bare UPDATE.
  const measured =
    c.compares === 'relative_change' ? figure.normalised_change : Math.round(figure.before * figure.normalised_change * 100) / 100;
  const beyond = figure.verdict !== 'within_noise';
  return { ...c, measured, beyond_noise: beyond, holds: beyond && holdsBy[c.operator](measured, c.threshold) };
}

/** Compare two runs; `conditions` are --fail-if's, read already. Throws nothing: a condition that cannot be judged comes back as `problems`. */
export function compareReports(before: LoadtestReport, after: LoadtestReport, conditions: FailCondition[] = []): Comparison & { problems: string[] } {
  const names = [...new Set(['bare_update', ...before.strategies.map((s) => s.strategy), ...after.strategies.map((s) => s.strategy)])];
  const passed = (r: LoadtestReport, name: string) => {
    const s = name === 'bare_update' ? undefined : r.strategies.find((x) => x.strategy === name);
    return s ? s.violations.length === 0 : null;
  };
  const strategies = names.map(
    (name): StrategyChange => ({
      strategy: name,
      throughput_rps: judge(before, after, name, 'throughput_rps'),
      ratio_to_bare_update: judge(before, after, name, 'ratio_to_bare_update'),
      p50_ms: judge(before, after, name, 'p50_ms'),
      p95_ms: judge(before, after, name, 'p95_ms'),
      p99_ms: judge(before, after, name, 'p99_ms'),
      ok: { before: passed(before, name), after: passed(after, name) },
    }),
  );
  // --repeat's count is how the figures were measured, not what was measured.
  const keys = [...new Set([...Object.keys(before.config), ...Object.keys(after.config)])].filter((k) => k !== 'repeat') as (keyof LoadtestReport['config'])[];
  const run = (r: LoadtestReport): ComparedRun => ({
    run_id: r.run_id,
    started_at: r.started_at,
    stockctl_version: r.stockctl_version,
    server_version: r.server_version,
    ok: r.ok,
    interrupted: r.interrupted,
    repeat: r.config.repeat ?? 1,
    config: r.config,
  });
  const judged = conditions.map((c) => judgeCondition(c, strategies));
  const problems = judged.flatMap((j, i) => (typeof j === 'string' ? [`--fail-if '${conditions[i].condition}': ${j}`] : []));
  const fail_if = judged.filter((j): j is JudgedCondition => typeof j !== 'string');
  const repeated = (r: LoadtestReport) => (r.baseline.repeats?.length ?? 0) > 1;
  return {
    before: run(before),
    after: run(after),
    config_differs: keys.filter((k) => JSON.stringify(before.config[k]) !== JSON.stringify(after.config[k])),
    normalised_by: 'bare_update',
    noise: { source: repeated(before) || repeated(after) ? 'repeat' : 'default', default: DEFAULT_NOISE },
    strategies,
    fail_if,
    failed: fail_if.filter((c) => c.holds).map((c) => c.condition),
    problems,
  };
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const hasFigures = (v: unknown) =>
  isObject(v) &&
  typeof v.throughput_rps === 'number' &&
  isObject(v.latency_ms) &&
  typeof v.latency_ms.p50 === 'number' &&
  typeof v.latency_ms.p95 === 'number' &&
  typeof v.latency_ms.p99 === 'number';

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
