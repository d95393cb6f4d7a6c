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

describe('loadtest --compare', () => {
  it('prints the change per strategy, before → after (±x%), and the settings that differ; no database is opened', async () => {
    const res = await runCli(['loadtest', '--compare', before, after], { databaseUrl: NO_SERVER });
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(res.stdout.split('\n')).toEqual([
      `Before: ${before}: run aaaa1111 at 2026-01-01T10:00:00.000Z, stockctl 0.1.0, PostgreSQL 15.20`,
      `After:  ${after}: run bbbb2222 at 2026-01-02T10:00:00.000Z, stockctl 0.2.0, PostgreSQL 15.20`,
      '┌─────────────────────┬────────────────────────┬────────────────────┬──────────────────────┬──────────────────────┬───────────┐',
      '│ Strategy            │              Reserve/s │            vs bare │               p95 ms │               p99 ms │ Checks    │',
      '├─────────────────────┼────────────────────────┼────────────────────┼──────────────────────┼──────────────────────┼───────────┤',
      '│ bare UPDATE (limit) │ 1,000 → 1,100 (+10.0%) │ 1.00 → 1.00 (0.0%) │   10.0 → 9.5 (-5.0%) │   20.0 → 20.0 (0.0%) │ —         │',
      '├─────────────────────┼────────────────────────┼────────────────────┼──────────────────────┼──────────────────────┼───────────┤',
      '│ guarded             │     400 → 440 (+10.0%) │ 0.40 → 0.40 (0.0%) │ 50.0 → 45.0 (-10.0%) │ 80.0 → 88.0 (+10.0%) │ ok → FAIL │',
      '├─────────────────────┼────────────────────────┼────────────────────┼──────────────────────┼──────────────────────┼───────────┤',
      '│ optimistic          │                300 → — │           0.30 → — │             30.0 → — │            200.0 → — │ ok → —    │',
      '├─────────────────────┼────────────────────────┼────────────────────┼──────────────────────┼──────────────────────┼───────────┤',
      '│ batched             │              — → 1,200 │           — → 1.09 │              — → 5.0 │              — → 9.0 │ — → ok    │',
      '└─────────────────────┴────────────────────────┴────────────────────┴──────────────────────┴──────────────────────┴───────────┘',
      'The settings differ (concurrency 20 → 32, connections 20 → 32, strategies guarded,optimistic → guarded,batched): the figures are not like for like.',
      '',
    ]);
  });

  it('--json prints the comparison document: the runs, the settings that differ and the change per strategy', async () => {
    const res = await runCliJson<Record<string, unknown>>(['loadtest', '--compare', before, after], { databaseUrl: NO_SERVER });
    expect(res.code).toBe(0);
    expect(res.stderr).toBe('');
    expect(res.json).toEqual({
      before: { run_id: 'aaaa1111', started_at: BEFORE.started_at, stockctl_version: '0.1.0', server_version: '15.20', ok: true, interrupted: false, config: BEFORE.config },
      after: { run_id: 'bbbb2222', started_at: AFTER.started_at, stockctl_version: '0.2.0', server_version: '15.20', ok: false, interrupted: false, config: AFTER.config },
      config_differs: ['concurrency', 'connections', 'strategies'],
      strategies: [
        {
          strategy: 'bare_update',
          throughput_rps: { before: 1000, after: 1100, change: 0.1 },
          ratio_to_bare_update: { before: 1, after: 1, change: 0 },
          p95_ms: { before: 10, after: 9.5, change: -0.05 },
          p99_ms: { before: 20, after: 20, change: 0 },
          ok: { before: null, after: null },
        },
        {
          strategy: 'guarded',
          throughput_rps: { before: 400, after: 440, change: 0.1 },
          ratio_to_bare_update: { before: 0.4, after: 0.4, change: 0 },
          p95_ms: { before: 50, after: 45, change: -0.1 },
          p99_ms: { before: 80, after: 88, change: 0.1 },
          ok: { before: true, after: false },
        },
        {
          strategy: 'optimistic',
          throughput_rps: { before: 300, after: null, change: null },
          ratio_to_bare_update: { before: 0.3, after: null, change: null },
          p95_ms: { before: 30, after: null, change: null },
          p99_ms: { before: 200, after: null, change: null },
          ok: { before: true, after: null },
        },
        {
          strategy: 'batched',
          throughput_rps: { before: null, after: 1200, change: null },
          ratio_to_bare_update: { before: null, after: 1.09, change: null },
          p95_ms: { before: null, after: 5, change: null },
          p99_ms: { before: null, after: 9, change: null },
          ok: { before: null, after: true },
        },
      ],
    });
  });

  it('a run compared with itself: no change, nothing differs; an interrupted run and another server are pointed out', async () => {
    const same = await runCliJson<{ config_differs: string[]; strategies: { throughput_rps: { change: number } }[] }>(
      ['loadtest', '--compare', before, before],
      { databaseUrl: NO_SERVER },
    );
    expect(same.code).toBe(0);
    expect(same.json.config_differs).toEqual([]);
    expect(same.json.strategies.map((s) => s.throughput_rps.change)).toEqual([0, 0, 0]);

    const elsewhere = save('elsewhere.json', { ...BEFORE, server_version: '17.10', interrupted: true, ok: false });
    const res = await runCli(['loadtest', '--compare', before, elsewhere], { databaseUrl: NO_SERVER });
    expect(res.code).toBe(0);
    const lines = res.stdout.trimEnd().split('\n');
    expect(lines[1]).toBe(`After:  ${elsewhere}: run aaaa1111 at 2026-01-01T10:00:00.000Z, stockctl 0.1.0, PostgreSQL 17.10 (interrupted: partial figures)`);
    expect(lines[lines.length - 1]).toBe('The servers differ (PostgreSQL 15.20 → 17.10): compare the ratios to the bare UPDATE, not the rates.');
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
