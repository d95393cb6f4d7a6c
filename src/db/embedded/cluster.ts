/** Making the cluster: initdb (the password and scram from the start), then the stockctl database. */
import fs from 'node:fs/promises';
import path from 'node:path';
import { DatabaseUnavailableError } from '../../errors.js';
import { errorCode, SQLSTATE } from '../errors.js';
import type { Binaries } from './binaries.js';
import { ensureSharedDir, symlinkQuietly } from './files.js';
import { AUTH_METHOD, DATABASE, ROOT_DATA_BASE, SUPERUSER, writeConfig, type Config } from './layout.js';
import { superuserClient } from './superuser.js';
import { run, summary, type RunAs, type RunResult } from './tools.js';

/** initdb into a scratch directory and rename it, so a crash never leaves half a cluster. */
export async function initCluster(home: string, cfg: Config, password: string, bins: Binaries, runAs: RunAs | undefined): Promise<Config> {
  const base = path.dirname(cfg.dataDir);
  if (runAs) {
    // Only our own /var/lib/stockctl is opened up; a recorded path elsewhere is left alone.
    if (path.dirname(base) === ROOT_DATA_BASE) await ensureSharedDir(ROOT_DATA_BASE);
    await fs.mkdir(base, { recursive: true, mode: 0o700 });
    await fs.chown(base, runAs.uid, runAs.gid);
    await fs.chmod(base, 0o700);
  } else {
    await fs.mkdir(base, { recursive: true });
  }
  // initdb goes through a scratch directory, so a data directory without PG_VERSION
  // was not made by us: remove it only if it is empty.
  if ((await fs.readdir(cfg.dataDir).catch(() => [])).length > 0) {
    throw new DatabaseUnavailableError(
      `The embedded PostgreSQL data directory ${cfg.dataDir} is not empty but holds no cluster; move it away and retry.`,
    );
  }
  await fs.rm(cfg.dataDir, { recursive: true, force: true });
  const scratch = `${cfg.dataDir}.init`;
  await fs.rm(scratch, { recursive: true, force: true });

  // initdb reads the password as the run user: a copy it can read, for as long as it runs.
  const pwfile = `${scratch}.pw`;
  await fs.rm(pwfile, { force: true });
  await fs.writeFile(pwfile, `${password}\n`, { mode: 0o600 });
  let res: RunResult;
  try {
    if (runAs) await fs.chown(pwfile, runAs.uid, runAs.gid);
    res = await run(
      bins.initdb,
      ['-D', scratch, '-U', SUPERUSER, `--pwfile=${pwfile}`, `--auth-host=${AUTH_METHOD}`, `--auth-local=${AUTH_METHOD}`, '--encoding=UTF8', '--locale=C'],
      runAs,
      180_000,
    );
  } finally {
    await fs.rm(pwfile, { force: true });
  }
  if (res.code !== 0) {
    await fs.rm(scratch, { recursive: true, force: true });
    const who = runAs ? ` as uid ${runAs.uid}` : '';
    throw new DatabaseUnavailableError(
      `Could not initialise the embedded PostgreSQL data directory ${cfg.dataDir}${who} (${summary(res.output)}).`,
    );
  }
  // Loopback TCP only; no unix socket, so nothing depends on /var/run/postgresql.
  await fs.appendFile(
    path.join(scratch, 'postgresql.conf'),
    "\n# stockctl embedded server\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n# Room for a hundred buyers as separate processes, plus the tools watching them.\nmax_connections = 200\n",
  );
  await fs.rename(scratch, cfg.dataDir);
  // initdb gave the role the password and pg_hba.conf scram-sha-256 on every line.
  await writeConfig(home, (cfg = { ...cfg, auth: AUTH_METHOD }));

  if (runAs) {
    // Discoverability only: the real files live outside the home.
    await symlinkQuietly(cfg.dataDir, path.join(home, 'pgdata'));
    await symlinkQuietly(cfg.logFile, path.join(home, 'postgres.log'));
  }
  return cfg;
}

export async function createDatabase(port: number, password: string, logFile: string): Promise<void> {
  const sql = await superuserClient(port, password, 'postgres', { timeoutS: 10 });
  try {
    await sql.unsafe(`CREATE DATABASE ${DATABASE}`);
  } catch (err) {
    if (errorCode(err) !== SQLSTATE.duplicateDatabase) {
      throw new DatabaseUnavailableError(
        `Could not create database "${DATABASE}" in the embedded PostgreSQL server (${(err as Error).message}); see ${logFile}.`,
      );
    }
  } finally {
    await sql.end({ timeout: 1 });
  }
}
