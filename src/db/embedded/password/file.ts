/** `<home>/password`: the `postgres` role's password (mode 0600); every login needs it. */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { isRoot, PASSWORD_FILE } from '../layout.js';

/** The home's password (the file's first line), if it has one. */
export async function readPassword(home: string): Promise<string | undefined> {
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
export async function ensurePassword(home: string): Promise<{ password: string; created: boolean }> {
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
