/**
 * Nothing waits forever, whatever sits between stockctl and PostgreSQL: a statement
 * stuck behind a lock is ended by the server's statement_timeout, a transaction left
 * idle is ended by the server, a server that stops answering mid-query is given up on by
 * the client, and a URL whose every host is down fails within the connect deadline.
 */
import net from 'node:net';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/client.js';
import { CONNECT_TIMEOUT_S, createClient, whenConnected } from '../../src/db/connect.js';
import { toDomainError } from '../../src/db/errors.js';
import { addProduct, changeStock, listStock } from '../../src/engine/catalogue.js';
import { runCli } from '../helpers/cli.js';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  await addProduct(t.db, { sku: 'HELD', name: 'Held', stock: 5, actor: 'test' });
});

describe('a statement held behind a lock', () => {
  it('ends with exit 7 and a sentence naming the statement timeout, not a hang', async () => {
    const holder = postgres(t.url, { max: 1, onnotice: () => {} });
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const held = holder.begin(async (tx) => {
      await tx`SELECT 1 FROM stock_levels WHERE sku = 'HELD' AND location = 'default' FOR NO KEY UPDATE`;
      await released;
    });
    try {
      await sleep(200);
      const res = await runCli(['reserve', 'HELD:1'], {
        databaseUrl: t.url,
        env: { STOCKCTL_STATEMENT_TIMEOUT: '2s' },
        timeoutMs: 30_000,
      });
      expect(res.timedOut).toBe(false);
      expect(res.code, res.stderr).toBe(7);
      expect(res.stderr).toMatch(/^error: A database statement ran longer than STOCKCTL_STATEMENT_TIMEOUT allows/);
      const json = await runCli(['reserve', 'HELD:1', '--json'], {
        databaseUrl: t.url,
        env: { STOCKCTL_STATEMENT_TIMEOUT: '1s' },
      });
      expect(json.code).toBe(7);
      expect(JSON.parse(json.stdout).error.code).toBe('timeout');
    } finally {
      release();
      await held;
      await holder.end();
    }
    const [row] = await t.sql`SELECT reserved_stock FROM stock_levels WHERE sku = 'HELD' AND location = 'default'`;
    expect(row.reserved_stock).toBe(0);
  });

  it('a bad STOCKCTL_STATEMENT_TIMEOUT is exit 2, naming it', async () => {
    const res = await runCli(['stock'], { databaseUrl: t.url, env: { STOCKCTL_STATEMENT_TIMEOUT: '0s' } });
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/STOCKCTL_STATEMENT_TIMEOUT must be a duration from 1s to 24h/);
  });
});

describe('a transaction left idle', () => {
  it('is ended by the server after the statement timeout', async () => {
    const database = await openDatabase({ url: t.url, application: 'stockctl-idle-test', statementTimeoutS: 1 });
    try {
      const outcome = await database.sql
        .begin(async (tx) => {
          await tx`SELECT 1`;
          await sleep(2500); // the client stalls mid-transaction
          await tx`SELECT 1`;
        })
        .then(
          () => 'committed',
          (err: { code?: string }) => err.code,
        );
      expect(outcome).not.toBe('committed');
      const idle = await t.sql`
        SELECT count(*)::int AS n FROM pg_stat_activity
         WHERE application_name = 'stockctl-idle-test' AND state LIKE 'idle in transaction%'`;
      expect(idle[0].n).toBe(0);
    } finally {
      await database.close();
    }
  });
});

