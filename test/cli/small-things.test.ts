/**
 * Small things a careful user meets (issue 16): each is one line of behaviour, asserted as
 * the user sees it (stdout, stderr, exit code), or one sentence the README must say.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { connectHttpTarget } from '../../src/loadtest/http.js';
import { REPO_ROOT, runCli } from '../helpers/cli.js';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();
const README = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
/** The README as one line per paragraph, so that a sentence can be found across its line breaks. */
const readme = README.replace(/\n(?!\n)/g, ' ');
/** Operations (docs/operations.md) has the service units the README points to. */
const OPERATIONS = fs.readFileSync(path.join(REPO_ROOT, 'docs/operations.md'), 'utf8');
const operations = OPERATIONS.replace(/\n(?!\n)/g, ' ');
const noDb = { databaseUrl: null };

describe('"did you mean" suggestions', () => {
  it.each([
    [['resrve', 'TEE:1'], "unknown command 'resrve' (did you mean reserve?)"],
    [['orders', 'lst'], "unknown command 'lst' (did you mean list?)"],
    [['reserve', '--tll', '5m', 'TEE:1'], "unknown option '--tll' (did you mean --ttl?)"],
  ])('%j says it on one line, in text and in --json (exit 2)', async (args, said) => {
    const text = await runCli(args, noDb);
    expect(text).toMatchObject({ code: 2, stdout: '', stderr: `error: ${said}\n(run with --help for usage)\n` });
    const json = await runCli(['--json', ...args], noDb);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout)).toEqual({ error: { code: 'usage', message: `${said.charAt(0).toUpperCase()}${said.slice(1)}.` } });
  });
});

