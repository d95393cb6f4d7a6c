import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddedPlace } from '../src/cli/config.js';
import { embeddedStatus, ensureEmbedded, stopEmbedded } from '../src/db/embedded/index.js';
import { REPO_ROOT, runCli, runCliJson, type CliOptions } from './helpers/cli.js';
import { api, startServer } from './server/_server.js';

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
    await stopEmbedded(embeddedPlace()).catch(() => false);
    if (process.env.STOCKCTL_HOME === home) process.env.STOCKCTL_HOME = saved;
    if (saved === undefined) delete process.env.STOCKCTL_HOME;
    await fs.rm(home, { recursive: true, force: true });
    // As root the cluster lives outside the home, in a directory of its own.
    if (dataDir && !dataDir.startsWith(home)) await fs.rm(path.dirname(dataDir), { recursive: true, force: true });
  });

  it('uses STOCKCTL_HOME', () => {
    expect(embeddedPlace().home).toBe(path.resolve(home));
  });

  it('starts one server for concurrent callers and serves the stockctl database', async () => {
    const results = await Promise.all([ensureEmbedded(embeddedPlace()), ensureEmbedded(embeddedPlace()), ensureEmbedded(embeddedPlace())]);
    dataDir = results[0].dataDir;
    expect(results.filter((r) => r.started)).toHaveLength(1);
    expect(new Set(results.map((r) => r.url)).size).toBe(1);
    const { url, port } = results[0];
    expect(port).not.toBe(5432);
    const password = (await fs.readFile(path.join(home, 'password'), 'utf8')).trim();
    expect(url).toBe(`postgres://postgres:${password}@127.0.0.1:${port}/stockctl`);

    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      const [row] = await sql`select current_database() as db`;
      expect(row.db).toBe('stockctl');
    } finally {
      await sql.end({ timeout: 1 });
    }

    const again = await ensureEmbedded(embeddedPlace());
    expect(again).toMatchObject({ url, started: false });
    const status = await embeddedStatus(embeddedPlace());
    expect(status).toMatchObject({ running: true, initialised: true, port, url: `postgres://postgres:***@127.0.0.1:${port}/stockctl` });
    expect(status.pid).toBeGreaterThan(0);
  }, 120_000);

  it('stops, reports it, and restarts on the same port', async () => {
    const { port } = await ensureEmbedded(embeddedPlace());
    expect(await stopEmbedded(embeddedPlace())).toBe(true);
    expect(await stopEmbedded(embeddedPlace())).toBe(false);
    expect(await embeddedStatus(embeddedPlace())).toMatchObject({ running: false, initialised: true });
    expect(await ensureEmbedded(embeddedPlace())).toMatchObject({ port, started: true });
  }, 120_000);
});

// ---------------------------------------------------------------------------
// The CLI over homes of its own (each test makes temporary STOCKCTL_HOMEs and removes them).

interface DbStatus {
  running: boolean;
  initialised: boolean;
  port: number | null;
  pid: number | null;
  data_dir: string;
}

const homes: string[] = [];

async function newHome(): Promise<string> {
  const home = await fs.mkdtemp(path.join(os.tmpdir(), 'stockctl-home-'));
  homes.push(home);
  return home;
}

/** bin/stockctl on the embedded server of `home` (never DATABASE_URL). */
function inHome(home: string, env: Record<string, string> = {}): CliOptions {
  return { databaseUrl: null, env: { STOCKCTL_HOME: home, ...env }, timeoutMs: 120_000 };
}

async function status(home: string): Promise<DbStatus> {
  return (await runCliJson<DbStatus>(['db', 'status'], inHome(home))).json;
}

async function skus(home: string): Promise<string[]> {
  const res = await runCliJson<{ items: { sku: string }[] }>(['stock'], inHome(home));
  expect(res.code, res.stderr).toBe(0);
  return res.json.items.map((i) => i.sku).sort();
}

