/**
 * A row locked by another session: every command, `reserve` with each strategy included,
 * gives up after the same lock deadline (10 s) with the same sentence naming the lock
 * (exit 7, code `timeout`), not after the statement timeout with advice to raise it.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { addProduct } from '../../src/engine/catalogue.js';
import { runCli } from '../helpers/cli.js';
import { useTestDatabase } from '../helpers/db.js';
import { holdStockLevel } from '../helpers/locks.js';

const t = useTestDatabase();

const LOCK_TIMEOUT_SENTENCE = 'Waited too long for a row or table locked by another session (lock timeout); retry shortly.';

beforeAll(async () => {
  await addProduct(t.db, { sku: 'HELD', name: 'Held', stock: 5, actor: 'test' });
});

/** Run `fn` while another session holds HELD's stock row (its level at 'default') locked. */
async function whileHeld<T>(fn: () => Promise<T>): Promise<T> {
  const lock = await holdStockLevel(t.url, 'HELD');
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

describe('a row locked by another session', () => {
  it('reserve (every strategy) and stock adjust end with exit 7 and the lock-timeout sentence', async () => {
    const commands = [
      ...['guarded', 'optimistic', 'locking', 'batched'].map((strategy) => ['reserve', 'HELD:1', '--strategy', strategy]),
      ['reserve', 'HELD:1'],
      ['stock', 'adjust', 'HELD', '+1'],
    ];
    // Each waits out the lock deadline: together, so that the file waits it once.
    const results = await whileHeld(() =>
      Promise.all(commands.map((args) => Promise.all([runCli([...args, '--json'], { databaseUrl: t.url, timeoutMs: 60_000 }), runCli(args, { databaseUrl: t.url, timeoutMs: 60_000 })]))),
    );
    results.forEach(([json, human], i) => {
      const what = commands[i].join(' ');
      expect(json.timedOut, what).toBe(false);
      expect(json.code, `${what}: ${json.stdout}`).toBe(7);
      expect(JSON.parse(json.stdout), what).toEqual({ error: { code: 'timeout', message: LOCK_TIMEOUT_SENTENCE } });
      expect(human.code, `${what}: ${human.stderr}`).toBe(7);
      expect(human.stderr, what).toBe(`error: ${LOCK_TIMEOUT_SENTENCE}\n`);
    });
    const [row] = await t.sql`SELECT stock_quantity, reserved_stock, incoming FROM stock_levels WHERE sku = 'HELD' AND location = 'default'`;
    expect(row).toEqual({ stock_quantity: 5, reserved_stock: 0, incoming: 0 });
    const [{ orders }] = await t.sql`SELECT count(*)::int AS orders FROM orders`;
    expect(orders).toBe(0);
  });
});
