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
const SERIES = ['bare UPDATE (limit)', ...STRATEGIES];

describe.skipIf(!present && !required)('the HTML report in a headless browser (Chromium at /usr/bin/chromium)', () => {
  const t = useTestDatabase();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stockctl-report-browser-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('opens offline and shows the verdict, a row per strategy, a throughput line and a latency histogram each', async () => {
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(`STOCKCTL_TEST_BROWSER=1 but there is no Chromium at ${CHROMIUM}: ${HOW_TO_INSTALL}.`);
    }
    const file = path.join(dir, 'run.html');
    const run = await t.cliJson<{ run_id: string; ok: boolean }>(
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

      // Throughput over time: one line per series, with real points, drawn on the page. The
      // time axis is shared, so a fast strategy (batched can be done in one 50 ms slice: one
      // step, two points) draws a short line; the longest run spans the whole axis.
      const lines = page.locator('#throughput polyline.series');
      expect(await lines.evaluateAll((els) => els.map((el) => el.getAttribute('data-series')))).toEqual(SERIES);
      const spans: { points: number; width: number }[] = [];
      for (const name of SERIES) {
        const line = page.locator(`#throughput polyline[data-series="${name}"]`);
        const points = (await line.getAttribute('points'))!.split(' ').map((p) => p.split(',').map(Number));
        expect(points.length, name).toBeGreaterThanOrEqual(2);
        for (const [x, y] of points) {
          expect(Number.isFinite(x) && Number.isFinite(y), name).toBe(true);
        }
        // It rises above 0/s somewhere, and moves forward in time.
        expect(Math.min(...points.map((p) => p[1])), name).toBeLessThan(224);
        const xs = points.map((p) => p[0]);
        expect(xs, name).toEqual([...xs].sort((a, b) => a - b));
        const width = Math.max(...xs) - Math.min(...xs);
        expect(width, name).toBeGreaterThan(0);
        spans.push({ points: points.length, width });
      }
      const longest = spans.reduce((a, b) => (b.width > a.width ? b : a));
      expect(longest.width).toBeGreaterThan(600);
      expect(longest.points).toBeGreaterThanOrEqual(4);
      expect(await page.locator('#throughput .legend li').allInnerTexts()).toEqual(SERIES);

      // A latency histogram per series, with bars that have height.
      const figures = page.locator('figure.histogram');
      expect(await figures.evaluateAll((els) => els.map((el) => el.getAttribute('data-series')))).toEqual(SERIES);
      for (const name of SERIES) {
        const bars = page.locator(`figure.histogram[data-series="${name}"] rect.bar`);
        expect(await bars.count(), name).toBeGreaterThan(0);
        const heights = await bars.evaluateAll((els) => els.map((el) => el.getBoundingClientRect().height));
        expect(Math.max(...heights), name).toBeGreaterThan(10);
        // The calls in the histogram add up to the buyers.
        const counts = await bars.evaluateAll((els) => els.map((el) => Number(/: ([\d,]+)$/.exec(el.textContent ?? '')![1].replace(/,/g, ''))));
        expect(counts.reduce((a, b) => a + b, 0), name).toBe(300);
      }

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