describe('help', () => {
  it.each([
    [['help'], 'Usage: stockctl [options] [command]'],
    [['help', 'orders'], 'Usage: stockctl orders [options] [command]'],
    [['orders', 'help', 'list'], 'Usage: stockctl orders list [options]'],
    [['--json', 'help'], 'Usage: stockctl [options] [command]'],
    [['--json', '--help'], 'Usage: stockctl [options] [command]'],
  ])('%j prints the help as text on stdout and exits 0', async (args, usage) => {
    const res = await runCli(args, noDb);
    expect(res).toMatchObject({ code: 0, stderr: '' });
    expect(res.stdout.startsWith(`${usage}\n`)).toBe(true);
  });

  it('a group named without a subcommand is still a usage error (exit 2)', async () => {
    const res = await runCli(['--json', 'orders'], noDb);
    expect(res.code).toBe(2);
    expect(JSON.parse(res.stdout)).toEqual({ error: { code: 'usage', message: 'Name a command: run stockctl orders --help to list them.' } });
  });

  it('help and the README say things in their own words, never "SPEC section N"', async () => {
    const [main, serve] = await Promise.all([runCli(['--help'], noDb), runCli(['serve', '--help'], noDb)]);
    expect(main.code).toBe(0);
    expect(serve.code).toBe(0);
    expect(main.stdout + serve.stdout + README).not.toMatch(/SPEC/);
    expect(main.stdout).toMatch(/^ {2}serve \[options\] +the order API over HTTP for a shop's checkout/m);
  });

  it('--help and the README list STOCKCTL_TOKEN, which loadtest --url reads', async () => {
    const res = await runCli(['--help'], noDb);
    expect(res.stdout).toMatch(/^ {2}STOCKCTL_TOKEN +loadtest --url: the API token/m);
    expect(README).toMatch(/^\| `STOCKCTL_TOKEN` \| \| `loadtest --url`: the API token when `--token` is not given \|$/m);
  });
});

describe('the README', () => {
  it('says JSON money is integer minor units (cents)', () => {
    expect(readme).toContain('Money in JSON (`total`, `price`, `unit_price`, `line_total`, here and over HTTP) is an integer in minor units, cents: `"total": 1999` is 19.99.');
  });

  it('runs the binary itself in its service examples (docs/operations.md), and says why', () => {
    const execs = [...OPERATIONS.matchAll(/^ExecStart=(\S+)/gm)].map((m) => m[1]);
    expect(execs).toEqual(['/usr/local/bin/stockctl', '/usr/local/bin/stockctl']);
    expect(operations).toContain("never `npx stockctl`: npm's wrapper does not pass SIGTERM on to node.");
  });
});

describe('lengths count characters (code points), not UTF-16 units', () => {
  it('a ref of 200 emoji is 200 characters: accepted; 201 are refused naming 201', async () => {
    expect((await t.cli(['product', 'add', 'LEN', '--name', 'Len', '--stock', '5'])).code).toBe(0);
    const ok = await t.cliJson<{ ref: string }>(['reserve', 'LEN:1', '--ref', '🦄'.repeat(200)]);
    expect(ok.stderr).toBe('');
    expect(ok).toMatchObject({ code: 0, json: { ref: '🦄'.repeat(200) } });
    const long = await t.cli(['reserve', 'LEN:1', '--ref', '🦄'.repeat(201)]);
    expect(long).toMatchObject({ code: 2, stdout: '', stderr: 'error: The ref is too long (201 characters; at most 200).\n' });
    // A name of 200 emoji too, and an echo cut at 40 characters never splits one.
    expect((await t.cli(['product', 'add', 'LEN2', '--name', '✨'.repeat(200)])).code).toBe(0);
    const echoed = await t.cli(['reserve', 'LEN:1', '--customer', `${'🦄'.repeat(45)}\n`]);
    expect(echoed.code).toBe(2);
    expect(echoed.stderr).toContain(`"${'🦄'.repeat(40)}…"`);
  });
});

describe('environment variables', () => {
  it('PAYMENT_TIMEOUT_MINUTES=1.5 is refused as not whole (exit 2), not as out of range', async () => {
    const res = await t.cli(['stock'], { env: { PAYMENT_TIMEOUT_MINUTES: '1.5' } });
    expect(res).toMatchObject({ code: 2, stdout: '', stderr: 'error: Invalid PAYMENT_TIMEOUT_MINUTES "1.5": must be a whole number of minutes, from 1 to 527040.\n' });
    const sweep = await t.cli(['stock'], { env: { CLEANUP_INTERVAL_MINUTES: '2.5' } });
    expect(sweep.stderr).toBe('error: Invalid CLEANUP_INTERVAL_MINUTES "2.5": must be a whole number of minutes, from 1 to 527040.\n');
  });

  it.each([
    ['card=15m,,bank_transfer=1d', 'entry 2 of 3 is empty ("card=15m,,bank_transfer=1d")'],
    ['card=15m,', 'entry 2 of 2 is empty ("card=15m,")'],
    ['card=15m, ,bank_transfer=1d', 'entry 2 of 3 is empty ("card=15m, ,bank_transfer=1d")'],
  ])('PAYMENT_TIMEOUTS=%s has an empty entry: refused naming it (exit 2)', async (value, said) => {
    const res = await t.cliJson<{ error: { code: string; message: string } }>(['stock'], { env: { PAYMENT_TIMEOUTS: value } });
    expect(res.code).toBe(2);
    expect(res.json.error).toEqual({ code: 'invalid_input', message: `PAYMENT_TIMEOUTS ${said}: remove the extra comma, or give the entry, like card=15m.` });
  });
});

describe('a ref that looks like the start of an order id', () => {
  it('is refused (exit 2), so it can never hide the order whose id starts so', async () => {
    expect((await t.cli(['product', 'add', 'REFX', '--name', 'Ref', '--stock', '5'])).code).toBe(0);
    const first = await t.cliJson<{ order_id: string }>(['reserve', 'REFX:1']);
    const prefix = first.json.order_id.slice(0, 8);
    for (const ref of [prefix, prefix.toUpperCase(), first.json.order_id.slice(0, 13)]) {
      const res = await t.cli(['reserve', 'REFX:1', '--ref', ref]);
      expect(res, ref).toMatchObject({
        code: 2,
        stdout: '',
        stderr: `error: Invalid ref "${ref}": it looks like the start of an order id (8 or more hex digits), which order lookups would also match; add a letter or a prefix that is not hex, like cart-${ref}.\n`,
      });
    }
    // The prefix still finds the first order.
    const paid = await t.cliJson<{ order_id: string }>(['pay', prefix]);
    expect(paid).toMatchObject({ code: 0, json: { order_id: first.json.order_id } });
    // Refs that merely contain hex, or are a whole UUID (as clients make idempotency keys), are fine.
    for (const ref of [`cart-${prefix}`, `${prefix.slice(0, 7)}`, 'a7c0d4e1-5f1b-4c1e-9a3b-2f6d8e9c0b1a']) {
      expect((await t.cli(['reserve', 'REFX:1', '--ref', ref])).code, ref).toBe(0);
    }
  });

  it('a whole order id wins over a ref spelled the same', async () => {
    expect((await t.cli(['product', 'add', 'REFY', '--name', 'Ref', '--stock', '5'])).code).toBe(0);
    const first = await t.cliJson<{ order_id: string }>(['reserve', 'REFY:1']);
    const second = await t.cliJson<{ order_id: string }>(['reserve', 'REFY:2', '--ref', first.json.order_id]);
    expect(second.code).toBe(0);
    for (let i = 0; i < 3; i++) {
      const shown = await t.cliJson<{ order_id: string }>(['orders', 'show', first.json.order_id]);
      expect(shown.json.order_id).toBe(first.json.order_id);
    }
  });
});

describe('loadtest --url: first_error always says something', () => {
  it('an answer without a problem document (a server shutting down) is named by its status and its own words', async () => {
    // A stand-in for `stockctl serve` that answers as Fastify does while it closes.
    let answer: { status: number; body: string } = { status: 503, body: '{"error":"Service Unavailable","message":"Service Unavailable","statusCode":503}' };
    const server = http.createServer((req, res) => {
      req.resume().on('end', () => {
        if (req.url === '/healthz') return res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok","strategy":"guarded"}');
        if (req.headers['content-length'] === '2') return res.writeHead(422, { 'content-type': 'application/json' }).end('{"code":"invalid_input"}');
        res.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const target = await connectHttpTarget(origin, 'stk_x', 1);
    const buy = () => target.reserve({ lines: [{ sku: 'X', quantity: 1 }], actor: 'test' } as never);
    try {
      await expect(buy()).rejects.toThrow(`The server at ${origin} answered 503: Service Unavailable`);
      answer = { status: 500, body: '' };
      await expect(buy()).rejects.toThrow(/^HTTP 500: the answer gave no reason$/);
      answer = { status: 500, body: '{"code":"internal_error","detail":"Internal error; the server log has the details."}' };
      await expect(buy()).rejects.toThrow(/^HTTP 500 internal_error: Internal error; the server log has the details\.$/);
    } finally {
      target.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
