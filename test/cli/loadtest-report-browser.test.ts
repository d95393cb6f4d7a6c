/**
 * The HTML report of a real run, opened by a real browser with the network cut off: Debian's
 * Chromium (/usr/bin/chromium), driven by playwright-core (which downloads no browser).
 *
 * Runs when /usr/bin/chromium exists, or when STOCKCTL_TEST_BROWSER=1 (as CI sets it), in
 * which case a missing Chromium fails the test with how to install it. On a machine with
 * nothing but Node it is skipped, with a warning, so that `npm test` still passes there.
 * STOCKCTL_TEST_SCREENSHOT=FILE also copies the page's screenshot to FILE, to look at it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';

const CHROMIUM = '/usr/bin/chromium';
const required = process.env.STOCKCTL_TEST_BROWSER === '1';
const present = fs.existsSync(CHROMIUM);
const HOW_TO_INSTALL = 'install it with `sudo apt-get install -y chromium` (Debian/Ubuntu), then run the tests again';

if (!present && !required) {
  console.warn(`Skipping the HTML report's browser test: no Chromium at ${CHROMIUM}; ${HOW_TO_INSTALL} (STOCKCTL_TEST_BROWSER=1 makes it required).`);
}

const STRATEGIES = ['guarded', 'optimistic', 'locking', 'batched'];

interface Latency {
  latency_ms: { p50: number; p95: number; p99: number };
}
interface Report {
  run_id: string;
  ok: boolean;
  environment: { cores: number; max_connections: number };
  baseline: Latency;
  strategies: (Latency & { strategy: string; proof: Record<string, number> })[];
}
const SERIES = ['bare UPDATE (limit)', ...STRATEGIES];

describe.skipIf(!present && !required)('the HTML report in a headless browser (Chromium at /usr/bin/chromium)', () => {
  const t = useTestDatabase();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stockctl-report-browser-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('opens offline and shows what a person needs: the verdict, who wins, labelled axes with round ticks, latency on one scale with its marks, the proof as in the JSON', async () => {
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(`STOCKCTL_TEST_BROWSER=1 but there is no Chromium at ${CHROMIUM}: ${HOW_TO_INSTALL}.`);
    }
    const file = path.join(dir, 'run.html');
    const run = await t.cliJson<Report>(
      ['loadtest', '--buyers', '300', '--stock', '100', '--concurrency', '8', '--report', file],
      { timeoutMs: 90_000 },
    );
    expect(run.code, run.stderr).toBe(0);

    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const context = await browser.newContext({ offline: true, viewport: { width: 900, height: 800 } });
      const page = await context.newPage();
      // Nothing but the file itself may load: every other request is failed, and recorded.
      const fetched: string[] = [];
      page.on('request', (request) => {
        if (!request.url().startsWith('file:')) fetched.push(request.url());
      });
      await page.route('**', (route) => (route.request().url().startsWith('file:') ? route.continue() : route.abort('blockedbyclient')));
      await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });

      await expect.poll(() => page.title()).toBe(`stockctl loadtest ${run.json.run_id}`);
      expect(await page.locator('#verdict').innerText()).toBe('No oversell, no false rejection where none is allowed, every invariant holds.');
      const rows = await page.locator('#results tr td:first-child').allInnerTexts();
      expect(rows).toEqual(SERIES);
      const checks = await page.locator('#results tr td:last-child').allInnerTexts();
      expect(checks).toEqual(['—', 'ok', 'ok', 'ok', 'ok']);

      // Who wins, at a glance: a bar per series, the rate written beside it.
      expect(await page.locator('#rates g.rate').evaluateAll((els) => els.map((el) => el.getAttribute('data-series')))).toEqual(SERIES);
      expect(await page.locator('#headline').innerText()).toMatch(/^Fastest: (guarded|optimistic|locking|batched), [\d,]+ reservations\/s/);

      // Every axis says what it measures, in its unit, and its ticks are round numbers
      // (at most two significant digits: 0.5, 20, 1,000, never 2,273 or 5.9).
      for (const [chart, label] of [
        ['#rates', /^reservations per second/],
        ['#throughput', /^reservations per second/],
        ['#throughput', /^seconds since it started$/],
        ['#latency', /^latency of a reserve, ms \(log scale\)$/],
        ['#latency', /^calls$/],
      ] as const) {
        const labels = await page.locator(`${chart} .axis-label`).allTextContents();
        expect(labels.some((l) => label.test(l)), `${chart}: ${labels.join(' | ')}`).toBe(true);
      }
      for (const chart of ['#rates', '#throughput', '#latency']) {
        const ticks = await page.locator(`${chart} text.tick`).allTextContents();
        expect(ticks.length, chart).toBeGreaterThanOrEqual(3);
        for (const tick of ticks) {
          const digits = tick.replace(/[,.]/g, '').replace(/^0+/, '').replace(/0+$/, '');
          expect(digits.length, `${chart} tick ${tick}`).toBeLessThanOrEqual(2);
        }
      }

      // Throughput over time: a panel per series, each line across its own panel.
      expect(await page.locator('#throughput g.panel').evaluateAll((els) => els.map((el) => el.getAttribute('data-series')))).toEqual(SERIES);
      for (const name of SERIES) {
        const points = (await page.locator(`#throughput polyline[data-series="${name}"]`).getAttribute('points'))!.split(' ').map((p) => p.split(',').map(Number));
        expect(points.length, name).toBeGreaterThanOrEqual(2);
        const xs = points.map((p) => p[0]);
        expect(xs, name).toEqual([...xs].sort((a, b) => a - b));
        expect(points.every(([x, y]) => Number.isFinite(x) && Number.isFinite(y)), name).toBe(true);
        expect(Math.max(...xs) - Math.min(...xs), name).toBeGreaterThan(300);
      }

      // Latency: one shared axis, a row per series with bars that add up to the buyers, and
      // its p50, p95 and p99 marked where the JSON says.
      const series = [run.json.baseline, ...run.json.strategies];
      for (const [i, name] of SERIES.entries()) {
        const row = page.locator(`#latency g.histogram[data-series="${name}"]`);
        const counts = await row.locator('rect.bar').evaluateAll((els) => els.map((el) => Number(/: ([\d,]+)$/.exec(el.textContent ?? '')![1].replace(/,/g, ''))));
        expect(counts.reduce((a, b) => a + b, 0), name).toBe(300);
        const marks = await row.locator('text.mark-label').allTextContents();
        const { p50, p95, p99 } = series[i].latency_ms;
        const shown = (n: number) => n.toLocaleString('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
        expect(marks, name).toEqual([`p50 ${shown(p50)}`, `p95 ${shown(p95)}`, `p99 ${shown(p99)}`]);
        const xs = await row.locator('line.mark').evaluateAll((els) => els.map((el) => Number(el.getAttribute('x1'))));
        expect(xs, name).toEqual([...xs].sort((a, b) => a - b));
      }

      // The proof table says what the JSON says, strategy by strategy, and every check holds.
      for (const s of run.json.strategies) {
        const row = page.locator(`#proof tr[data-strategy="${s.strategy}"]`);
        for (const [figure, value] of Object.entries(s.proof)) {
          expect(await row.locator(`[data-figure="${figure}"]`).innerText(), `${s.strategy} ${figure}`).toBe(value.toLocaleString('en-US'));
        }
        expect(await row.locator('td[data-holds]').evaluateAll((els) => els.map((el) => el.getAttribute('data-holds')))).toEqual(['true', 'true', 'true', 'true', 'true']);
      }

      // What the figures depend on, and the settings in words.
      const environment = await page.locator('#environment').innerText();
      expect(environment).toContain(`Cores (this machine)\t${run.json.environment.cores}`);
      expect(environment).toContain(`max_connections\t${run.json.environment.max_connections.toLocaleString('en-US')} (`);
      expect(environment).toMatch(/synchronous_commit\t(on|off|local|remote_write|remote_apply)/);
      expect(environment).toMatch(/Server\t(embedded|local|remote) \(/);
      const settings = await page.locator('#config th').allInnerTexts();
      expect(settings).toContain('Connections used');
      expect(settings.filter((k) => /^[a-z_]+$/.test(k))).toEqual([]);

      const shot = path.join(dir, 'run.png');
      await page.screenshot({ path: shot, fullPage: true });
      expect(fs.statSync(shot).size).toBeGreaterThan(20_000);
      if (process.env.STOCKCTL_TEST_SCREENSHOT) fs.copyFileSync(shot, process.env.STOCKCTL_TEST_SCREENSHOT);
      expect(fetched).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
