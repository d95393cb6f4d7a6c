/**
 * `loadtest --report FILE`: the run as one self-contained HTML page, written whatever the
 * verdict, atomically, beside --json's one document. (The page's charts, drawn by a real
 * browser: loadtest-report-browser.test.ts.)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startCli } from '../helpers/cli.js';
import { useTestDatabase } from '../helpers/db.js';
import { renderHtmlReport } from '../../src/loadtest/html-report.js';
import type { LoadtestReport } from '../../src/loadtest/report.js';

const t = useTestDatabase();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stockctl-report-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function loadtestRows() {
  const [row] = await t.sql`SELECT (SELECT count(*)::int FROM products WHERE sku LIKE 'loadtest-%') AS products,
                                   (SELECT count(*)::int FROM orders) AS orders`;
  return row;
}

/** Poll until the loadtest's guarded run has made its first orders (it is under way). */
async function waitForOrders() {
  const deadline = Date.now() + 60_000;
  while ((await t.sql`SELECT count(*)::int AS n FROM order_items WHERE sku LIKE 'loadtest-%'`)[0].n === 0) {
    if (Date.now() > deadline) throw new Error('gave up waiting for the first orders of the guarded run');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Anything a page could fetch: a linked file, a script, a stylesheet or font by URL. */
const EXTERNAL = /\b(?:src|href)\s*=|url\(|@import|<script|<link/i;

describe('loadtest --report', () => {
  it('--json --report: stdout is still exactly the one JSON document, the page is written, stderr says where', async () => {
    const file = path.join(dir, 'run.html');
    fs.writeFileSync(file, 'an older report');
    const res = await t.cliJson<LoadtestReport>(['loadtest', '--buyers', '40', '--stock', '10', '--concurrency', '4', '--report', file], { timeoutMs: 60_000 });
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toBe(`Wrote the report to ${file}.\n`);
    const html = fs.readFileSync(file, 'utf8');
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(html).toContain(`<title>stockctl loadtest ${res.json.run_id}</title>`);
    expect(html).toContain('<p class="verdict ok" id="verdict">No oversell, no false rejection where none is allowed, every invariant holds.</p>');
    expect(html).toContain(`PostgreSQL ${res.json.server_version}`);
    for (const s of ['guarded', 'optimistic', 'locking', 'batched']) expect(html).toContain(`<polyline class="series" data-series="${s}"`);
    // Self-contained: nothing to fetch, so it opens the same offline, attached to a mail.
    expect(html).not.toMatch(EXTERNAL);
    // Written beside itself and renamed: no temporary file is left.
    expect(fs.readdirSync(dir)).toEqual(['run.html']);
  });

  it('human output: the usual table on stdout, where the page went on stderr (a relative path, resolved)', async () => {
    const res = await t.cli(['loadtest', '--buyers', '12', '--stock', '5', '--concurrency', '4', '--strategy', 'locking', '--report', 'locking.html'], {
      timeoutMs: 60_000,
    });
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout.trimEnd().split('\n').pop()).toBe('No oversell, no false rejection by guarded/locking/batched, every invariant holds.');
    const written = /^Wrote the report to (\/.*\/locking\.html)\.\n$/.exec(res.stderr);
    expect(written, res.stderr).not.toBeNull();
    const html = fs.readFileSync(written![1], 'utf8');
    expect(html).toContain('<td>locking</td><td>12</td><td>5</td><td>7</td><td>0</td>');
    fs.rmSync(written![1]);
  });

  it('a path that cannot be written is exit 2 naming it, before any load is fired', async () => {
    const before = await loadtestRows();
    const cases: [string, string][] = [
      [path.join(dir, 'no-such-dir', 'run.html'), `the directory ${path.join(dir, 'no-such-dir')} does not exist`],
      [dir, 'it is a directory'],
      [path.join('/etc/passwd', 'run.html'), '/etc/passwd is not a directory'],
    ];
    for (const [file, reason] of cases) {
      const res = await t.cli(['loadtest', '--buyers', '10', '--stock', '5', '--strategy', 'guarded', '--report', file]);
      expect(res).toMatchObject({ code: 2, stdout: '', stderr: `error: Cannot write the report to ${file} (--report): ${reason}.\n` });
      const json = await t.cliJson<{ error: { message: string } }>(['loadtest', '--buyers', '10', '--strategy', 'guarded', '--report', file]);
      expect(json.code).toBe(2);
      expect(json.json.error.message).toBe(`Cannot write the report to ${file} (--report): ${reason}.`);
    }
    expect(await loadtestRows()).toEqual(before);
    const cleanup = await t.cli(['loadtest', '--cleanup', '--report', path.join(dir, 'x.html')]);
    expect(cleanup).toMatchObject({ code: 2, stdout: '', stderr: 'error: --report goes with a run, not with --cleanup.\n' });
  });

  it('a directory that goes away during the run: the figures are still printed (one JSON document), the failure is on stderr, exit 2', async () => {
    const gone = fs.mkdtempSync(path.join(dir, 'gone-'));
    const file = path.join(gone, 'run.html');
    const run = startCli(['loadtest', '--buyers', '1500', '--stock', '1500', '--concurrency', '4', '--strategy', 'guarded', '--report', file, '--json'], {
      databaseUrl: t.url,
      timeoutMs: 120_000,
    });
    await waitForOrders();
    fs.rmSync(gone, { recursive: true });
    const res = await run.result;
    expect(res.code, res.stderr).toBe(2);
    expect(res.stderr).toBe(`error: Could not write the report to ${file}: no such file or directory.\n`);
    expect(JSON.parse(res.stdout)).toMatchObject({ ok: true, interrupted: false });
  });

  it('Ctrl-C in the middle: exit 130, and the page is still written, saying the run was interrupted', async () => {
    const file = path.join(dir, 'stopped.html');
    const run = startCli(['loadtest', '--buyers', '3000', '--stock', '3000', '--concurrency', '4', '--strategy', 'guarded', '--report', file], {
      databaseUrl: t.url,
      timeoutMs: 120_000,
    });
    await waitForOrders();
    run.child.kill('SIGINT');
    const res = await run.result;
    expect(res.code, res.stderr).toBe(130);
    expect(res.stderr).toBe(`Wrote the report to ${file}.\n`);
    const html = fs.readFileSync(file, 'utf8');
    expect(html).toContain(
      '<p class="verdict warn" id="verdict">Interrupted: these figures cover only the buyers fired before the stop; no verdict on this run.</p>',
    );
    expect(html).toMatch(/<td>guarded<\/td>.*<td class="warn">partial<\/td><\/tr>/);
  });
});

describe('the report page', () => {
  const report = (): LoadtestReport => ({
    run_id: 'c0ffee00',
    started_at: '2026-01-01T10:00:00.000Z',
    finished_at: '2026-01-01T10:00:02.000Z',
    stockctl_version: '0.1.0',
    server_version: '15.20',
    config: { buyers: 4, stock: 2, quantity: 1, concurrency: 2, connections: 2, skus: 1, strategies: ['guarded'], mix: false, max_retries: 3, retry_backoff_ms: 100 },
    baseline: {
      strategy: 'bare_update',
      buyers: 4,
      errors: 0,
      duration_ms: 120,
      throughput_rps: 33,
      latency_ms: { p50: 1, p95: 2, p99: 2, max: 2 },
      timeline: { slice_ms: 50, counts: [2, 1, 1] },
      histogram: [
        { le_ms: 1, count: 2 },
        { le_ms: 2, count: 2 },
      ],
    },
    strategies: [
      {
        strategy: 'guarded',
        buyers: 4,
        successes: 3,
        rejections: 1,
        false_rejections: 0,
        errors: 0,
        retries: 0,
        units_reserved: 3,
        expected_successes: 2,
        duration_ms: 100,
        throughput_rps: 40,
        ratio_to_bare_update: 1.21,
        latency_ms: { p50: 1, p95: 2, p99: 2, max: 2 },
        timeline: { slice_ms: 50, counts: [4, 0] },
        histogram: [{ le_ms: 2, count: 4 }],
        violations: [{ kind: 'oversell', message: '3 units reserved and 0 sold out of 2 in stock <b>' }],
      },
    ],
    ok: false,
    interrupted: false,
  });

  it('a failed check: the verdict says which strategy failed, the violation is listed, escaped', () => {
    const html = renderHtmlReport(report());
    expect(html).toContain('<p class="verdict fail" id="verdict">A check failed (guarded): see the violations below.</p>');
    expect(html).toContain('<li>guarded: 3 units reserved and 0 sold out of 2 in stock &lt;b&gt; <small>(oversell)</small></li>');
    expect(html).toContain('<td class="fail">1 violation(s)</td>');
    expect(html).not.toMatch(EXTERNAL);
  });

  it('human labels for the settings, the environment, and the proof as the equations it checks', () => {
    const html = renderHtmlReport({
      ...report(),
      environment: { cores: 2, load_average: [1.5, 1.25, 1], server_version: '15.20', server_location: 'remote', synchronous_commit: 'off', max_connections: 100, connections_in_use: 7, pooled: false },
      strategies: [{ ...report().strategies[0], proof: { stock: 2, sold: 0, reserved: 3, on_hand: 2, ledger_on_hand: 2, ledger_reserved: 3, active_reservations: 3, verify_problems: 0 } }],
    });
    expect(html).toContain('<tr><th>Optimistic attempts (MAX_STOCK_RETRY_ATTEMPTS)</th><td>3</td></tr><tr><th>Optimistic retry backoff (STOCK_RETRY_BACKOFF_MS)</th><td>100 ms</td></tr>');
    expect(html).not.toMatch(/<th>(max_retries|retry_backoff_ms|concurrency)<\/th>/);
    expect(html).toContain('<tr><th>Server</th><td>remote (another machine: the network is in every figure)</td></tr><tr><th>synchronous_commit</th><td>off</td></tr>');
    expect(html).toContain('<tr><th>max_connections</th><td>100 (7 in use at the start)</td></tr>');
    // 0 sold + 3 reserved > 2 in stock: that check says no, the others yes.
    expect(html).toContain(
      '<td class="fail" data-holds="false"><span data-figure="sold">0</span> + <span data-figure="reserved">3</span> ≤ <span data-figure="stock">2</span> ✗</td>',
    );
    expect(html.match(/data-holds="true"/g)).toHaveLength(4);
  });

  it('throughput is drawn as steps from 0; a last slice cut short is merged into the one before, not drawn as a spike', () => {
    const html = renderHtmlReport(report());
    const points = (name: string) =>
      new RegExp(`<polyline class="series" data-series="${name.replace(/[()]/g, '\\$&')}"[^>]* points="([^"]*)"`).exec(html)![1].split(' ').map((p) => p.split(',').map(Number));
    // bare UPDATE: 120 ms in 50 ms slices; the third is 20 ms long (under half a slice), so it
    // joins the second: 2 calls in 70 ms, one step from 50 to 120 ms.
    const bare = points('bare UPDATE (limit)');
    expect(bare).toHaveLength(4);
    expect(bare[0][0]).toBe(70); // x = 0 s at the panel's left edge
    expect(bare[1][1]).toBe(bare[0][1]);
    expect(bare[3][1]).toBe(bare[2][1]);
    // guarded, in the second panel (plot from y 178 to 298): 4 calls in the first slice (80/s,
    // the top of the shared rate axis), none in the second (the bottom: 0/s).
    const guarded = points('guarded');
    expect(guarded).toHaveLength(4);
    expect(guarded[0][1]).toBe(178);
    expect(guarded[3][1]).toBe(298);
  });
});
