/**
 * The home folder itself: made if need be, and every filesystem surprise in it (a folder
 * that is read-only, or a file where the folder should be) told as the user's to fix.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DatabaseUnavailableError, InvalidInputError, StockctlError } from '../../errors.js';

/** Filesystem surprises (permissions, full disk) become one clear sentence too. */
export async function withFsErrors<T>(home: string, work: () => Promise<T>): Promise<T> {
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
export async function prepareHome(home: string): Promise<void> {
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
export async function homeProblem(home: string, err: NodeJS.ErrnoException): Promise<StockctlError | undefined> {
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
