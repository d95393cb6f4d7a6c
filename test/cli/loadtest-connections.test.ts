/**
 * `loadtest --concurrency` above what the server will take: the run sizes its pool within the
 * room it reads at the start (a server's max_connections, a role's or a database's CONNECTION
 * LIMIT), says so, and passes; with no room at all it is exit 7. A full server is never exit 6.
 *
 * The room is made small with a role of its own (CONNECTION LIMIT), so that the test never
 * takes the shared server's last connections from the other tests. (Behind a pooler clients
 * queue rather than being turned away: no cap, nothing to test.)
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();
const role = `stockctl_lt_${randomBytes(4).toString('hex')}`;

/** The test database's URL, as the limited role. */
const asRole = () => {
  const url = new URL(t.url);
  url.username = role;
  url.password = 'loadtest-pw';
  return url.toString();
};

describe.skipIf(Boolean(inject('testServer').pooler))('loadtest within the connections the server allows', () => {
  beforeAll(async () => {
    await t.sql.unsafe(`CREATE ROLE ${role} LOGIN PASSWORD 'loadtest-pw' CONNECTION LIMIT 8`);
    await t.sql.unsafe(`GRANT USAGE, CREATE ON SCHEMA public TO ${role}; GRANT USAGE ON SCHEMA drizzle TO ${role};
                        GRANT ALL ON ALL TABLES IN SCHEMA public TO ${role}; GRANT SELECT ON ALL TABLES IN SCHEMA drizzle TO ${role};
                        GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO ${role}`);
  });
  afterAll(async () => {
    await t.sql.unsafe(`DROP OWNED BY ${role}; DROP ROLE ${role}`);
  });

  it('--concurrency 100 with room for 8: uses what fits, says so, and passes (exit 0); the used connections are in --json', async () => {
    const res = await t.cliJson<{ ok: boolean; config: { concurrency: number; connections: number }; strategies: { successes: number; errors: number }[] }>(
      ['loadtest', '--buyers', '120', '--stock', '60', '--concurrency', '100', '--strategy', 'guarded'],
      { env: { DATABASE_URL: asRole() }, timeoutMs: 60_000 },
    );
    expect(res.code, res.stdout + res.stderr).toBe(0);
    // 8, less the checker's session (in use) and its second one.
    expect(res.json.config).toMatchObject({ concurrency: 100, connections: 6 });
    expect(res.json.strategies[0]).toMatchObject({ successes: 60, errors: 0 });
    expect(res.stderr).toMatch(
      /^Using 6 connections for the buyers, not 100: the server takes 7 more now \(max_connections \d+, less \d+ reserved for superusers and \d+ in use; the role's CONNECTION LIMIT 8, 1 in use\), and the run keeps 1 of those for its own checks\.\n$/,
    );
  });

  it('no room at all: exit 7, one sentence, nothing run', async () => {
    await t.sql.unsafe(`ALTER ROLE ${role} CONNECTION LIMIT 2`);
    const res = await t.cli(['loadtest', '--buyers', '10', '--strategy', 'all'], { env: { DATABASE_URL: asRole() }, timeoutMs: 60_000 });
    expect(res.code, res.stderr).toBe(7);
    expect(res.stdout).toBe('');
    expect(res.stderr).toMatch(/^error: The database has no room for the loadtest's connections \(.*the role's CONNECTION LIMIT 2, 1 in use; the run needs 4 at least\); retry when fewer sessions are connected\.\n$/);
    expect((await t.sql`SELECT count(*)::int AS n FROM products WHERE sku LIKE 'loadtest-%'`)[0].n).toBe(0);
  });
});
