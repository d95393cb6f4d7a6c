/**
 * Switching a cluster over to the home's password. Logins need it (SCRAM) on every
 * pg_hba.conf line: with trust, any local user could log in as superuser and run programs
 * as the server's OS user (COPY ... TO PROGRAM). Clusters made with trust by earlier
 * versions are switched over once, under the lock.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { DatabaseUnavailableError } from '../../../errors.js';
import { refusedCredentials } from '../../errors.js';
import type { Binaries } from '../binaries.js';
import { sleep } from '../files.js';
import { AUTH_METHOD, PASSWORD_FILE, SUPERUSER, writeConfig, type Config } from '../layout.js';
import { startServer, stopLocked } from '../server.js';
import { superuserClient } from '../superuser.js';
import { run, summary, type RunAs } from '../tools.js';

const SCRAM_ITERATIONS = 4096;

/**
 * Make every login need the home's password, each step safe to repeat: the password file
 * comes first (ensurePassword), then the role's password, then pg_hba.conf (rewritten,
 * reloaded, checked), and embedded.json records it last. A crash between two steps leaves
 * a cluster that still trusts, or already takes the home's password, never one nobody can
 * log into; the next start carries on.
 */
export async function secureCluster(
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
