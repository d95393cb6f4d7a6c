/**
 * A server that is full (too many clients) is there, only busy: a command, and migrate,
 * wait for a free slot instead of failing with exit 7. This file fills the shared server
 * until it refuses connections, so it runs alone (vitest.config.ts): every other file's
 * sessions would be refused meanwhile.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { runCli, runCliJson } from '../helpers/cli.js';
import { useTestDatabase } from '../helpers/db.js';
import { sqlState } from '../helpers/pg.js';

const t = useTestDatabase();

describe('a server that is full (too many clients)', () => {
  /** Open sessions until the server refuses one; the caller ends them. */
  async function fillServer(): Promise<postgres.Sql[]> {
    const held: postgres.Sql[] = [];
    for (;;) {
      const session = postgres(t.url, { max: 1, connect_timeout: 10, onnotice: () => {} });
      try {
        await session`SELECT 1`;
        held.push(session);
      } catch (err) {
        await session.end();
        if (sqlState(err) === '53300') return held;
        await Promise.all(held.map((s) => s.end()));
        throw err;
      }
    }
  }

  it('a command, and migrate, wait for a free slot instead of failing with exit 7', async () => {
    const held = await fillServer();
    let released = false;
    const release = async () => {
      if (!released) await Promise.all(held.map((s) => s.end()));
      released = true;
    };
    try {
      expect(held.length).toBeGreaterThan(10);
      const stockRun = runCliJson(['stock', '--json'], { databaseUrl: t.url, timeoutMs: 60_000 });
      const migrateRun = runCli(['migrate'], { databaseUrl: t.url, timeoutMs: 60_000 });
      // The server is shared: a slot another client frees meanwhile is taken back at once,
      // so that it stays full until we let go.
      const until = Date.now() + 2_000;
      while (Date.now() < until) {
        const more = await fillServer().catch(() => []);
        held.push(...more);
        await sleep(10);
      }
      await release();
      const [stock, migrate] = await Promise.all([stockRun, migrateRun]);
      expect(stock.code, stock.stderr).toBe(0);
      expect(stock.json).toMatchObject({ items: expect.any(Array) });
      expect(migrate.code, migrate.stderr).toBe(0);
      for (const res of [stock, migrate]) expect(res.ms).toBeGreaterThanOrEqual(1_900);
    } finally {
      await release();
    }
  }, 90_000);
});
