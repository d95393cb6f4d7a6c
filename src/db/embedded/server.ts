/**
 * The postmaster, driven with pg_ctl (always under the home's lock): started on the
 * recorded port or the next free one, waited for, and stopped.
 */
import { randomInt } from 'node:crypto';
import { DatabaseUnavailableError } from '../../errors.js';
import { usableBinaries, type Binaries } from './binaries.js';
import { fileSize, readFrom, sleep } from './files.js';
import { writeConfig, type Config } from './layout.js';
import { choosePort, portFree } from './ports.js';
import { isPostmaster, readPostmasterPid } from './postmaster.js';
import { probe } from './probe.js';
import { run, runAsFor, summary, type RunAs } from './tools.js';

const START_TIMEOUT_S = 30;
const MAX_START_ATTEMPTS = 8;
const PORT_TAKEN = /could not bind|could not create any TCP\/IP sockets/i;
const SHARED_MEMORY_BUSY = /shared memory block is still in use/i;

/** pg_ctl start on the recorded port, or on the next free one unless the port is forced. */
export async function startServer(home: string, cfg: Config, bins: Binaries, runAs: RunAs | undefined, forced: number | undefined): Promise<Config> {
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

/** True once the server answers, false if the postmaster exits first. */
export async function waitReady(port: number, pid: number, cfg: Config, password: string): Promise<boolean> {
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

/** Under the home's lock: a fast shutdown of this home's postmaster, if it runs. */
export async function stopLocked(cfg: { dataDir: string; logFile: string }): Promise<boolean> {
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
