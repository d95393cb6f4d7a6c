/**
 * `loadtest --repeat N`: the whole workload N times, rounds of every strategy in turn (each
 * round starting one strategy further along, each measured against its own round's bare
 * UPDATE); each figure is the median, with every run's own figures and their spread.
 */
import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();

interface Figures {
  throughput_rps: number;
  ratio_to_bare_update: number | null;
  latency_ms: { p50: number; p95: number; p99: number };
}
interface Series extends Figures {
  repeats: Figures[];
  spread: { throughput_rps: { min: number; max: number; relative: number } };
  histogram: { count: number }[];
}
interface Report {
  run_id: string;
  ok: boolean;
  config: { repeat: number };
  baseline: Series;
  strategies: (Series & { strategy: string; successes: number; rejections: number; buyers: number; proof: { stock: number; sold: number; reserved: number } })[];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[1];

describe('loadtest --repeat', () => {
  it('--repeat 3: medians of three interleaved runs, each run kept with the spread; counts and the proof add up', async () => {
    const res = await t.cliJson<Report>(['loadtest', '--repeat', '3', '--buyers', '20', '--stock', '10', '--concurrency', '4', '--keep'], { timeoutMs: 120_000 });
    expect(res.code, res.stderr).toBe(0);
    const r = res.json;
    expect(r).toMatchObject({ ok: true, config: { repeat: 3 } });
    for (const s of [r.baseline, ...r.strategies]) {
      expect(s.repeats).toHaveLength(3);
      const rates = s.repeats.map((x) => x.throughput_rps);
      expect(s.throughput_rps).toBe(median(rates));
      expect(s.latency_ms.p95).toBe(median(s.repeats.map((x) => x.latency_ms.p95)));
      const { min, max, relative } = s.spread.throughput_rps;
      expect([min, max]).toEqual([Math.min(...rates), Math.max(...rates)]);
      // Given to three decimals: within half of the last one (0.0625 is written 0.063).
      expect(Math.abs(relative - (max - min) / median(rates))).toBeLessThanOrEqual(0.0005 + 1e-12);
      expect(s.histogram.reduce((a, b) => a + b.count, 0)).toBe(60);
    }
    for (const s of r.strategies) expect(s.ratio_to_bare_update).toBe(median(s.repeats.map((x) => x.ratio_to_bare_update!)));
    const guarded = r.strategies.find((s) => s.strategy === 'guarded')!;
    expect(guarded).toMatchObject({ buyers: 60, successes: 30, rejections: 30, proof: { stock: 30, sold: 0, reserved: 30 } });

    // The order the strategies ran in, from the ledger: round after round, each starting one further along.
    const made = await t.sql`SELECT sku FROM stock_movements WHERE sku LIKE ${`loadtest-${r.run_id}-%`} AND order_id IS NULL ORDER BY movement_id`;
    expect(made.map((m) => (m.sku as string).slice(`loadtest-${r.run_id}-`.length, -2))).toEqual([
      ...['r1-guarded', 'r1-optimistic', 'r1-locking', 'r1-batched'],
      ...['r2-optimistic', 'r2-locking', 'r2-batched', 'r2-guarded'],
      ...['r3-locking', 'r3-batched', 'r3-guarded', 'r3-optimistic'],
    ]);
    expect((await t.cli(['loadtest', '--cleanup'])).code).toBe(0);
  });

  it('human output says the figures are medians and gives the spread; --repeat is checked like any count', async () => {
    const res = await t.cli(['loadtest', '--repeat', '2', '--buyers', '8', '--stock', '4', '--concurrency', '2', '--strategy', 'locking'], { timeoutMs: 60_000 });
    expect(res.code, res.stderr).toBe(0);
    const lines = res.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('8 buyers × 1 unit(s), 4 in stock on each of 1 SKU(s), 2 connections; 2 runs, strategies interleaved: medians');
    expect(res.stdout).toMatch(/\nSpread of reserve\/s over the 2 runs \(max − min, over the median\): bare UPDATE \(limit\) \d+\.\d%, locking \d+\.\d%\.\n/);
    expect(res.stdout).toMatch(/│ locking\s+│\s+8 │\s+8 │\s+0 │/);
    const bad = await t.cli(['loadtest', '--repeat', '0']);
    expect(bad).toMatchObject({ code: 2, stdout: '' });
    expect(bad.stderr).toMatch(/^error: Invalid --repeat "0"/);
  });
});
