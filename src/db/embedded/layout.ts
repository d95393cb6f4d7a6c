/**
 * Where a home's server lives and how it is reached: the names every other part of the
 * embedded server shares, and `<home>/embedded.json`, which records port, data directory
 * and log file (and, once every login needs the password, the auth method).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

export const DATABASE = 'stockctl';
export const SUPERUSER = 'postgres';
export const PASSWORD_FILE = 'password';
export const AUTH_METHOD = 'scram-sha-256';
export const HOST = '127.0.0.1';
export const ROOT_DATA_BASE = '/var/lib/stockctl';

/** Where an embedded server lives: its home folder and, if fixed, its port. */
export interface EmbeddedPlace {
  home: string;
  port?: number;
}

export interface EmbeddedInfo {
  /** The URL that logs in: it carries the password, so show it only through redactUrl. */
  url: string;
  port: number;
  dataDir: string;
  home: string;
  /** True if this call started the server. */
  started: boolean;
}

export interface Config {
  version: 1;
  port: number;
  dataDir: string;
  logFile: string;
  /** Set once every login needs the password: written last when a cluster is switched over. */
  auth?: typeof AUTH_METHOD;
}

export function defaultLayout(home: string): { dataDir: string; logFile: string } {
  if (!isRoot()) return { dataDir: path.join(home, 'pgdata'), logFile: path.join(home, 'postgres.log') };
  const base = path.join(ROOT_DATA_BASE, createHash('sha256').update(home).digest('hex').slice(0, 12));
  return { dataDir: path.join(base, 'pgdata'), logFile: path.join(base, 'postgres.log') };
}

export function info(home: string, cfg: Config, password: string, started: boolean): EmbeddedInfo {
  return { url: urlFor(cfg.port, password), port: cfg.port, dataDir: cfg.dataDir, home, started };
}

function urlFor(port: number, password: string): string {
  return `postgres://${SUPERUSER}:${encodeURIComponent(password)}@${HOST}:${port}/${DATABASE}`;
}

export async function readConfig(home: string): Promise<Config | undefined> {
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

export async function writeConfig(home: string, cfg: Config): Promise<void> {
  const file = path.join(home, 'embedded.json');
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, JSON.stringify(cfg, null, 2) + '\n');
  await fs.rename(tmp, file);
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}
