/**
 * `loadtest --compare before.json after.json`: two saved `loadtest --json` documents side by
 * side. It runs no load and opens no database: every run here points DATABASE_URL at a port
 * where nothing listens (opening it would be exit 7), or has none and an empty STOCKCTL_HOME
 * (starting the embedded server would fill it).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, runCliJson } from '../helpers/cli.js';

const NO_SERVER = 'postgres://postgres@127.0.0.1:1/nothing_listens_here';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stockctl-compare-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const latency = (p95: number, p99: number) => ({ p50: p95 / 2, p95, p99, max: p99 * 2 });
const strategy = (name: string, rps: number, ratio: number, p95: number, p99: number, violations: unknown[] = []) => ({
  strategy: name,
  buyers: 200,
  successes: 50,
  rejections: 150,
  false_rejections: 0,
  errors: 0,
  retries: 0,
  units_reserved: 50,
  expected_successes: 50,
  duration_ms: 500,
  throughput_rps: rps,
  ratio_to_bare_update: ratio,
  latency_ms: latency(p95, p99),
  violations,
});
const config = (concurrency: number, strategies: string[]) => ({
  buyers: 200,
  stock: 50,
  quantity: 1,
  concurrency,
  connections: concurrency,
  skus: 1,
  strategies,
  mix: false,
  max_retries: 3,
  retry_backoff_ms: 100,
});
const baseline = (rps: number, p95: number, p99: number) => ({
  strategy: 'bare_update',
  buyers: 200,
  errors: 0,
  duration_ms: 200,
  throughput_rps: rps,
  latency_ms: latency(p95, p99),
});

const BEFORE = {
  run_id: 'aaaa1111',
  started_at: '2026-01-01T10:00:00.000Z',
  finished_at: '2026-01-01T10:00:05.000Z',
  stockctl_version: '0.1.0',
  server_version: '15.20',
  config: config(20, ['guarded', 'optimistic']),
  baseline: baseline(1000, 10, 20),
  strategies: [strategy('guarded', 400, 0.4, 50, 80), strategy('optimistic', 300, 0.3, 30, 200)],
  ok: true,
  interrupted: false,
};
const AFTER = {
  ...BEFORE,
  run_id: 'bbbb2222',
  started_at: '2026-01-02T10:00:00.000Z',
  finished_at: '2026-01-02T10:00:05.000Z',
  stockctl_version: '0.2.0',
  config: config(32, ['guarded', 'batched']),
  baseline: baseline(1100, 9.5, 20),
  strategies: [
    strategy('guarded', 440, 0.4, 45, 88, [{ kind: 'oversell', message: '51 units reserved and 0 sold out of 50 in stock' }]),
    strategy('batched', 1200, 1.09, 5, 9),
  ],
  ok: false,
};

function save(name: string, content: unknown): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  return file;
}
const before = save('before.json', BEFORE);
const after = save('after.json', AFTER);

/** A Change as --compare --json gives it, judged against the default noise. */
const judged = (before: number | null, after: number | null, change: number | null, normalised: number | null = change) => ({
  before,
  after,
  change,
  normalised_change: normalised,
  noise: normalised === null ? null : 0.25,
  noise_source: normalised === null ? null : 'default',
  verdict: normalised === null ? null : 'within_noise',
});

