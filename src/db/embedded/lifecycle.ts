/** Starting the embedded server (or finding it up), its status, and stopping it. */
import fs from 'node:fs/promises';
import path from 'node:path';
import { DatabaseUnavailableError } from '../../errors.js';
import { usableBinaries } from './binaries.js';
import { createDatabase, initCluster } from './cluster.js';
import { exists } from './files.js';
import { prepareHome, withFsErrors } from './home.js';
import { AUTH_METHOD, DATABASE, defaultLayout, HOST, info, readConfig, SUPERUSER, writeConfig, type EmbeddedInfo, type EmbeddedPlace } from './layout.js';
import { acquireLock } from './lock.js';
import { ensurePassword, readPassword } from './password/file.js';
import { secureCluster } from './password/secure.js';
import { choosePort } from './ports.js';
import { isPostmaster, listensOn, readPostmasterPid } from './postmaster.js';
import { probe } from './probe.js';
import { startServer, stopLocked, waitReady } from './server.js';
import { runAsFor } from './tools.js';

export interface EmbeddedStatus {
  running: boolean;
  initialised: boolean;
  port?: number;
  dataDir: string;
  home: string;
  /** With the password masked: only `ensureEmbedded` hands out the URL that logs in. */
  url?: string;
  pid?: number;
}

/** Start the embedded server if needed and return the URL of its `stockctl` database. */
export async function ensureEmbedded(place: EmbeddedPlace): Promise<EmbeddedInfo> {
  const { home } = place;

  // Fast path: a few ms when the server is already up, no lock, no child process.
  const known = await readConfig(home);
  if (known?.auth === AUTH_METHOD) {
    const password = await readPassword(home);
    if (password && (await probe(known.port, known.dataDir, password)) === 'ready') return info(home, known, password, false);
  }

  return withFsErrors(home, async () => {
    await prepareHome(home);
    const lock = await acquireLock(home);
    try {
      return await startLocked(place);
    } finally {
      await lock.release();
    }
  });
}

export async function embeddedStatus(place: EmbeddedPlace): Promise<EmbeddedStatus> {
  const { home } = place;
  const known = await readConfig(home);
  const cfg = known ?? defaultLayout(home);
  const initialised = await exists(path.join(cfg.dataDir, 'PG_VERSION'));
  const status: EmbeddedStatus = { running: false, initialised, dataDir: cfg.dataDir, home, port: known?.port };
  if (status.port === undefined) delete status.port;
  const pm = await readPostmasterPid(cfg.dataDir);
  if (pm && (await isPostmaster(pm.pid))) {
    status.running = true;
    status.pid = pm.pid;
    status.port = pm.port ?? status.port;
    if (status.port !== undefined) status.url = `postgres://${SUPERUSER}:***@${HOST}:${status.port}/${DATABASE}`;
  }
  return status;
}

/** Stop this home's server; false if it was not running. */
export async function stopEmbedded(place: EmbeddedPlace): Promise<boolean> {
  const { home } = place;
  const known = await readConfig(home);
  if (!known || !(await exists(path.join(known.dataDir, 'PG_VERSION')))) return false;

  return withFsErrors(home, async () => {
    await prepareHome(home);
    const lock = await acquireLock(home);
    try {
      return await stopLocked((await readConfig(home)) ?? known);
    } finally {
      await lock.release();
    }
  });
}

/** Under the home's lock: whatever it takes, from no cluster at all to a running, secured one. */
async function startLocked({ home, port: forced }: EmbeddedPlace): Promise<EmbeddedInfo> {
  let cfg = await readConfig(home);
  if (!cfg) {
    const layout = defaultLayout(home);
    cfg = { version: 1, port: forced ?? (await choosePort()), ...layout };
    await writeConfig(home, cfg);
  }
  // Written before anything uses it, so that a crash at any later step finds it again.
  const { password, created } = await ensurePassword(home);
  let state = await probe(cfg.port, cfg.dataDir, password);
  if (state === 'ready' && cfg.auth === AUTH_METHOD && !created) return info(home, cfg, password, false);

  const runAs = await runAsFor(cfg.dataDir);
  const bins = await usableBinaries(runAs);
  // Our own postmaster refusing the home's password is ours to fix (secureCluster).
  let up = state === 'ready' || state === 'no-database' || (state === 'refused' && (await listensOn(cfg.dataDir, cfg.port)));
  // A password just made means the cluster does not take it yet, unless initdb gets it now.
  let needsPassword = cfg.auth !== AUTH_METHOD || created;
  let started = false;
  if (!up) {
    if (!(await exists(path.join(cfg.dataDir, 'PG_VERSION')))) {
      cfg = await initCluster(home, cfg, password, bins, runAs);
      needsPassword = false;
    }
    const pm = await readPostmasterPid(cfg.dataDir);
    if (pm && (await isPostmaster(pm.pid))) {
      // Running but not answering on the recorded port yet (crash recovery, slow start),
      // or just killed and still exiting: wait for one or the other.
      const port = pm.port ?? cfg.port;
      if (await waitReady(port, pm.pid, cfg, password)) {
        if (port !== cfg.port) await writeConfig(home, (cfg = { ...cfg, port }));
        up = true;
      }
    }
    if (!up) {
      // A postmaster.pid whose pid now belongs to another program (e.g. after a reboot)
      // makes postgres refuse to start; a dead pid it handles by itself.
      if (pm) await fs.rm(path.join(cfg.dataDir, 'postmaster.pid'), { force: true });
      cfg = await startServer(home, cfg, bins, runAs, forced);
      started = true;
    }
    state = await probe(cfg.port, cfg.dataDir, password);
  }
  if (needsPassword || state === 'refused') {
    cfg = await secureCluster(home, cfg, password, bins, runAs, forced);
    state = await probe(cfg.port, cfg.dataDir, password);
  }
  if (state === 'no-database') await createDatabase(cfg.port, password, cfg.logFile);
  else if (state !== 'ready') {
    throw new DatabaseUnavailableError(
      `The embedded PostgreSQL server on port ${cfg.port} is not accepting connections (${state}); see ${cfg.logFile}.`,
    );
  }
  return info(home, cfg, password, started);
}