describe('a server that stops answering mid-session', () => {
  let proxy: net.Server;
  let frozen = false;
  const sockets = new Set<net.Socket>();
  let url: string;

  beforeAll(async () => {
    const target = new URL(t.url);
    // Forwards to the real server until `frozen`; then swallows the server's answers,
    // as a stalled pooler or a dead network would.
    proxy = net.createServer((client) => {
      const upstream = net.connect(Number(target.port || 5432), target.hostname);
      sockets.add(client).add(upstream);
      client.on('data', (d) => upstream.write(d));
      upstream.on('data', (d) => {
        if (!frozen) client.write(d);
      });
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const via = new URL(t.url);
    via.host = `127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
    url = via.toString();
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => proxy.close(resolve));
  });

  it('gives up on the query with a timeout error instead of waiting forever', async () => {
    const database = await openDatabase({ url, application: 'stockctl-frozen-test', statementTimeoutS: 1 });
    try {
      frozen = true;
      const started = Date.now();
      const outcome = await database.sql`SELECT pg_sleep(0)`.then(
        () => 'answered',
        (err: { code?: string; exitCode?: number; message: string }) => err,
      );
      expect(outcome).toMatchObject({ code: 'timeout', exitCode: 7, message: expect.stringMatching(/did not answer a statement within/) });
      expect(Date.now() - started).toBeLessThan(60_000);
    } finally {
      frozen = false;
      for (const socket of sockets) socket.destroy();
      await database.sql.end({ timeout: 0 });
    }
  });

  it('engine statements and transactions (the query layer) get the same deadline', async () => {
    // One connection each, made before the freeze: each call waits on a frozen session.
    const open = () => openDatabase({ url, application: 'stockctl-frozen-engine-test', statementTimeoutS: 1, max: 1 });
    const [reader, changer] = await Promise.all([open(), open()]);
    try {
      frozen = true;
      const started = Date.now();
      const failure = (err: { code?: string; exitCode?: number }) => err;
      const [read, change] = await Promise.all([
        listStock(reader.db).then(() => 'answered', failure),
        changeStock(changer.db, { sku: 'HELD', delta: 1, actor: 'test' }).then(() => 'answered', failure),
      ]);
      expect(read).toMatchObject({ code: 'timeout', exitCode: 7 });
      // The transaction's BEGIN reached the server, which ends the idle transaction (and
      // with it the session) before the client's deadline: either way, exit 7, no hang.
      expect(toDomainError(change)).toMatchObject({ exitCode: 7 });
      expect(Date.now() - started).toBeLessThan(60_000);
    } finally {
      frozen = false;
      for (const socket of sockets) socket.destroy();
      await Promise.all([reader.sql.end({ timeout: 0 }), changer.sql.end({ timeout: 0 })]);
    }
  });
});

describe('a URL whose every host is down', () => {
  // postgres.js never settles such a connection (porsager/postgres#1174): we knock on
  // each host ourselves, so it fails as one closed host does, long before the deadline.
  it('fails at once with exit 7, saying the server refused the connection', async () => {
    const res = await runCli(['stock'], { databaseUrl: 'postgres://u:pw@127.0.0.1:1,127.0.0.1:2/db', timeoutMs: 60_000 });
    expect(res.timedOut).toBe(false);
    expect(res.code, res.stderr).toBe(7);
    expect(res.stderr).toMatch(/^error: The database at postgres:\/\/u:\*\*\*@127\.0\.0\.1:1,127\.0\.0\.1:2\/db refused the connection/);
    expect(res.ms).toBeLessThan(CONNECT_TIMEOUT_S * 1000);
  });

  it('a URL whose first host is down and second is up connects to the second', async () => {
    const up = new URL(t.url);
    // The second host keeps the real credentials: the embedded server asks for a password.
    const auth = up.password ? `${up.username}:${up.password}` : up.username;
    const url = `postgres://${auth}@127.0.0.1:1,${up.host}${up.pathname}`;
    const res = await runCli(['stock', '--json'], { databaseUrl: url, timeoutMs: 60_000 });
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ items: expect.any(Array) });
  });
});

describe('a machine too busy to run this process for a while', () => {
  // A hundred CLI processes started at once on two cores: a process may not run for
  // seconds while its server answers. When it runs again, the answer is read, not a timeout.
  it('is not taken for a server that did not answer', async () => {
    const sql = createClient(t.url, { max: 1 });
    try {
      await sql`SELECT 1`;
      const answer = whenConnected(async () => sql<{ n: number }[]>`SELECT 42 AS n`);
      // This process cannot run, past the connect deadline: its thread is blocked (no timer,
      // no I/O is handled) without spinning, so the other files' processes keep the cores.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, (CONNECT_TIMEOUT_S + 2) * 1000);
      await expect(answer).resolves.toEqual([{ n: 42 }]);
    } finally {
      await sql.end({ timeout: 0 });
    }
  }, 60_000);
});
