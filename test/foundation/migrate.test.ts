/**
 * `stockctl migrate` as an operator meets it: on an empty database, twice, from several
 * hosts at once, as a dry run; and every other command refusing a database that was
 * never migrated instead of touching it.
 */
import { describe, expect, it } from 'vitest';
import { readJournal } from '../../src/db/migrate.js';
import { runCli, runCliJson, runCliTogether } from '../helpers/cli.js';
import { useTestDatabase, type TestDatabase } from '../helpers/db.js';

const t = useTestDatabase();
const journal = readJournal();
const TAGS = journal.map((e) => e.tag);

interface MigrateResult {
  dry_run: boolean;
  applied: string[];
  pending: string[];
  already_applied: string[];
}

async function recordedMigrations(database: TestDatabase): Promise<number[]> {
  const [{ exists }] = await database.sql`SELECT to_regclass('drizzle.__drizzle_migrations') IS NOT NULL AS exists`;
  if (!exists) return [];
  const rows = await database.sql<{ created_at: string }[]>`
    SELECT created_at FROM drizzle.__drizzle_migrations ORDER BY created_at`;
  return rows.map((r) => Number(r.created_at));
}

async function hasTable(database: TestDatabase, name: string): Promise<boolean> {
  const [{ exists }] = await database.sql`SELECT to_regclass(${name}) IS NOT NULL AS exists`;
  return exists as boolean;
}

describe('stockctl migrate', () => {
  it('migrates an empty database, and a second run applies nothing', async () => {
    const fresh = await t.createDatabase({ migrated: false });

    const first = await runCliJson<MigrateResult>(['migrate'], { databaseUrl: fresh.url });
    expect(first.code).toBe(0);
    expect(first.stderr).toBe('');
    expect(first.json).toEqual({ dry_run: false, applied: TAGS, pending: [], already_applied: [] });
    expect(await hasTable(fresh, 'public.products')).toBe(true);

    const second = await runCliJson<MigrateResult>(['migrate'], { databaseUrl: fresh.url });
    expect(second.code).toBe(0);
    expect(second.json).toEqual({ dry_run: false, applied: [], pending: [], already_applied: TAGS });

    const human = await runCli(['migrate'], { databaseUrl: fresh.url });
    expect(human).toMatchObject({ code: 0, stderr: '' });
    expect(human.stdout).toBe(`Schema is up to date (${TAGS.length} migrations applied).\n`);

    expect(await recordedMigrations(fresh)).toEqual(journal.map((e) => e.when));
  });

  it('--dry-run lists the pending migrations and changes nothing', async () => {
    const fresh = await t.createDatabase({ migrated: false });

    const dry = await runCliJson<MigrateResult>(['migrate', '--dry-run'], { databaseUrl: fresh.url });
    expect(dry.code).toBe(0);
    expect(dry.json).toEqual({ dry_run: true, applied: [], pending: TAGS, already_applied: [] });

    const human = await runCli(['migrate', '--dry-run'], { databaseUrl: fresh.url });
    expect(human).toMatchObject({ code: 0, stderr: '' });
    expect(human.stdout).toBe(`Would apply ${TAGS.length} migration(s):\n${TAGS.map((tag) => `  ${tag}\n`).join('')}`);

    expect(await hasTable(fresh, 'public.products')).toBe(false);
    expect(await hasTable(fresh, 'drizzle.__drizzle_migrations')).toBe(false);
  });

  it('five hosts migrating one empty database at once: all succeed, each migration runs once', async () => {
    const fresh = await t.createDatabase({ migrated: false });

    const results = await runCliTogether(
      Array.from({ length: 5 }, () => ({ args: ['migrate', '--json'], opts: { databaseUrl: fresh.url } })),
    );
    for (const r of results) {
      expect(r, r.stderr).toMatchObject({ code: 0, stderr: '' });
    }
    const plans = results.map((r) => JSON.parse(r.stdout) as MigrateResult);
    // Exactly one process applied the migrations; the others waited for it and found them applied.
    expect(plans.filter((p) => p.applied.length > 0).map((p) => p.applied)).toEqual([TAGS]);
    expect(plans.filter((p) => p.applied.length === 0)).toHaveLength(4);
    for (const plan of plans.filter((p) => p.applied.length === 0)) expect(plan.already_applied).toEqual(TAGS);

    expect(await recordedMigrations(fresh)).toEqual(journal.map((e) => e.when));
    expect(await hasTable(fresh, 'public.products')).toBe(true);
  });

  it('refuses to skip a migration that was never applied while a later one was (exit 7)', async () => {
    // The history a careless restore leaves: 0000 missing, something later present.
    const damaged = await t.createDatabase();
    const first = journal[0];
    const later = Math.max(...journal.map((e) => e.when)) + 60_000;
    await damaged.sql`DELETE FROM drizzle.__drizzle_migrations WHERE created_at = ${first.when}`;
    await damaged.sql`INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('later-migration', ${later})`;
    const recordedBefore = await recordedMigrations(damaged);

    const human = await runCli(['migrate'], { databaseUrl: damaged.url });
    expect(human.code, human.stderr).toBe(7);
    expect(human.stdout).toBe('');
    expect(human.stderr).toMatch(/refusing to skip/i);
    expect(human.stderr).toContain(first.tag);

    const json = await runCliJson<{ error: { code: string; message: string } }>(['migrate'], { databaseUrl: damaged.url });
    expect(json.code).toBe(7);
    expect(json.json.error.code).toBe('migration_skipped');
    expect(json.stderr).toBe('');

    // Nothing was applied or recorded.
    expect(await recordedMigrations(damaged)).toEqual(recordedBefore);
    expect(recordedBefore).toContain(later);
    expect(recordedBefore).not.toContain(first.when);
  });
});

describe('an external database that was never migrated', () => {
  const commands = [
    ['stock'],
    ['stock', 'set', 'TEE', '1'],
    ['stock', 'adjust', 'TEE', '+1'],
    ['product', 'add', 'TEE', '--name', 'T-shirt', '--stock', '3'],
  ];

  it('is refused by every command with exit 7, naming `stockctl migrate`, and left untouched', async () => {
    const empty = await t.createDatabase({ migrated: false });

    const human = await Promise.all(commands.map((args) => runCli(args, { databaseUrl: empty.url })));
    human.forEach((r, i) => {
      expect(r.code, `stockctl ${commands[i].join(' ')}: ${r.stderr}`).toBe(7);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain('stockctl migrate');
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    });

    const json = await Promise.all(commands.map((args) => runCliJson(args, { databaseUrl: empty.url })));
    json.forEach((r) => {
      expect(r.code).toBe(7);
      expect(r.stderr).toBe('');
      expect(r.json).toEqual({ error: { code: 'not_migrated', message: expect.stringContaining('stockctl migrate') } });
    });

    // stockctl never migrates an external database by itself.
    expect(await hasTable(empty, 'public.products')).toBe(false);
    expect(await hasTable(empty, 'drizzle.__drizzle_migrations')).toBe(false);
  });
});