/** Stop a home's server and remove the home and its cluster (as root, outside the home). */
async function removeHome(home: string): Promise<void> {
  const { data_dir: dataDir } = await status(home);
  await runCli(['db', 'stop'], inHome(home));
  await fs.rm(home, { recursive: true, force: true });
  if (!dataDir.startsWith(home)) await fs.rm(path.dirname(dataDir), { recursive: true, force: true });
}

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe.skipIf(!supported)('embedded PostgreSQL through the CLI', () => {
  afterAll(async () => {
    for (const home of homes.splice(0)) await removeHome(home);
  }, 120_000);

  it('never lets a home use another home’s server, even on the port it recorded', async () => {
    const a = await newHome();
    const b = await newHome();
    expect((await runCli(['product', 'add', 'HOME-A', '--name', 'Only in A', '--stock', '5'], inHome(a))).code).toBe(0);
    const portA = (await status(a)).port!;
    expect((await runCli(['db', 'stop'], inHome(a))).code).toBe(0);

    // B starts its own server on the very port A recorded.
    const addB = await runCli(['product', 'add', 'HOME-B', '--name', 'Only in B', '--stock', '7'], inHome(b, { STOCKCTL_EMBEDDED_PORT: String(portA) }));
    expect(addB.code, addB.stderr).toBe(0);
    expect(await status(b)).toMatchObject({ running: true, port: portA });

    // A's next command finds B's server there, leaves it alone and starts A's own.
    expect(await skus(a)).toEqual(['HOME-A']);
    const statusA = await runCliJson<DbStatus>(['db', 'status'], inHome(a));
    expect(statusA.code).toBe(0);
    expect(statusA.json.running).toBe(true);
    expect(statusA.json.port).not.toBe(portA);
    expect(await portAnswers(statusA.json.port!)).toBe(true);

    // Writes land in their own home only.
    expect((await runCli(['product', 'add', 'HOME-A2', '--name', 'Also A', '--stock', '1'], inHome(a))).code).toBe(0);
    expect((await runCli(['product', 'add', 'HOME-B2', '--name', 'Also B', '--stock', '1'], inHome(b))).code).toBe(0);
    expect(await skus(a)).toEqual(['HOME-A', 'HOME-A2']);
    expect(await skus(b)).toEqual(['HOME-B', 'HOME-B2']);
    expect(await status(b)).toMatchObject({ running: true, port: portA });
  }, 240_000);

  it('db status exits 3 when stopped; the command that starts the server says how to stop it', async () => {
    const home = await newHome();
    const stopped = await runCli(['db', 'status'], inHome(home));
    expect(stopped.code).toBe(3);
    expect(stopped.stdout).toBe(`Embedded PostgreSQL is not running.\nHome: ${home}\nData: ${(await status(home)).data_dir} (not initialised yet)\n`);
    const stoppedJson = await runCliJson<DbStatus>(['db', 'status'], inHome(home));
    expect(stoppedJson.code).toBe(3);
    expect(stoppedJson.json).toMatchObject({ running: false, initialised: false, pid: null });

    const first = await runCli(['product', 'add', 'FIRST', '--name', 'First', '--stock', '1'], inHome(home));
    expect(first.code).toBe(0);
    expect(first.stderr).toBe(
      `Started the embedded PostgreSQL under ${home}; it keeps running for the next command (stop it with \`stockctl db stop\`).\n`,
    );
    const next = await runCli(['stock'], inHome(home));
    expect(next.code).toBe(0);
    expect(next.stderr).toBe('');
    const running = await runCli(['db', 'status'], inHome(home));
    expect(running.code).toBe(0);
    expect(running.stdout).toMatch(/^Embedded PostgreSQL is running at postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/stockctl \(pid \d+\)\.\n/);

    // Neither --json nor --quiet says it.
    await runCli(['db', 'stop'], inHome(home));
    const json = await runCliJson(['stock'], inHome(home));
    expect(json.code).toBe(0);
    expect(json.stderr).toBe('');
    await runCli(['db', 'stop'], inHome(home));
    const quiet = await runCli(['sweep', '--quiet'], inHome(home));
    expect(quiet.code).toBe(0);
    expect(quiet.stderr).toBe('');
  }, 240_000);

  it('db destroy says what it would delete, and deletes it only with --yes', async () => {
    const home = await newHome();
    expect((await runCli(['product', 'add', 'DOOMED', '--name', 'Doomed', '--stock', '1'], inHome(home))).code).toBe(0);
    const before = await status(home);
    expect(before.running).toBe(true);
    const rootLayout = !before.data_dir.startsWith(home);
    const cluster = rootLayout ? path.dirname(before.data_dir) : before.data_dir;

    const refused = await runCli(['db', 'destroy'], inHome(home));
    expect(refused.code).toBe(2);
    expect(refused.stdout).toBe('');
    const listed = rootLayout
      ? [cluster, `${home}/embedded.json`, `${home}/password`, `${home}/pgdata`, `${home}/postgres.log`]
      : [cluster, `${home}/postgres.log`, `${home}/embedded.json`, `${home}/password`];
    expect(refused.stderr).toBe(
      `error: db destroy needs --yes: it would stop the running embedded PostgreSQL and delete ${listed.join(', ')}, with all the data in them.\n`,
    );
    expect(await skus(home)).toEqual(['DOOMED']);

    const destroyed = await runCliJson<{ destroyed: boolean; stopped: boolean; removed: string[] }>(['db', 'destroy', '--yes'], inHome(home));
    expect(destroyed.code, destroyed.stderr).toBe(0);
    expect(destroyed.json).toMatchObject({ destroyed: true, stopped: true, removed: listed });
    await expect(fs.access(cluster)).rejects.toThrow();
    await expect(fs.access(home)).rejects.toThrow(); // left empty, so removed too
    expect(await portAnswers(before.port!)).toBe(false);
    expect(await status(home)).toMatchObject({ running: false, initialised: false });

    const again = await runCli(['db', 'destroy', '--yes'], inHome(home));
    expect(again.code).toBe(0);
    expect(again.stdout).toBe(`There is no embedded database under ${home}; nothing to delete.\n`);
  }, 240_000);

  it('db start says once that it started the server', async () => {
    const home = await newHome();
    const start = await runCli(['db', 'start'], inHome(home));
    expect(start.code, start.stderr).toBe(0);
    expect(start.stderr).toBe('');
    expect(start.stdout).toMatch(/^Started embedded PostgreSQL at postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/stockctl \(data in .+\)\.\n$/);
    const again = await runCli(['db', 'start'], inHome(home));
    expect(again.code).toBe(0);
    expect(again.stderr).toBe('');
    expect(again.stdout).toMatch(/^Already running: embedded PostgreSQL at postgres:\/\/postgres:\*\*\*@/);
  }, 240_000);

  it('a STOCKCTL_HOME it cannot write to is exit 2, naming the folder and what to do', async () => {
    const parent = await fs.mkdtemp(path.join(os.tmpdir(), 'stockctl-ro-'));
    try {
      await fs.chmod(parent, 0o555);
      const instead = 'or set STOCKCTL_HOME to a folder you can write to, or DATABASE_URL to use another PostgreSQL server.';
      // Root writes anywhere: as root, a read-only mount (where Node's mkdir said ENOENT), and another user.
      const readOnlyMount = process.getuid?.() === 0 && spawnSync('unshare', ['-m', 'true']).status === 0;
      if (readOnlyMount) {
        for (const home of [parent, path.join(parent, 'sub')]) {
          const res = runOnReadOnlyMount(parent, ['stock'], home);
          expect(res.status, res.stderr).toBe(2);
          expect(res.stdout).toBe('');
          expect(res.stderr).toBe(
            home === parent
              ? `error: The embedded PostgreSQL's folder ${home} (STOCKCTL_HOME) is not writable (a read-only file system); make it writable, ${instead}\n`
              : `error: The embedded PostgreSQL's folder ${home} (STOCKCTL_HOME) cannot be created: ${parent} is not writable (a read-only file system); make ${parent} writable, ${instead}\n`,
          );
        }
      } else {
        console.warn('skipped the read-only mount case: it needs root and unshare -m');
      }
      const user = process.getuid?.() === 0 ? otherUser() : { uid: process.getuid!(), gid: process.getgid!(), name: os.userInfo().username };
      if (!user) {
        console.warn('skipped the unwritable-folder case: running as root and there is no "nobody" user to run as');
        return;
      }
      const why = `permission denied for ${user.name}`;
      const cases = [
        { home: parent, message: `error: The embedded PostgreSQL's folder ${parent} (STOCKCTL_HOME) is not writable (${why}); make it writable, ${instead}\n` },
        {
          home: path.join(parent, 'sub'),
          message: `error: The embedded PostgreSQL's folder ${parent}/sub (STOCKCTL_HOME) cannot be created: ${parent} is not writable (${why}); make ${parent} writable, ${instead}\n`,
        },
      ];
      for (const { home, message } of cases) {
        for (const command of [['stock'], ['db', 'start']]) {
          const res = await runStockctlAs(user, command, { STOCKCTL_HOME: home });
          expect(res.code, res.stderr).toBe(2);
          expect(res.stderr).toBe(message);
        }
        const json = await runStockctlAs(user, ['stock', '--json'], { STOCKCTL_HOME: home });
        expect(json.code).toBe(2);
        expect(JSON.parse(json.stdout).error.code).toBe('home_not_writable');
      }
    } finally {
      await fs.chmod(parent, 0o755);
      await fs.rm(parent, { recursive: true, force: true });
    }
  }, 120_000);
});

