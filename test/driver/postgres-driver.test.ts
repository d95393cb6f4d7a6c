/**
 * postgres.js when the database goes away: the faults that patches/postgres+3.4.9.patch
 * fixes, each caused for real in a process of its own (test/driver/scenarios.mjs), so that
 * a crash of the driver fails its test instead of the test runner.
 *
 * Every test here fails on the unpatched driver 3.4.9 (`npx patch-package --reverse postgres`,
 * or a plain `npm install postgres@3.4.9`): the process dies of a TypeError or an
 * unhandled rejection, a late statement commits outside its transaction, or a LISTEN is
 * lost. When a release of postgres.js passes them without the patch, the patch can go.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();
const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'scenarios.mjs');

/** The errors that mean "the connection went away", as the driver reports them. */
const CONNECTION_LOST = ['57P01', 'ECONNRESET', 'CONNECTION_CLOSED', 'EPIPE'];

interface Outcome {
  code: number | null;
  stderr: string;
  result: Record<string, unknown>;
}

function runScenario(name: string): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, name, t.url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 50_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const line = stdout.trim().split('\n').pop() ?? '';
      let result: Record<string, unknown> = {};
      try {
        result = line ? (JSON.parse(line) as Record<string, unknown>) : {};
      } catch {
        result = { unparsed: stdout };
      }
      resolve({ code, stderr, result });
    });
  });
}

/** The scenario's process lived to the end and said what it saw. */
async function survived(name: string): Promise<Record<string, unknown>> {
  const outcome = await runScenario(name);
  expect(outcome.stderr, 'the process died or complained').toBe('');
  expect(outcome.result.scenario_error, 'the scenario hung or threw').toBeUndefined();
  expect(outcome.code).toBe(0);
  return outcome.result;
}

describe('postgres.js when the database goes away', () => {
  it('a pool of short transactions survives its backends being killed every 200 ms, then recovers', async () => {
    const r = await survived('pool-kill');
    expect(r.kills as number).toBeGreaterThan(0);
    expect(r.ok as number).toBeGreaterThan(0);
    // every failure is a lost connection, answered to its caller
    for (const code of Object.keys(r.errors as object)) expect(CONNECTION_LOST).toContain(code);
    expect(r.after).toBe(30);
    expect(r.half_transactions).toBe(0);
  }, 60_000);

  it('a statement sent after a caught error in a killed transaction is refused, never committed', async () => {
    const r = await survived('closed-transaction-statement');
    expect(CONNECTION_LOST).toContain(r.result);
    expect(CONNECTION_LOST).toContain(r.late);
    expect(r.committed).toEqual([]);
    expect(r.queued).toBe('ok');
    expect(r.again).toBe(1);
  }, 60_000);

  it('an ECONNRESET mid-transaction through a TCP proxy rejects the transaction, not hangs it, and commits nothing', async () => {
    const r = await survived('reset-mid-transaction');
    expect(CONNECTION_LOST).toContain(r.result);
    expect(CONNECTION_LOST).toContain(r.late);
    expect(r.committed).toEqual([]);
    expect(r.queued).toBe('ok');
  }, 60_000);

  it('a reset while connecting fails that query and the next one connects', async () => {
    const r = await survived('reset-while-connecting');
    expect(CONNECTION_LOST).toContain(r.first);
    expect(r.next).toBe(2);
  }, 60_000);

  it('idle_in_transaction_session_timeout under a stalled callback: the transaction fails with 25P03, its late write is refused', async () => {
    const r = await survived('idle-in-transaction-timeout');
    expect(r.result).toBe('25P03');
    expect(r.late).toBe('25P03');
    expect(r.committed).toEqual([]);
    expect(r.queued).toBe('ok');
  }, 60_000);

  it('LISTEN comes back after its backend is killed, idle or with a LISTEN in flight', async () => {
    const r = await survived('listen-resubscribe');
    expect(r.killed).toBe(1);
    expect(r.second).toBe('57P01');
    expect(r.listens).toBe(3);
    expect(r.received).toEqual(['after-kill', 'after-death']);
  }, 60_000);
});
