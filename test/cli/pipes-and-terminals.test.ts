/**
 * Output reaches its reader whole, however slow the reader, and a terminal never traps
 * the process: the README's support pipeline run exactly as written through a slow
 * pipe, big documents into a slow `cat`, a reader that goes away, and a 0-column
 * terminal (as some CI and container consoles report) that once made the spinner loop
 * forever, deaf to SIGTERM.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { addProduct } from '../../src/engine/catalogue.js';
import { reserveOrder } from '../../src/engine/orders.js';
import { DEFAULT_SETTINGS } from '../../src/engine/settings.js';
import { BIN } from '../helpers/cli.js';
import { runOnTerminal } from '../helpers/terminal.js';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();

interface ShellResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/**
 * Run a bash pipeline with `stockctl` on the PATH (as the README writes it), no terminal,
 * and `pipefail`, so that a failure anywhere in the pipe shows in the exit code.
 */
function shell(script: string, { timeoutMs = 60_000 } = {}): Promise<ShellResult> {
  const binDir = fs.mkdtempSync(path.join(os.tmpdir(), 'stockctl-path-'));
  fs.writeFileSync(path.join(binDir, 'stockctl'), `#!/bin/sh\nexec "${process.execPath}" "${BIN}" "$@"\n`, { mode: 0o755 });
  const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: t.url, PATH: `${binDir}:${process.env.PATH}` };
  delete env.NO_COLOR;
  return new Promise((resolve) => {
    const child = spawn('bash', ['-o', 'pipefail', '-c', script], { env, cwd: os.tmpdir() });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('close', (code) => {
      clearTimeout(timer);
      fs.rmSync(binDir, { recursive: true, force: true });
      resolve({ code, stdout, stderr, timedOut });
    });
  });
}

const PENDING = 1500;

describe('a slow reader gets the whole output', () => {
  beforeAll(async () => {
    await addProduct(t.db, { sku: 'PIPE', name: 'Pipe', stock: PENDING, actor: 'test' });
    for (let i = 0; i < PENDING; i += 50) {
      await Promise.all(
        Array.from({ length: Math.min(50, PENDING - i) }, (_, j) =>
          reserveOrder(t.db, { lines: [{ sku: 'PIPE', quantity: 1 }], ref: `pipe-${i + j}`, actor: 'test' }, DEFAULT_SETTINGS),
        ),
      );
    }
  }, 120_000);

  it('a JSON document of megabytes arrives whole through a pipe that is read only a second later', async () => {
    const refs = Array.from({ length: PENDING }, (_, i) => `pipe-${i}`).join(' ');
    const res = await shell(`stockctl cancel ${refs} --dry-run --json | (sleep 1; cat)`);
    expect(res.code, res.stderr).toBe(0);
    const doc = JSON.parse(res.stdout) as { results: unknown[] };
    expect(doc.results).toHaveLength(PENDING);

    const human = await shell(`stockctl orders list --status pending --limit 10000 | (sleep 1; cat)`);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout.split('\n').filter((l) => l.includes('pipe-')).length).toBe(PENDING);
  });

  it("support's pipeline from the README, exactly as written, cancels every pending order", async () => {
    const res = await shell(
      `stockctl orders list --status pending --limit 10000 --json | (sleep 1; jq -r '.orders[].order_id') | stockctl cancel --from-file -`,
    );
    expect(res.code, res.stderr).toBe(0);
    const [left] = await t.sql`SELECT count(*)::int AS pending FROM orders WHERE status = 'pending'`;
    expect(left.pending).toBe(0);
    const [stock] = await t.sql`SELECT stock_quantity, reserved_stock FROM stock_levels WHERE sku = 'PIPE' AND location = 'default'`;
    expect(stock).toEqual({ stock_quantity: PENDING, reserved_stock: 0 });
  });

  it('a reader that goes away (`| head`) ends the command quietly', async () => {
    const refs = Array.from({ length: PENDING }, (_, i) => `pipe-${i}`).join(' ');
    const res = await shell(`stockctl cancel ${refs} --dry-run --json | head -c 100 > /dev/null; echo "exit \${PIPESTATUS[0]}"`);
    expect(res.stdout.trim()).toBe('exit 0');
    expect(res.stderr).toBe('');
  });
});

/** On a terminal 0 columns wide, as some CI and container consoles report. */
const onZeroColumns = (command: string) =>
  runOnTerminal(command, {
    cols: 0,
    cap: 100_000,
    env: { ...process.env, DATABASE_URL: t.url, PATH: `${path.dirname(process.execPath)}:${process.env.PATH}` },
  });

describe('a terminal 0 columns wide', () => {
  const stockctl = `"${process.execPath}" "${BIN}"`;

  it.each([['verify'], ['sweep'], ['migrate'], ['loadtest --buyers 50 --stock 20 --strategy guarded']])(
    'stockctl %s finishes, without drawing endlessly',
    async (args) => {
      const res = await onZeroColumns(`${stockctl} ${args}`);
      expect(res.timedOut, res.output.slice(0, 500)).toBe(false);
      expect(res.output).toMatch(/exit 0\s*$/);
      expect(res.bytes).toBeLessThan(50_000);
    },
  );

  it('SIGTERM still ends a long run, with exit 143', async () => {
    const res = await onZeroColumns(
      `${stockctl} loadtest --buyers 200000 --stock 200000 --strategy guarded & sleep 3; kill -TERM $!; wait $!`,
    );
    expect(res.timedOut, res.output.slice(0, 500)).toBe(false);
    expect(res.output).toMatch(/exit 143\s*$/);
  });
});
