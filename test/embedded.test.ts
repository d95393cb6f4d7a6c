import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddedStatus, ensureEmbedded, stockctlHome, stopEmbedded } from '../src/db/embedded.js';

const supported = ['linux', 'darwin'].includes(process.platform);

describe.skipIf(!supported)('embedded PostgreSQL', () => {
  const saved = process.env.STOCKCTL_HOME;
  let home = '';
  let dataDir = '';

  beforeAll(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'stockctl-embedded-'));
    process.env.STOCKCTL_HOME = home;
  });

  afterAll(async () => {
    await stopEmbedded().catch(() => false);
    if (process.env.STOCKCTL_HOME === home) process.env.STOCKCTL_HOME = saved;
    if (saved === undefined) delete process.env.STOCKCTL_HOME;
    await fs.rm(home, { recursive: true, force: true });
    // As root the cluster lives outside the home, in a directory of its own.
    if (dataDir && !dataDir.startsWith(home)) await fs.rm(path.dirname(dataDir), { recursive: true, force: true });
  });

  it('uses STOCKCTL_HOME', () => {
    expect(stockctlHome()).toBe(path.resolve(home));
  });

  it('starts one server for concurrent callers and serves the stockctl database', async () => {
    const results = await Promise.all([ensureEmbedded(), ensureEmbedded(), ensureEmbedded()]);
    dataDir = results[0].dataDir;
    expect(results.filter((r) => r.started)).toHaveLength(1);
    expect(new Set(results.map((r) => r.url)).size).toBe(1);
    const { url, port } = results[0];
    expect(port).not.toBe(5432);
    expect(url).toBe(`postgres://postgres@127.0.0.1:${port}/stockctl`);

    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      const [row] = await sql`select current_database() as db`;
      expect(row.db).toBe('stockctl');
    } finally {
      await sql.end({ timeout: 1 });
    }

    const again = await ensureEmbedded();
    expect(again).toMatchObject({ url, started: false });
    const status = await embeddedStatus();
    expect(status).toMatchObject({ running: true, initialised: true, port, url });
    expect(status.pid).toBeGreaterThan(0);
  }, 120_000);

  it('stops, reports it, and restarts on the same port', async () => {
    const { port } = await ensureEmbedded();
    expect(await stopEmbedded()).toBe(true);
    expect(await stopEmbedded()).toBe(false);
    expect(await embeddedStatus()).toMatchObject({ running: false, initialised: true });
    expect(await ensureEmbedded()).toMatchObject({ port, started: true });
  }, 120_000);
});