// ---------------------------------------------------------------------------
// Who may log in: only who has the home's password.

/** The `nobody` user, to play another local user (the tests run as root). */
function otherUser(): { uid: number; gid: number; name: string } | undefined {
  const line = spawnSync('getent', ['passwd', 'nobody'], { encoding: 'utf8' }).stdout?.trim();
  const [name, , uid, gid] = line ? line.split(':') : [];
  return name && Number(uid) > 0 ? { uid: Number(uid), gid: Number(gid), name } : undefined;
}

/** Node as another OS user: its own clean environment, `/` as its working directory. */
function runNodeAs(user: { uid: number; gid: number }, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, args, {
    cwd: '/',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    uid: user.uid,
    gid: user.gid,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

function runStockctlAs(user: { uid: number; gid: number }, args: string[], env: Record<string, string>) {
  return runNodeAs(user, [path.join(REPO_ROOT, 'bin/stockctl'), ...args], env);
}

/** bin/stockctl as root, in a mount namespace of its own where `dir` is mounted read-only. */
function runOnReadOnlyMount(dir: string, args: string[], home: string) {
  const script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"';
  return spawnSync('unshare', ['-m', 'sh', '-c', script, 'sh', dir, process.execPath, path.join(REPO_ROOT, 'bin/stockctl'), ...args], {
    cwd: '/',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', STOCKCTL_HOME: home },
    encoding: 'utf8',
  });
}

/** A login as `postgres` with this password (none: an empty one): 'ok', or the error's code. */
async function login(port: number, password = '', database = 'stockctl'): Promise<string> {
  const sql = postgres({ host: '127.0.0.1', port, user: 'postgres', pass: password || undefined, database, max: 1, connect_timeout: 5, onnotice: () => {} });
  try {
    await sql`select 1`;
    return 'ok';
  } catch (err) {
    return String((err as { code?: unknown }).code);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

async function readPassword(home: string): Promise<string> {
  return (await fs.readFile(path.join(home, 'password'), 'utf8')).trim();
}

async function embeddedUrl(home: string): Promise<string> {
  const res = await runCliJson<{ url: string }>(['db', 'url'], inHome(home));
  expect(res.code, res.stderr).toBe(0);
  return res.json.url;
}

/** pg_hba.conf's lines that are not comments. */
async function hbaRules(dataDir: string): Promise<string[]> {
  const text = await fs.readFile(path.join(dataDir, 'pg_hba.conf'), 'utf8');
  return text.split('\n').filter((line) => line.trim() && !line.trim().startsWith('#'));
}

/**
 * Put a home back as an earlier stockctl left it: pg_hba.conf `trust`, the role without a
 * password, no password file (unless asked to keep it, as a crash right after writing it
 * would), embedded.json without `auth`.
 */
async function makeTrustCluster(home: string, opts: { keepPasswordFile?: boolean } = {}): Promise<void> {
  const url = await embeddedUrl(home);
  const { data_dir: dataDir, port } = await status(home);
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql`alter role postgres password null`;
    const hba = path.join(dataDir, 'pg_hba.conf');
    await fs.writeFile(hba, (await fs.readFile(hba, 'utf8')).replaceAll('scram-sha-256', 'trust'));
    await sql`select pg_reload_conf()`;
  } finally {
    await sql.end({ timeout: 1 });
  }
  if (!opts.keepPasswordFile) await fs.rm(path.join(home, 'password'));
  const cfgFile = path.join(home, 'embedded.json');
  const { auth, ...cfg } = JSON.parse(await fs.readFile(cfgFile, 'utf8'));
  expect(auth).toBe('scram-sha-256');
  await fs.writeFile(cfgFile, `${JSON.stringify(cfg, null, 2)}\n`);
  // The postmaster rereads pg_hba.conf on the SIGHUP: wait until it lets anyone in.
  for (let i = 0; (await login(port!)) !== 'ok'; i++) {
    if (i > 100) throw new Error('the trust pg_hba.conf never took effect');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Only the home's password logs in, and the files say so. */
async function expectPasswordRequired(home: string): Promise<string> {
  const { port, data_dir: dataDir } = await status(home);
  const password = await readPassword(home);
  expect(password).toMatch(/^[A-Za-z0-9_-]{32}$/);
  expect((await fs.stat(path.join(home, 'password'))).mode & 0o777).toBe(0o600);
  expect(JSON.parse(await fs.readFile(path.join(home, 'embedded.json'), 'utf8'))).toMatchObject({ auth: 'scram-sha-256' });
  for (const rule of await hbaRules(dataDir)) expect(rule).toMatch(/\sscram-sha-256$/);
  expect(await login(port!)).toBe('28P01');
  expect(await login(port!, 'not-the-password')).toBe('28P01');
  expect(await login(port!, password)).toBe('ok');
  const url = await embeddedUrl(home);
  expect(url).toBe(`postgres://postgres:${password}@127.0.0.1:${port}/stockctl`);
  return password;
}

describe.skipIf(!supported)('the embedded server takes only its password', () => {
  afterAll(async () => {
    for (const home of homes.splice(0)) await removeHome(home);
  }, 120_000);

  const asRoot = process.getuid?.() === 0;
  it.skipIf(!asRoot)('refuses another OS user (this test needs root, to run as nobody), while stockctl and db url log in', async () => {
    const nobody = otherUser();
    if (!nobody) return console.warn('skipped: there is no "nobody" user to run as');
    const home = await newHome();
    await fs.chmod(home, 0o755); // only the password file's own mode keeps it private
    expect((await runCli(['product', 'add', 'MINE', '--name', 'Mine', '--stock', '3'], inHome(home))).code).toBe(0);
    const { port } = await status(home);
    const password = await expectPasswordRequired(home);

    // What the issue showed: a local user runs a program as the server's OS user.
    const marker = path.join(os.tmpdir(), `stockctl-intruder-${process.pid}`);
    const script = `
      const postgres = require(${JSON.stringify(path.join(REPO_ROOT, 'node_modules/postgres/cjs/src/index.js'))});
      const fs = require('node:fs');
      const out = {};
      try { fs.readFileSync(${JSON.stringify(path.join(home, 'password'))}); out.read = 'ok'; } catch (e) { out.read = e.code; }
      (async () => {
        for (const pass of [undefined, 'postgres', '']) {
          const sql = postgres({ host: '127.0.0.1', port: ${port}, user: 'postgres', pass, database: 'stockctl', max: 1, connect_timeout: 5 });
          try { await sql.unsafe("copy (select 1) to program 'id > ${marker}'"); out[String(pass)] = 'ok'; }
          catch (e) { out[String(pass)] = e.code + ': ' + e.message; }
          finally { await sql.end({ timeout: 1 }); }
        }
        console.log(JSON.stringify(out));
      })();`;
    const intruder = await runNodeAs(nobody, ['-e', script]);
    expect(intruder.code, intruder.stderr).toBe(0);
    const tried = JSON.parse(intruder.stdout);
    expect(tried.read).toBe('EACCES');
    for (const pass of ['undefined', 'postgres', '']) {
      expect(tried[pass]).toBe('28P01: password authentication failed for user "postgres"');
    }
    await expect(fs.access(marker)).rejects.toThrow();

    // stockctl itself, and whoever has the URL from db url, log in.
    expect(await skus(home)).toEqual(['MINE']);
    const sql = postgres(await embeddedUrl(home), { max: 1, onnotice: () => {} });
    try {
      expect((await sql`select current_user as who`)[0].who).toBe('postgres');
    } finally {
      await sql.end({ timeout: 1 });
    }

    // The password is in no output but db url's, and not in the server's log.
    const outputs = await Promise.all(
      [['db', 'status'], ['db', 'status', '--json'], ['db', 'start'], ['db', 'start', '--json'], ['stock', '--json'], ['orders', 'show', 'nope']].map((args) =>
        runCli(args, inHome(home)),
      ),
    );
    for (const res of outputs) expect(`${res.stdout}${res.stderr}`).not.toContain(password);
    expect(await fs.readFile(path.join(home, 'postgres.log'), 'utf8')).not.toContain(password);
  }, 240_000);

  it('switches a cluster made with trust by an earlier version over, once, on its next start or while it runs', async () => {
    const home = await newHome();
    expect((await runCli(['product', 'add', 'OLD', '--name', 'Old', '--stock', '2'], inHome(home))).code).toBe(0);
    const first = await expectPasswordRequired(home);

    // Stopped: the next command starts it with trust and switches it over.
    await makeTrustCluster(home);
    expect((await runCli(['db', 'stop'], inHome(home))).code).toBe(0);
    expect(await skus(home)).toEqual(['OLD']);
    const second = await expectPasswordRequired(home);
    expect(second).not.toBe(first);

    // Running: switched over on its trusted connection, without a restart.
    await makeTrustCluster(home);
    const { pid } = await status(home);
    expect(await skus(home)).toEqual(['OLD']);
    expect((await status(home)).pid).toBe(pid);
    const third = await expectPasswordRequired(home);
    expect(third).not.toBe(second);

    // A crash right after the password file was written: the next command uses that password.
    await makeTrustCluster(home, { keepPasswordFile: true });
    expect(await skus(home)).toEqual(['OLD']);
    expect(await expectPasswordRequired(home)).toBe(third);

    // A crash after pg_hba.conf was rewritten but before the reload: the server still trusts.
    await makeTrustCluster(home, { keepPasswordFile: true });
    const hba = path.join((await status(home)).data_dir, 'pg_hba.conf');
    await fs.writeFile(hba, (await fs.readFile(hba, 'utf8')).replaceAll('trust', 'scram-sha-256'));
    expect(await login((await status(home)).port!)).toBe('ok');
    expect(await skus(home)).toEqual(['OLD']);
    expect(await expectPasswordRequired(home)).toBe(third);
  }, 240_000);

  it('a lost password file: the next command sets a new password on the stopped cluster, and the old one is refused', async () => {
    const home = await newHome();
    expect((await runCli(['product', 'add', 'KEPT', '--name', 'Kept', '--stock', '1'], inHome(home))).code).toBe(0);
    const old = await expectPasswordRequired(home);
    await fs.rm(path.join(home, 'password'));
    expect(await skus(home)).toEqual(['KEPT']);
    const renewed = await expectPasswordRequired(home);
    expect(renewed).not.toBe(old);
    expect(await login((await status(home)).port!, old)).toBe('28P01');
  }, 240_000);
});

describe.skipIf(!supported)('serve on the embedded server', () => {
  afterAll(async () => {
    for (const home of homes.splice(0)) await removeHome(home);
  }, 120_000);

  it('refuses with 503 and says why when its port answers with another home’s cluster after a reconnect', async () => {
    const a = await newHome();
    const b = await newHome();
    const port = 56000 + Math.floor(Math.random() * 2000);
    const env = { STOCKCTL_EMBEDDED_PORT: String(port) };
    const token = await runCliJson<{ token: string }>(['token', 'create', 'shop-a', '--role', 'read'], inHome(a, env));
    expect(token.code, token.stderr).toBe(0);
    const server = await startServer(null, [], { STOCKCTL_HOME: a, ...env });
    let stderr = '';
    server.proc.child.stderr!.on('data', (chunk: string) => (stderr += chunk));
    try {
      const read = () => api(server, 'GET', '/stock', { token: token.json.token });
      expect((await read()).status).toBe(200);

      // This home's cluster goes away; another home's takes the same port. With the same
      // password (another one is refused at login already), so the identity check decides.
      await fs.copyFile(path.join(a, 'password'), path.join(b, 'password'));
      expect((await runCli(['db', 'destroy', '--yes'], inHome(a))).code).toBe(0);
      const other = await runCli(['db', 'start'], inHome(b, env));
      expect(other.code, other.stderr).toBe(0);
      expect((await status(b)).port).toBe(port);

      const refused = await read();
      expect(refused.status, refused.text).toBe(503);
      expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(refused.body).toMatchObject({ code: 'database_unavailable', detail: expect.stringMatching(/is now another PostgreSQL cluster/) });
      const ready = await api(server, 'GET', '/readyz');
      expect(ready.status).toBe(503);
      expect((await api(server, 'GET', '/healthz')).status).toBe(200);
      expect(stderr).toMatch(/refusing requests: the database is another cluster/);
      expect(server.proc.child.exitCode).toBeNull();
    } finally {
      const stopped = await server.stop();
      expect(stopped.code, stopped.stderr).toBe(0);
    }
  }, 240_000);
});

// ---------------------------------------------------------------------------
// `npm test` itself: the suite's global setup and teardown, run as a nested vitest.

/** `vitest run` on a one-test suite with the real global setup, against `home`'s embedded server. */
function runNestedSuite(home: string, env: Record<string, string> = {}): Promise<{ code: number | null; output: string }> {
  const childEnv: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!/^(VITEST|DATABASE_URL$|STOCKCTL_)/.test(name)) childEnv[name] = value;
  }
  Object.assign(childEnv, { STOCKCTL_HOME: home, ...env });
  const vitest = path.join(REPO_ROOT, 'node_modules/vitest/vitest.mjs');
  const child = spawn(process.execPath, [vitest, 'run', '--config', 'test/fixtures/teardown/vitest.config.ts'], {
    cwd: REPO_ROOT,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, output })));
}

describe.skipIf(!supported)('the test suite’s own teardown', () => {
  afterAll(async () => {
    for (const home of homes.splice(0)) await removeHome(home);
  }, 120_000);

  it('stops the embedded server the suite started', async () => {
    const home = await newHome();
    const run = await runNestedSuite(home);
    expect(run.code, run.output).toBe(0);
    const after = await runCliJson<DbStatus>(['db', 'status'], inHome(home));
    expect(after.json).toMatchObject({ running: false, initialised: true, pid: null });
    expect(after.code).toBe(3);
    expect(await portAnswers(after.json.port!)).toBe(false);
  }, 240_000);

  it('leaves a server that was already running, and keeps its own with STOCKCTL_TEST_KEEP_DB=1', async () => {
    const home = await newHome();
    expect((await runCli(['db', 'start'], inHome(home))).code).toBe(0);
    const before = await status(home);
    const run = await runNestedSuite(home);
    expect(run.code, run.output).toBe(0);
    expect(await status(home)).toMatchObject({ running: true, pid: before.pid, port: before.port });

    expect((await runCli(['db', 'stop'], inHome(home))).code).toBe(0);
    const kept = await runNestedSuite(home, { STOCKCTL_TEST_KEEP_DB: '1' });
    expect(kept.code, kept.output).toBe(0);
    expect(kept.output).toContain(`Kept the embedded PostgreSQL under ${home} running (STOCKCTL_TEST_KEEP_DB=1)`);
    const after = await status(home);
    expect(after.running).toBe(true);
    expect(await portAnswers(after.port!)).toBe(true);
  }, 240_000);
});
