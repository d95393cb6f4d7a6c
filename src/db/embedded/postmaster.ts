/**
 * Is a data directory's postmaster running, and on which port: its postmaster.pid, and
 * whether that pid is still a live postgres process (not a zombie, not a reused pid).
 */
import fs from 'node:fs/promises';
import path from 'node:path';

export async function listensOn(dataDir: string, port: number): Promise<boolean> {
  const pm = await readPostmasterPid(dataDir);
  return pm?.port === port && (await isPostmaster(pm.pid));
}

export async function readPostmasterPid(dataDir: string): Promise<{ pid: number; port?: number } | undefined> {
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

export async function isPostmaster(pid: number): Promise<boolean> {
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
