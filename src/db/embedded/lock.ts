/**
 * The start lock, so that commands starting at once share one server: proper-lockfile's
 * `<home>/start.lock` directory, refreshed while held so that a long initdb is not taken
 * for a stale lock, and broken when its holder died.
 */
import path from 'node:path';
import { DatabaseUnavailableError } from '../../errors.js';
import { homeProblem } from './home.js';

const LOCK_STALE_MS = 60_000;
const LOCK_HEARTBEAT_MS = 10_000;
const LOCK_WAIT_MS = 120_000;

/** Take `<home>/start.lock`, waiting for (or breaking a stale) one held elsewhere. */
export async function acquireLock(home: string): Promise<{ release(): Promise<void> }> {
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
