/**
 * What scripts and cron jobs rely on: exit codes, errors that name the bad value,
 * `--json` errors as one document on stdout, and silence apart from data when no
 * terminal is attached.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { ANSI_ESCAPE, runCli } from '../helpers/cli.js';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();

/** Everything a command could have written. */
async function snapshot() {
  const [state] = await t.sql`
    SELECT (SELECT count(*)::int FROM products) AS products,
           (SELECT count(*)::int FROM product_variants) AS variants,
           (SELECT count(*)::int FROM stock_movements) AS movements,
           (SELECT count(*)::int FROM stock_levels) AS levels,
           (SELECT coalesce(sum(stock_quantity), 0)::int FROM stock_levels) AS units,
           (SELECT coalesce(sum(incoming), 0)::int FROM stock_levels) AS incoming,
           (SELECT coalesce(sum(version), 0)::int FROM stock_levels) AS versions`;
  return state;
}

beforeAll(async () => {
  const res = await t.cli(['product', 'add', 'INV', '--name', 'Inventory', '--stock', '5']);
  expect(res, res.stderr).toMatchObject({ code: 0, stderr: '' });
});

describe('invalid input', () => {
  const cases: { args: string[]; names: string }[] = [
    { args: ['product', 'add', 'bad sku!', '--name', 'Bad'], names: '"bad sku!"' },
    { args: ['product', 'add', '-LEADING-DASH-', '--name', 'Bad'], names: '-LEADING-DASH-' },
    { args: ['product', 'add', 'PRICEY', '--name', 'Pricey', '--price', '1.999'], names: '"1.999"' },
    { args: ['product', 'add', 'NEWSTOCK', '--name', 'x', '--stock', 'lots'], names: '"lots"' },
    { args: ['product', 'add', 'NONAME'], names: '--name' },
    { args: ['stock', 'set', 'INV', 'abc'], names: '"abc"' },
    { args: ['stock', 'set', 'INV', '-1'], names: '"-1"' },
    { args: ['stock', 'set', 'INV', '2.5'], names: '"2.5"' },
    { args: ['stock', 'adjust', 'INV', 'abc'], names: '"abc"' },
    { args: ['stock', 'adjust', 'INV', '0'], names: '"0"' },
    { args: ['stock', 'INV', '--low', 'few'], names: '"few"' },
    { args: ['stock', 'adjust', 'INV', '+1', '--bogus'], names: '--bogus' },
    { args: ['frobnicate'], names: 'frobnicate' },
  ];

  it('exits 2 with an error on stderr naming the value, and writes nothing', async () => {
    const before = await snapshot();
    const results = await Promise.all(cases.map(({ args }) => t.cli(args)));
    results.forEach((res, i) => {
      const what = `stockctl ${cases[i].args.join(' ')}\nstderr: ${res.stderr}`;
      expect(res.code, what).toBe(2);
      expect(res.stdout, what).toBe('');
      expect(res.stderr, what).toMatch(/^error: /);
      expect(res.stderr, what).toContain(cases[i].names);
      expect(res.stderr, what).not.toMatch(/\n\s+at /); // no stack trace
    });
    expect(await snapshot()).toEqual(before);
  });

  it('with --json: exit 2, one JSON error document on stdout naming the value, nothing on stderr', async () => {
    const before = await snapshot();
    const results = await Promise.all(cases.map(({ args }) => t.cli([...args, '--json'])));
    results.forEach((res, i) => {
      const what = `stockctl ${cases[i].args.join(' ')} --json\nstdout: ${res.stdout}\nstderr: ${res.stderr}`;
      expect(res.code, what).toBe(2);
      expect(res.stderr, what).toBe('');
      const doc = JSON.parse(res.stdout) as { error: { code: string; message: string } };
      expect(Object.keys(doc), what).toEqual(['error']);
      expect(['invalid_input', 'usage'], what).toContain(doc.error.code);
      expect(doc.error.message, what).toContain(cases[i].names.replaceAll('"', ''));
    });
    expect(await snapshot()).toEqual(before);
  });
});

describe('not found', () => {
  const cases = [
    ['stock', 'NOPE'],
    ['stock', 'INV', 'NOPE'],
    ['stock', 'set', 'NOPE', '1'],
    ['stock', 'adjust', 'NOPE', '+1'],
    ['product', 'add', 'NOPE-M', '--name', 'Variant', '--parent', 'NOPE'],
  ];

  it('an unknown SKU exits 4 naming it, and writes nothing', async () => {
    const before = await snapshot();
    const results = await Promise.all(cases.map((args) => t.cli(args)));
    results.forEach((res, i) => {
      const what = `stockctl ${cases[i].join(' ')}\nstderr: ${res.stderr}`;
      expect(res.code, what).toBe(4);
      expect(res.stdout, what).toBe('');
      expect(res.stderr, what).toMatch(/^error: .*"NOPE"/);
    });
    const json = await t.cliJson(['stock', 'set', 'NOPE', '1']);
    expect(json).toMatchObject({ code: 4, stderr: '' });
    expect(json.json).toEqual({ error: { code: 'sku_not_found', message: expect.stringContaining('"NOPE"'), sku: 'NOPE' } });
    expect(await snapshot()).toEqual(before);
  });
});