describe('loadtest --compare', () => {
  it('prints each figure before → after with its change over the bare UPDATE, marked against the noise; no database is opened', async () => {
    const res = await runCli(['loadtest', '--compare', before, after], { databaseUrl: NO_SERVER });
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(res.stdout.split('\n')).toEqual([
      `Before: ${before}: run aaaa1111 at 2026-01-01T10:00:00.000Z, stockctl 0.1.0, PostgreSQL 15.20`,
      `After:  ${after}: run bbbb2222 at 2026-01-02T10:00:00.000Z, stockctl 0.2.0, PostgreSQL 15.20`,
      "Changes are over each run's bare UPDATE (1,000 → 1,100/s, +10.0%), so that a slower machine is not a slower stockctl; noise: ±25.0%, the default for runs that were not repeated (`loadtest --repeat 3` measures it).",
      '┌─────────────────────┬────────────────────────┬─────────────────────┬─────────────────────┬──────────────────────┬───────────┐',
      '│ Strategy            │              Reserve/s │              p50 ms │              p95 ms │               p99 ms │ Checks    │',
      '├─────────────────────┼────────────────────────┼─────────────────────┼─────────────────────┼──────────────────────┼───────────┤',
      '│ bare UPDATE (limit) │ 1,000 → 1,100 +10.0% ≈ │   5.0 → 4.8 -5.0% ≈ │  10.0 → 9.5 -5.0% ≈ │   20.0 → 20.0 0.0% ≈ │ —         │',
      '├─────────────────────┼────────────────────────┼─────────────────────┼─────────────────────┼──────────────────────┼───────────┤',
      '│ guarded             │       400 → 440 0.0% ≈ │ 25.0 → 22.5 -5.3% ≈ │ 50.0 → 45.0 -5.3% ≈ │ 80.0 → 88.0 +15.8% ≈ │ ok → FAIL │',
      '├─────────────────────┼────────────────────────┼─────────────────────┼─────────────────────┼──────────────────────┼───────────┤',
      '│ optimistic          │                300 → — │            15.0 → — │            30.0 → — │            200.0 → — │ ok → —    │',
      '├─────────────────────┼────────────────────────┼─────────────────────┼─────────────────────┼──────────────────────┼───────────┤',
      '│ batched             │              — → 1,200 │             — → 2.5 │             — → 5.0 │              — → 9.0 │ — → ok    │',
      '└─────────────────────┴────────────────────────┴─────────────────────┴─────────────────────┴──────────────────────┴───────────┘',
      'better / worse: beyond the noise; ≈: within it.',
      'The settings differ (concurrency 20 → 32, connections 20 → 32, strategies guarded,optimistic → guarded,batched): the figures are not like for like.',
      '',
    ]);
  });

  it('--json prints the whole comparison: the runs, the settings that differ, each figure judged, the noise used', async () => {
    const res = await runCliJson<Record<string, unknown>>(['loadtest', '--compare', before, after], { databaseUrl: NO_SERVER });
    expect(res.code).toBe(0);
    expect(res.stderr).toBe('');
    const run = (r: typeof BEFORE) => ({
      run_id: r.run_id,
      started_at: r.started_at,
      stockctl_version: r.stockctl_version,
      server_version: '15.20',
      ok: r.ok,
      interrupted: false,
      repeat: 1,
      config: r.config,
    });
    expect(res.json).toEqual({
      before: run(BEFORE),
      after: run(AFTER),
      config_differs: ['concurrency', 'connections', 'strategies'],
      normalised_by: 'bare_update',
      noise: { source: 'default', default: 0.25 },
      strategies: [
        {
          strategy: 'bare_update',
          throughput_rps: judged(1000, 1100, 0.1),
          ratio_to_bare_update: judged(1, 1, 0),
          p50_ms: judged(5, 4.75, -0.05),
          p95_ms: judged(10, 9.5, -0.05),
          p99_ms: judged(20, 20, 0),
          ok: { before: null, after: null },
        },
        {
          strategy: 'guarded',
          throughput_rps: judged(400, 440, 0.1, 0),
          ratio_to_bare_update: judged(0.4, 0.4, 0),
          p50_ms: judged(25, 22.5, -0.1, -0.053),
          p95_ms: judged(50, 45, -0.1, -0.053),
          p99_ms: judged(80, 88, 0.1, 0.158),
          ok: { before: true, after: false },
        },
        {
          strategy: 'optimistic',
          throughput_rps: judged(300, null, null),
          ratio_to_bare_update: judged(0.3, null, null),
          p50_ms: judged(15, null, null),
          p95_ms: judged(30, null, null),
          p99_ms: judged(200, null, null),
          ok: { before: true, after: null },
        },
        {
          strategy: 'batched',
          throughput_rps: judged(null, 1200, null),
          ratio_to_bare_update: judged(null, 1.091, null),
          p50_ms: judged(null, 2.5, null),
          p95_ms: judged(null, 5, null),
          p99_ms: judged(null, 9, null),
          ok: { before: null, after: true },
        },
      ],
      fail_if: [],
      failed: [],
    });
  });

  it('a run compared with itself: no change, nothing differs; an interrupted run and another server are pointed out', async () => {
    const same = await runCliJson<{ config_differs: string[]; strategies: { throughput_rps: { change: number; verdict: string } }[] }>(
      ['loadtest', '--compare', before, before],
      { databaseUrl: NO_SERVER },
    );
    expect(same.code).toBe(0);
    expect(same.json.config_differs).toEqual([]);
    expect(same.json.strategies.map((s) => s.throughput_rps.change)).toEqual([0, 0, 0]);
    expect(same.json.strategies.map((s) => s.throughput_rps.verdict)).toEqual(['within_noise', 'within_noise', 'within_noise']);

    const elsewhere = save('elsewhere.json', { ...BEFORE, server_version: '17.10', interrupted: true, ok: false });
    const res = await runCli(['loadtest', '--compare', before, elsewhere], { databaseUrl: NO_SERVER });
    expect(res.code).toBe(0);
    const lines = res.stdout.trimEnd().split('\n');
    expect(lines[1]).toBe(`After:  ${elsewhere}: run aaaa1111 at 2026-01-01T10:00:00.000Z, stockctl 0.1.0, PostgreSQL 17.10 (interrupted: partial figures)`);
    expect(lines).toContain('The servers differ (PostgreSQL 15.20 → 17.10): compare the ratios to the bare UPDATE, not the rates.');
  });

  it('needs no database at all: without DATABASE_URL it starts no embedded server', async () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'stockctl-compare-home-'));
    try {
      const res = await runCli(['loadtest', '--compare', before, after], { databaseUrl: null, env: { STOCKCTL_HOME: home } });
      expect(res.code).toBe(0);
      expect(res.stderr).toBe('');
      expect(fs.readdirSync(home)).toEqual([]);
    } finally {
      fs.rmSync(home, { recursive: true, force: true });
    }
  });

  it('a missing, unreadable or foreign file is exit 2, naming the file and what is wrong', async () => {
    const cases: [string[], string][] = [
      [[before, path.join(dir, 'missing.json')], `Cannot compare ${path.join(dir, 'missing.json')}: no such file or directory.`],
      [[dir, after], `Cannot compare ${dir}: it is a directory.`],
      [[save('empty.json', ''), after], `Cannot compare ${path.join(dir, 'empty.json')}: it is empty (save a run with \`stockctl loadtest --json > run.json\`).`],
      [[before, save('notes.txt', 'faster!\n')], `Cannot compare ${path.join(dir, 'notes.txt')}: it is not JSON (`],
      [[save('list.json', [1, 2]), after], `Cannot compare ${path.join(dir, 'list.json')}: it is not a \`loadtest --json\` document: it is not a JSON object.`],
      [
        [save('cleanup.json', { removed: { runs: [] } }), after],
        `Cannot compare ${path.join(dir, 'cleanup.json')}: it is not a \`loadtest --json\` document: it has no "run_id" (save one with \`stockctl loadtest --json > run.json\`).`,
      ],
      [
        [before, save('error.json', { error: { code: 'database_unavailable', message: 'The database is unavailable.' } })],
        `Cannot compare ${path.join(dir, 'error.json')}: it is not a \`loadtest --json\` document: it is the error document of a failed command, not a loadtest's figures (The database is unavailable.).`,
      ],
      [
        [before, save('broken.json', { ...AFTER, strategies: [{ strategy: 'guarded' }] })],
        `Cannot compare ${path.join(dir, 'broken.json')}: it is not a \`loadtest --json\` document: "strategies"[0] has no strategy, throughput_rps, latency_ms and violations.`,
      ],
      [[before], '--compare takes two files, the saved `loadtest --json` of the run before and of the run after; got 1.'],
      [[before, after, before], '--compare takes two files, the saved `loadtest --json` of the run before and of the run after; got 3.'],
    ];
    for (const [files, message] of cases) {
      const res = await runCli(['loadtest', '--compare', ...files], { databaseUrl: NO_SERVER });
      expect(res.code, message).toBe(2);
      expect(res.stdout, message).toBe('');
      expect(res.stderr.startsWith(`error: ${message}`), `${res.stderr} should start with error: ${message}`).toBe(true);
      expect(res.stderr.split('\n').length, res.stderr).toBe(2); // one sentence, no stack trace
    }
  });

  it('--json errors are one JSON document; --compare with flags of a run is a usage error', async () => {
    const missing = path.join(dir, 'missing.json');
    const res = await runCliJson<{ error: { code: string; message: string } }>(['loadtest', '--compare', before, missing], { databaseUrl: NO_SERVER });
    expect(res.code).toBe(2);
    expect(res.json).toEqual({ error: { code: 'invalid_input', message: `Cannot compare ${missing}: no such file or directory.` } });

    const withReport = await runCli(['loadtest', '--compare', before, after, '--report', path.join(dir, 'x.html'), '--keep'], { databaseUrl: NO_SERVER });
    expect(withReport).toMatchObject({ code: 2, stdout: '', stderr: 'error: --compare runs nothing: leave out --report and --keep.\n' });
    expect(fs.existsSync(path.join(dir, 'x.html'))).toBe(false);
  });
});

