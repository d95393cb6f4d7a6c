/**
 * The environment is read in one place with the flags' own rules: a variable is refused
 * where its flag would be, named in one sentence, and `--help` lists every variable read.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, runCli } from '../helpers/cli.js';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();

describe('environment variables', () => {
  it.each([
    ['MAX_STOCK_RETRY_ATTEMPTS', '0', /Invalid MAX_STOCK_RETRY_ATTEMPTS "0": must be between 1 and 60000/],
    ['STOCK_RETRY_BACKOFF_MS', '-5', /Invalid STOCK_RETRY_BACKOFF_MS "-5": must be between 0 and 60000/],
    ['PAYMENT_TIMEOUT_MINUTES', '0', /PAYMENT_TIMEOUT_MINUTES "0": must be between 1s and 366d/],
    ['STOCKCTL_PREPARE', 'no', /STOCKCTL_PREPARE must be 1 or 0, got "no"/],
    ['STOCKCTL_EMBEDDED_PORT', '5432', /STOCKCTL_EMBEDDED_PORT must be a TCP port/],
    ['CHECK_LOW_STOCK', 'few', /CHECK_LOW_STOCK must be a whole number of 0 or more, or off, got "few"/],
  ])('%s=%s is refused as its flag would be (exit 2)', async (name, value, sentence) => {
    const res = await t.cli(['stock'], { env: { [name]: value } });
    expect(res.code, res.stderr).toBe(2);
    expect(res.stderr).toMatch(sentence);
  });

  it('the flag and its variable share one rule', async () => {
    const flag = await t.cli(['reserve', 'X:1', '--max-retries', '0']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/Invalid --max-retries "0": must be between 1 and 60000/);
  });

  it('STOCKCTL_PREPARE=0 runs every statement unprepared, with the same results', async () => {
    await t.cli(['product', 'add', 'PREP', '--name', 'Prep', '--stock', '3']);
    const res = await t.cli(['reserve', 'PREP:1', '--json'], { env: { STOCKCTL_PREPARE: '0' } });
    expect(res.code, res.stderr).toBe(0);
    const [row] = await t.sql`SELECT reserved_stock FROM stock_levels WHERE sku = 'PREP' AND location = 'default'`;
    expect(row.reserved_stock).toBe(1);
  });

  it('--help lists every variable src/cli/config.ts reads', async () => {
    const source = fs.readFileSync(path.join(REPO_ROOT, 'src/cli/config.ts'), 'utf8');
    const read = new Set([...source.matchAll(/set\(env, '([A-Z_]+)'\)|read\('([A-Z_]+)'/g)].map((m) => m[1] ?? m[2]));
    expect(read.size).toBeGreaterThan(10);
    const help = await runCli(['--help'], { databaseUrl: null });
    for (const name of read) expect(help.stdout, name).toContain(`  ${name} `);
  });
});
