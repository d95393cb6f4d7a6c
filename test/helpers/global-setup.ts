/**
 * Once per `vitest run`: pick the PostgreSQL server, and build one migrated template
 * database that every test file clones (CREATE DATABASE ... TEMPLATE takes tens of
 * milliseconds, running the migrations takes far longer).
 *
 * Server: DATABASE_URL if set, else the embedded server under STOCKCTL_HOME (default
 * `.stockctl-test/` in the repository, never the user's own ~/.local/share/stockctl).
 * The teardown stops an embedded server that this setup started (one already running
 * is left alone), unless STOCKCTL_TEST_KEEP_DB=1 asks to keep it for inspection.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { runMigrations } from '../../src/db/migrate.js';
import { adminClient, createDatabase, databaseUrl, dropDatabase, type TestServer } from './pg.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  warnIfDistIsStale();

  let kind: TestServer['kind'];
  let adminUrl: string;
  let stopStartedServer = async () => {};
  if (process.env.DATABASE_URL) {
    kind = 'external';
    adminUrl = process.env.DATABASE_URL;
  } else {
    kind = 'embedded';
    process.env.STOCKCTL_HOME ||= path.join(ROOT, '.stockctl-test');
    const { ensureEmbedded, stopEmbedded } = await import('../../src/db/embedded/index.js');
    const { embeddedPlace } = await import('../../src/cli/config.js');
    const place = embeddedPlace();
    const server = await ensureEmbedded(place);
    adminUrl = server.url;
    if (server.started) stopStartedServer = () => stopOrKeep(server.home, () => stopEmbedded(place));
  }

  const template = `stockctl_tpl_${randomBytes(5).toString('hex')}`;
  const admin = adminClient(adminUrl);
  try {
    await createDatabase(admin, template);
    await runMigrations(databaseUrl(adminUrl, template));
    // Nobody may connect to the template from now on, so no session can ever block a clone.
    await admin`ALTER DATABASE ${admin(template)} WITH ALLOW_CONNECTIONS false`;
  } catch (err) {
    await dropDatabase(admin, template, { force: true }).catch(() => {});
    await admin.end({ timeout: 5 });
    await stopStartedServer().catch(() => {});
    throw new Error(`Could not prepare the test template database on ${redact(adminUrl)}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  await admin.end({ timeout: 5 });

  const pooler = process.env.STOCKCTL_TEST_POOLER || undefined;
  project.provide('testServer', { adminUrl, template, kind, pooler });

  return async () => {
    try {
      const sql = adminClient(adminUrl);
      try {
        await dropDatabase(sql, template, { force: true });
      } finally {
        await sql.end({ timeout: 5 });
      }
    } finally {
      await stopStartedServer();
    }
  };
}

/** Stop the embedded server this run started, or say where it was kept running. */
async function stopOrKeep(home: string, stopEmbedded: () => Promise<boolean>): Promise<void> {
  if (process.env.STOCKCTL_TEST_KEEP_DB === '1') {
    console.info(
      `Kept the embedded PostgreSQL under ${home} running (STOCKCTL_TEST_KEEP_DB=1); stop it with \`STOCKCTL_HOME=${home} stockctl db stop\`.`,
    );
    return;
  }
  await stopEmbedded();
}

function redact(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.toString();
}

/**
 * The CLI tests spawn bin/stockctl, which runs dist/. `npm test` builds first; a bare
 * `npx vitest` after editing src/ would test yesterday's build, so say so.
 */
function warnIfDistIsStale(): void {
  const main = path.join(ROOT, 'dist/cli/main.js');
  if (!fs.existsSync(main)) {
    throw new Error('dist/cli/main.js is missing: run `npm run build` first (`npm test` does it for you).');
  }
  // dist/ is one bundle of src/: stale when any source file is newer than its entry.
  const builtAt = fs.statSync(main).mtimeMs;
  const stale: string[] = [];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(file);
      else if (entry.name.endsWith('.ts') && fs.statSync(file).mtimeMs > builtAt) stale.push(path.relative(ROOT, file));
    }
  };
  walk(path.join(ROOT, 'src'));
  if (stale.length > 0) {
    console.warn(
      `warning: dist/ is older than ${stale.slice(0, 3).join(', ')}${stale.length > 3 ? ` and ${stale.length - 3} more` : ''}; ` +
        'the CLI tests run dist/ — run `npm run build` (or `npm test`).',
    );
  }
}