describe('loadtest --compare --fail-if: a gate for CI', () => {
  /** BEFORE with batched in it, and a copy of it whose figures are scaled: `rates` × rps, `slower` × latency. */
  const withBatched = { ...BEFORE, strategies: [...BEFORE.strategies, strategy('batched', 1200, 1.2, 5, 9)] };
  const scaled = (strategyName: string | 'all', rates: number, slower = 1) => ({
    ...withBatched,
    baseline: strategyName === 'all' ? { ...withBatched.baseline, throughput_rps: withBatched.baseline.throughput_rps * rates } : withBatched.baseline,
    strategies: withBatched.strategies.map((s) =>
      strategyName === 'all' || s.strategy === strategyName
        ? { ...s, throughput_rps: s.throughput_rps * rates, latency_ms: { ...s.latency_ms, p50: s.latency_ms.p50 * slower } }
        : s,
    ),
  });
  const base = save('gate-before.json', withBatched);
  const GATE = 'batched.throughput_rps < -10%';

  it('a planted regression (batched at half its rate) exits 6 naming the condition; the same run twice passes, exit 0', async () => {
    const regressed = save('gate-regressed.json', scaled('batched', 0.5));
    const res = await runCli(['loadtest', '--compare', base, regressed, '--fail-if', GATE, '--fail-if', 'guarded.p99_ms > 100'], { databaseUrl: NO_SERVER });
    expect(res.code).toBe(6);
    expect(res.stderr).toBe(`A --fail-if condition holds: ${GATE}.\n`);
    expect(res.stdout).toContain(`FAIL --fail-if '${GATE}': it moved -50.0%, beyond the noise.\n`);
    expect(res.stdout).toContain("pass --fail-if 'guarded.p99_ms > 100': it is 80 ms.\n");
    expect(res.stdout).toMatch(/│ batched +│ 1,200 → 600 -50\.0% worse │/);

    const same = await runCliJson<{ failed: string[]; fail_if: { holds: boolean; measured: number }[] }>(['loadtest', '--compare', base, base, '--fail-if', GATE], {
      databaseUrl: NO_SERVER,
    });
    expect(same.code).toBe(0);
    expect(same.json.failed).toEqual([]);
    expect(same.json.fail_if).toEqual([expect.objectContaining({ condition: GATE, compares: 'relative_change', threshold: -0.1, measured: 0, beyond_noise: false, holds: false })]);
  });

  it('normalised by the bare UPDATE: a machine half as fast is no regression; a change within the noise never fires; a bare number bounds the value', async () => {
    const slowMachine = save('gate-slow-machine.json', scaled('all', 0.5));
    const res = await runCliJson<{ failed: string[]; strategies: { strategy: string; throughput_rps: { change: number; normalised_change: number; verdict: string } }[] }>(
      ['loadtest', '--compare', base, slowMachine, '--fail-if', GATE],
      { databaseUrl: NO_SERVER },
    );
    expect(res.code).toBe(0);
    expect(res.json.strategies.find((s) => s.strategy === 'batched')!.throughput_rps).toMatchObject({ change: -0.5, normalised_change: 0, verdict: 'within_noise' });
    // -20%: past the threshold, but within the default noise of single runs (25%).
    const noisy = save('gate-noisy.json', scaled('batched', 0.8));
    expect((await runCli(['loadtest', '--compare', base, noisy, '--fail-if', GATE], { databaseUrl: NO_SERVER })).code).toBe(0);
    // A value, not a change: holds whatever the noise.
    const value = await runCli(['loadtest', '--compare', base, noisy, '--fail-if', 'batched.throughput_rps < 1000'], { databaseUrl: NO_SERVER });
    expect(value).toMatchObject({ code: 6, stderr: 'A --fail-if condition holds: batched.throughput_rps < 1000.\n' });
  });

  it('--repeat runs bring their own noise: the same -20% is then beyond it, and the comparison says where the noise came from', async () => {
    const repeated = (report: typeof withBatched) => {
      // Each strategy's rate moves by ±2% around its median over the runs, the bare UPDATE's not at all.
      const runs = (s: { throughput_rps: number; latency_ms: object }, factors: number[]) =>
        factors.map((f) => ({ throughput_rps: s.throughput_rps * f, ratio_to_bare_update: null, duration_ms: 500, latency_ms: s.latency_ms }));
      return {
        ...report,
        config: { ...report.config, repeat: 3 },
        baseline: { ...report.baseline, repeats: runs(report.baseline, [1, 1, 1]) },
        strategies: report.strategies.map((s) => ({ ...s, repeats: runs(s, [0.98, 1, 1.02]) })),
      };
    };
    const before3 = save('gate-before-3.json', repeated(withBatched));
    const after3 = save('gate-after-3.json', repeated(scaled('batched', 0.8)));
    const res = await runCliJson<{ noise: { source: string }; failed: string[]; strategies: { strategy: string; throughput_rps: { noise: number; noise_source: string; verdict: string } }[] }>(
      ['loadtest', '--compare', before3, after3, '--fail-if', GATE],
      { databaseUrl: NO_SERVER },
    );
    expect(res.code).toBe(6);
    expect(res.json.noise.source).toBe('repeat');
    expect(res.json.strategies.find((s) => s.strategy === 'batched')!.throughput_rps).toEqual(expect.objectContaining({ noise: 0.04, noise_source: 'repeat', verdict: 'worse' }));
    expect(res.json.failed).toEqual([GATE]);
    const human = await runCli(['loadtest', '--compare', before3, after3], { databaseUrl: NO_SERVER });
    expect(human.stdout).toContain("noise: each figure's own spread over the repeated runs (max − min over the median).");
  });

  it('a condition that cannot be read or judged is exit 2, one sentence; --fail-if without --compare too', async () => {
    const cases: [string, RegExp][] = [
      ['batched.throughput < -10%', /^error: Invalid --fail-if 'batched\.throughput < -10%': "throughput" is not a figure: use one of throughput_rps, ratio_to_bare_update, p50_ms, p95_ms, p99_ms\. /],
      ['batched throughput_rps', /^error: Invalid --fail-if 'batched throughput_rps': write a strategy and a figure, an operator and a threshold, like 'batched\.throughput_rps < -10%'\. /],
      ['locking.p99_ms > 50', /^error: Cannot judge --fail-if 'locking\.p99_ms > 50': no run has the strategy "locking" \(these have bare_update, guarded, optimistic, batched\)\.\n$/],
    ];
    for (const [condition, message] of cases) {
      const res = await runCli(['loadtest', '--compare', base, base, '--fail-if', condition], { databaseUrl: NO_SERVER });
      expect(res.code, condition).toBe(2);
      expect(res.stdout).toBe('');
      expect(res.stderr).toMatch(message);
    }
    const alone = await runCli(['loadtest', '--fail-if', GATE], { databaseUrl: NO_SERVER });
    expect(alone).toMatchObject({ code: 2, stderr: 'error: --fail-if goes with --compare before.json after.json (it judges a comparison, not a run).\n' });
  });
});
