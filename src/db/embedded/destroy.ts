/** What `db destroy` removes, and removing it: the cluster, its log and this home's own files. */
import fs from 'node:fs/promises';
import path from 'node:path';
import { exists } from './files.js';
import { prepareHome, withFsErrors } from './home.js';
import { defaultLayout, PASSWORD_FILE, readConfig, ROOT_DATA_BASE, type EmbeddedPlace } from './layout.js';
import { acquireLock } from './lock.js';
import { stopLocked } from './server.js';

export interface EmbeddedFootprint {
  home: string;
  /** What `destroyEmbedded` deletes, existing paths only: the cluster and this home's files. */
  paths: string[];
}

/** What `destroyEmbedded` would delete (nothing is touched). */
export async function embeddedFootprint(place: EmbeddedPlace): Promise<EmbeddedFootprint> {
  const { home } = place;
  return { home, paths: await footprint(home, (await readConfig(home)) ?? defaultLayout(home)) };
}

/**
 * Stop this home's server and delete its cluster, its log and this home's own files (as
 * root, the cluster's directory under /var/lib/stockctl too). Only stockctl's own entries
 * are removed; the home directory itself goes only if that leaves it empty.
 */
export async function destroyEmbedded(place: EmbeddedPlace): Promise<{ home: string; stopped: boolean; removed: string[] }> {
  const { home } = place;
  if (!(await exists(home))) return { home, stopped: false, removed: [] };
  return withFsErrors(home, async () => {
    await prepareHome(home);
    const lock = await acquireLock(home);
    let stopped: boolean;
    let removed: string[];
    try {
      const cfg = (await readConfig(home)) ?? defaultLayout(home);
      stopped = await stopLocked(cfg);
      removed = await footprint(home, cfg);
      for (const p of removed) await fs.rm(p, { recursive: true, force: true });
    } finally {
      await lock.release();
    }
    await fs.rmdir(home).catch(() => {}); // not empty: the user keeps something else there
    return { home, stopped, removed };
  });
}

async function footprint(home: string, cfg: { dataDir: string; logFile: string }): Promise<string[]> {
  const base = path.dirname(cfg.dataDir);
  // As root our layout gives the cluster a directory of its own: it goes whole.
  const cluster = path.dirname(base) === ROOT_DATA_BASE ? [base] : [cfg.dataDir, `${cfg.dataDir}.init`, cfg.logFile];
  const own = ['embedded.json', PASSWORD_FILE, 'pgdata', 'pgdata.init', 'pgdata.init.pw', 'postgres.log'].map((name) => path.join(home, name));
  const found: string[] = [];
  for (const p of [...new Set([...cluster, ...own])]) {
    if (await fs.lstat(p).then(() => true, () => false)) found.push(p);
  }
  return found;
}
