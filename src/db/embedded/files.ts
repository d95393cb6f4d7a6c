/** Small filesystem helpers (and a sleep) the embedded server's parts share. */
import fs from 'node:fs/promises';

export async function exists(p: string): Promise<boolean> {
  try {
    await fs.access(p);
    return true;
  } catch {
    return false;
  }
}

export async function fileSize(file: string): Promise<number> {
  try {
    return (await fs.stat(file)).size;
  } catch {
    return 0;
  }
}

/** What was appended to `file` after `offset` (at most the last 64 KiB of it). */
export async function readFrom(file: string, offset: number): Promise<string> {
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

export async function symlinkQuietly(target: string, link: string): Promise<void> {
  try {
    await fs.rm(link, { force: true });
    await fs.symlink(target, link);
  } catch {
    // best effort: embedded.json records the real location
  }
}

/** mkdir -p plus an explicit chmod, so a restrictive root umask cannot lock the run user out. */
export async function ensureSharedDir(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  await fs.chmod(dir, 0o755);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