describe('refused by state', () => {
  it('a SKU that already exists exits 5 and leaves the product as it was', async () => {
    const before = await snapshot();
    const res = await t.cli(['product', 'add', 'INV', '--name', 'Again', '--stock', '99']);
    expect(res.code).toBe(5);
    expect(res.stdout).toBe('');
    expect(res.stderr).toContain('INV');
    expect(await snapshot()).toEqual(before);
  });
});

describe('with no terminal attached', () => {
  it('successful commands print only data on stdout: no colour, no spinner, nothing on stderr', async () => {
    // A colour-capable TERM must not matter: stdout is a pipe.
    const env = { TERM: 'xterm-256color' };
    const commands = [
      ['migrate'],
      ['migrate', '--dry-run'],
      ['product', 'add', 'QUIET', '--name', 'Quiet', '--price', '5', '--stock', '2'],
      ['stock'],
      ['stock', 'QUIET', '--low', '10'],
      ['stock', 'set', 'QUIET', '4'],
      ['stock', 'adjust', 'QUIET', '-1'],
      ['stock', '--json'],
    ];
    for (const args of commands) {
      const res = await t.cli(args, { env });
      const what = `stockctl ${args.join(' ')}\nstdout: ${JSON.stringify(res.stdout)}\nstderr: ${res.stderr}`;
      expect(res.code, what).toBe(0);
      expect(res.stderr, what).toBe('');
      expect(res.stdout, what).not.toMatch(ANSI_ESCAPE);
      expect(res.stdout, what).not.toContain('\r'); // spinner frames redraw with \r
      expect(res.stdout, what).toMatch(/\S/);
    }
  });

  it('errors go to stderr without colour', async () => {
    const res = await t.cli(['stock', 'NOPE'], { env: { TERM: 'xterm-256color' } });
    expect(res.code).toBe(4);
    expect(res.stderr).not.toMatch(ANSI_ESCAPE);
  });
});

describe('--help', () => {
  // Help must not need a database: point at one that does not exist.
  const offline = { databaseUrl: 'postgres://postgres@127.0.0.1:1/nowhere' };

  it('exits 0 and shows examples and the environment, DATABASE_URL first', async () => {
    const res = await runCli(['--help'], offline);
    expect(res.code).toBe(0);
    expect(res.stderr).toBe('');
    expect(res.stdout).toMatch(/^Usage: stockctl /);
    expect(res.stdout).toContain('Examples:');
    expect(res.stdout).toContain('DATABASE_URL');
    expect(res.stdout).not.toMatch(ANSI_ESCAPE);
  });

  it('each command has its own help with examples', async () => {
    for (const args of [['stock', '--help'], ['product', 'add', '--help'], ['migrate', '--help']]) {
      const res = await runCli(args, offline);
      expect(res.code, args.join(' ')).toBe(0);
      expect(res.stderr).toBe('');
      expect(res.stdout).toContain(`Usage: stockctl ${args.slice(0, -1).join(' ')}`);
      expect(res.stdout).toContain('Examples:');
    }
  });
});

describe('--version', () => {
  it('prints the version; with --json, one JSON document holding it', async () => {
    const plain = await runCli(['--version'], { databaseUrl: null });
    expect(plain).toMatchObject({ code: 0, stderr: '', stdout: expect.stringMatching(/^\d+\.\d+\.\d+\n$/) });
    const json = await runCli(['--version', '--json'], { databaseUrl: null });
    expect(json).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(json.stdout)).toEqual({ version: plain.stdout.trim() });
  });
});

describe('--help', () => {
  it('the ops commands show examples; a crontab line is shown without a shell prompt', async () => {
    for (const command of ['sweep', 'verify', 'report', 'check']) {
      const res = await runCli([command, '--help'], { databaseUrl: null });
      expect(res.code, command).toBe(0);
      expect(res.stdout, command).toMatch(/\nExamples:\n {2}\$ stockctl /);
    }
    const sweep = await runCli(['sweep', '--help'], { databaseUrl: null });
    expect(sweep.stdout).toContain('\n  */5 * * * * DATABASE_URL=');
  });
});
