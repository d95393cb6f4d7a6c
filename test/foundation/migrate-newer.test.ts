/**
 * A database this stockctl must not touch: migrated by a newer stockctl (a migration in
 * drizzle.__drizzle_migrations that this build does not know), or changed by hand (an
 * applied migration whose recorded hash is not this build's). `migrate` refuses it
 * instead of saying "up to date", every other command refuses it at connect, and
 * `serve`'s /readyz answers 503: exit 7, one sentence saying which of the two it is.
 */
import { describe, expect, it } from 'vitest';
import { readJournal } from '../../src/db/migrate.js';
import { runCli, runCliJson } from '../helpers/cli.js';
import { useTestDatabase, type TestDatabase } from '../helpers/db.js';
import { api, startServer } from '../server/_server.js';

const t = useTestDatabase();
const journal = readJournal();

type ErrorDocument = { error: { code: string; message: string } };

/** What a newer stockctl leaves behind: one more migration, later than every known one. */
async function migratedByNewerStockctl(database: TestDatabase): Promise<void> {
  const later = Math.max(...journal.map((e) => e.when)) + 86_400_000;
  await database.sql`INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES (${'f'.repeat(64)}, ${later})`;
}

/** An applied migration whose recorded hash is not the one this build's file has. */
async function changedByHand(database: TestDatabase): Promise<void> {
  const when = journal[journal.length - 1].when;
  await database.sql`UPDATE drizzle.__drizzle_migrations SET hash = ${'0'.repeat(64)} WHERE created_at = ${when}`;
}

const cases = [
  { name: 'migrated by a newer stockctl', damage: migratedByNewerStockctl, code: 'schema_newer', sentence: /newer than this stockctl.*upgrade stockctl/ },
  { name: 'changed by hand (a hash differs)', damage: changedByHand, code: 'schema_changed', sentence: /changed by hand/ },
];

describe.each(cases)('a database $name', ({ damage, code, sentence }) => {
  it('is refused by `migrate` and `migrate --dry-run` (exit 7), never called up to date', async () => {
    const database = await t.createDatabase();
    await damage(database);
    const before = await database.sql`SELECT id, hash, created_at FROM drizzle.__drizzle_migrations ORDER BY id`;

    for (const args of [['migrate'], ['migrate', '--dry-run']]) {
      const human = await runCli(args, { databaseUrl: database.url });
      expect(human.code, human.stderr).toBe(7);
      expect(human.stdout).toBe('');
      expect(human.stderr).toMatch(sentence);
      expect(human.stderr).not.toMatch(/up to date/i);
      expect(human.stderr).not.toMatch(/\n\s+at /);
      expect(human.stderr.trim().split('\n')).toHaveLength(1);

      const json = await runCliJson<ErrorDocument>([...args, '--json'], { databaseUrl: database.url });
      expect(json.code).toBe(7);
      expect(json.stderr).toBe('');
      expect(json.json.error.code).toBe(code);
      expect(json.json.error.message).toMatch(sentence);
    }
    expect(await database.sql`SELECT id, hash, created_at FROM drizzle.__drizzle_migrations ORDER BY id`).toEqual(before);
  });

  it('is refused by every other command at connect (exit 7), and nothing is written', async () => {
    const database = await t.createDatabase();
    await damage(database);

    for (const args of [['stock'], ['product', 'add', 'NEWER-TEE', '--name', 'T-shirt', '--stock', '3'], ['orders', 'list']]) {
      const human = await runCli(args, { databaseUrl: database.url });
      expect(human.code, `stockctl ${args.join(' ')}: ${human.stderr}`).toBe(7);
      expect(human.stdout).toBe('');
      expect(human.stderr).toMatch(sentence);
      expect(human.stderr).not.toMatch(/\n\s+at /);

      const json = await runCliJson<ErrorDocument>(args, { databaseUrl: database.url });
      expect(json.code).toBe(7);
      expect(json.json.error.code).toBe(code);
    }
    expect(await database.sql`SELECT sku FROM products WHERE sku = 'NEWER-TEE'`).toEqual([]);
  });

  it('makes a running `serve` answer 503 on /readyz, and `serve` refuses to start on it', async () => {
    const database = await t.createDatabase();
    const server = await startServer(database.url);
    try {
      expect((await api(server, 'GET', '/readyz')).status).toBe(200);
      await damage(database);
      const notReady = await api(server, 'GET', '/readyz');
      expect(notReady.status, notReady.text).toBe(503);
      expect(notReady.body).toMatchObject({ code, status: 503 });
      expect(notReady.body.detail).toMatch(sentence);
    } finally {
      expect((await server.stop()).code).toBe(0);
    }

    const refused = await runCli(['serve', '--port', '0'], { databaseUrl: database.url });
    expect(refused.code, refused.stderr).toBe(7);
    expect(refused.stderr).toMatch(sentence);
  });
});

it('a database migrated by this stockctl passes: migrate says up to date, commands run', async () => {
  const database = await t.createDatabase();
  const migrate = await runCli(['migrate'], { databaseUrl: database.url });
  expect(migrate).toMatchObject({ code: 0, stderr: '' });
  expect(migrate.stdout).toBe(`Schema is up to date (${journal.length} migrations applied).\n`);
  expect((await runCli(['stock'], { databaseUrl: database.url })).code).toBe(0);
});
