/**
 * On a terminal, loadtest shows a progress bar with its live throughput on stderr; without
 * one it stays silent (test/cli/loadtest.test.ts). The terminal is a pseudo-terminal made
 * by util-linux `script`, 100 columns wide.
 */
import { describe, expect, it } from 'vitest';
import { BIN } from '../helpers/cli.js';
import { runOnTerminal } from '../helpers/terminal.js';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();

const onTerminal = (command: string, { ci = false } = {}) =>
  runOnTerminal(command, { cols: 100, timeoutMs: 60_000, ci, env: { ...process.env, DATABASE_URL: t.url, NO_COLOR: '1' } });
const loadtest = `"${process.execPath}" "${BIN}" loadtest --buyers 600 --stock 600 --concurrency 2 --strategy guarded`;

describe('loadtest on a terminal', () => {
  it('draws a progress bar with the buyers done and the rate, then the table', async () => {
    // Two connections for 600 buyers: long enough for the spinner to draw a few frames.
    const res = await onTerminal(loadtest);
    expect(res.timedOut).toBe(false);
    expect(res.output).toMatch(/exit 0\s*$/);
    const frames = res.output.split(/\r|\n|\x1b\[[0-9;]*[A-Za-z]/).filter((f) => f.includes('▕'));
    expect(frames.length).toBeGreaterThan(0);
    for (const frame of frames) expect(frame).toMatch(/guarded ▕[█░]{20}▏ [\d,]+\/600 {2}[\d,]+\/s$/);
    expect(res.output).toContain('No oversell');
  });

  it('with CI set (spinners off, as ora does) frames never run together on one line', async () => {
    const res = await onTerminal(loadtest, { ci: true });
    expect(res.output).toMatch(/exit 0\s*$/);
    for (const line of res.output.split(/\r?\n/)) expect(line.split('▕').length).toBeLessThanOrEqual(2);
    expect(res.output).toContain('No oversell');
  });
});
