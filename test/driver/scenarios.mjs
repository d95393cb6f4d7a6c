#!/usr/bin/env node
/**
 * Faults for postgres.js, each run in a process of its own so that a crash of the driver
 * is seen as what it is (the process dies) rather than taking the test runner with it.
 *
 *   node test/driver/scenarios.mjs <scenario> <database url>
 *
 * A scenario prints one JSON line of what it saw and exits 0; the test judges the figures.
 * Every fault is real: backends terminated with pg_terminate_backend, connections reset
 * by a TCP proxy on 127.0.0.1, a server that times out an idle transaction.
 */
import net from 'node:net';
import postgres from 'postgres';

const [scenario, url] = process.argv.slice(2);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const quiet = { onnotice: () => {} };

/** A superuser-free admin connection of its own, for kills and checks. */
const admin = () => postgres(url, { max: 1, ...quiet, connection: { application_name: 'driver-test-admin' } });

/** Terminate every backend of this database whose application_name is `app`. */
async function kill(adminSql, app) {
  const rows = await adminSql`
    SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
     WHERE datname = current_database() AND application_name = ${app} AND pid <> pg_backend_pid()`;
  return rows.filter((r) => r.killed).length;
}

/** Within `ms`, or a rejection saying it hung. */
function within(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`hung: ${what} after ${ms} ms`)), ms))),
  ]).finally(() => clearTimeout(timer));
}

/** What a backend sends as it is terminated: FATAL 57P01. */
const terminated = (() => {
  const body = Buffer.from('SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0');
  const head = Buffer.alloc(5);
  head[0] = 0x45; // 'E', ErrorResponse
  head.writeUInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
})();

const codeOf = (err) => (err && typeof err === 'object' && 'code' in err ? String(err.code) : String(err));

/**
 * A TCP proxy on 127.0.0.1 to the database's server. `reset()` cuts every connection with
 * a TCP RST (the client sees ECONNRESET).
 * `onClientData(chunk, index, backend)` sees each chunk the client sends, numbered per
 * connection, and may stop it there: `backend.cut()` resets the connection, `backend.die(message)`
 * answers it with a last message from the server and closes.
 */
async function proxy({ onClientData } = {}) {

  const target = new URL(url);
  const pairs = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname === 'localhost' ? '127.0.0.1' : target.hostname);
    const pair = { client, upstream };
    pairs.add(pair);
    const cut = () => {
      pairs.delete(pair);
      client.resetAndDestroy();
      upstream.destroy();
    };
    // The backend dies with `message` (as pg_terminate_backend makes it), before the chunk reaches it.
    const die = (message) => {
      pairs.delete(pair);
      upstream.destroy();
      client.end(message);
    };
    let index = 0;
    client.on('data', (chunk) => {
      if (onClientData && onClientData(chunk, index++, { cut, die }) === false) return;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => client.write(chunk));
    client.on('error', () => {});
    upstream.on('error', () => {});
    client.on('close', () => (pairs.delete(pair), upstream.destroy()));
    upstream.on('close', () => (pairs.delete(pair), client.destroy()));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  const via = new URL(url);
  via.hostname = '127.0.0.1';
  via.port = String(port);
  const reset = () => {
    for (const pair of [...pairs]) {
      pairs.delete(pair);
      pair.client.resetAndDestroy();
      pair.upstream.destroy();
    }
  };
  return {
    url: via.toString(),
    reset,
    /** Refuse connections (ECONNREFUSED, as a server that is down) or take them again. */
    refuse(on) {
      if (on) server.close();
      else server.listen(port, '127.0.0.1');
    },
    close: () => new Promise((resolve) => (reset(), server.listening ? server.close(resolve) : resolve())),
  };
}

const scenarios = {
  /**
   * A pool of 6 runs short transactions from 12 workers while every one of its backends is
   * terminated every 200 ms for 3 s. Then the kills stop and 30 transactions in a row must
   * succeed: the pool recovered.
   */
  async 'pool-kill'() {
    const app = 'driver-test-pool';
    const sql = postgres(url, { max: 6, ...quiet, connection: { application_name: app } });
    const killer = admin();
    await sql`CREATE TABLE IF NOT EXISTS driver_pool (id serial PRIMARY KEY, n int NOT NULL)`;
    let running = true;
    let ok = 0;
    let failed = 0;
    const errors = {};
    const worker = async () => {
      while (running) {
        try {
          await sql.begin(async (tx) => {
            const [row] = await tx`INSERT INTO driver_pool (n) VALUES (1) RETURNING id`;
            await tx`SELECT pg_sleep(0.002)`;
            await tx`UPDATE driver_pool SET n = n + 1 WHERE id = ${row.id}`;
          });
          ok++;
        } catch (err) {
          failed++;
          errors[codeOf(err)] = (errors[codeOf(err)] ?? 0) + 1;
          await sleep(20);
        }
      }
    };
    const workers = Array.from({ length: 12 }, worker);
    let kills = 0;
    const until = Date.now() + 3000;
    while (Date.now() < until) {
      await sleep(200);
      kills += await kill(killer, app);
    }
    running = false;
    await within(Promise.all(workers), 15_000, 'the workers after the kills stopped');
    let after = 0;
    for (let i = 0; i < 30; i++) {
      await within(sql.begin((tx) => tx`INSERT INTO driver_pool (n) VALUES (2)`), 10_000, `transaction ${i + 1} after the kills`);
      after++;
    }
    // A transaction is whole or absent: every committed row went through its UPDATE.
    const [half] = await killer`SELECT count(*)::int AS n FROM driver_pool WHERE n = 1`;
    await sql.end({ timeout: 5 });
    await killer.end({ timeout: 5 });
    return { kills, ok, failed, errors, after, half_transactions: half.n };
  },

  /**
   * Inside a transaction whose backend is terminated, the callback catches the error and
   * goes on writing. Meanwhile another query has the pool's one connection reopened. The
   * late INSERT must be refused: it belongs to a transaction that no longer exists.
   */
  async 'closed-transaction-statement'() {
    const app = 'driver-test-closed-tx';
    const sql = postgres(url, { max: 1, ...quiet, connection: { application_name: app } });
    const killer = admin();
    await sql`CREATE TABLE IF NOT EXISTS driver_late (label text NOT NULL)`;
    await sql`DELETE FROM driver_late`;
    let caught = null;
    let late = null;
    let callbackDone;
    const callbackEnded = new Promise((resolve) => (callbackDone = resolve));
    const outcome = sql
      .begin(async (tx) => {
        await tx`INSERT INTO driver_late VALUES ('inside')`;
        try {
          await tx`SELECT pg_sleep(5)`;
        } catch (err) {
          caught = codeOf(err);
        }
        await sleep(500); // the connection reopens for the query queued behind us
        try {
          await tx`INSERT INTO driver_late VALUES ('late')`;
          late = 'ran';
        } catch (err) {
          late = codeOf(err);
        }
        callbackDone();
      })
      .then(() => 'committed', (err) => codeOf(err));
    await sleep(200);
    const queued = sql`SELECT 1 AS one`.then(() => 'ok', (err) => codeOf(err));
    await kill(killer, app);
    const result = await within(outcome, 10_000, 'the transaction after its backend was terminated');
    const other = await within(queued, 10_000, 'the query queued behind the transaction');
    await within(callbackEnded, 10_000, 'the callback');
    await sleep(300);
    const rows = await killer`SELECT label FROM driver_late ORDER BY label`;
    const again = await within(sql`SELECT 1 AS one`, 10_000, 'a query on the reopened connection');
    await sql.end({ timeout: 5 });
    await killer.end({ timeout: 5 });
    return { result, caught, late, queued: other, committed: rows.map((r) => r.label), again: again[0].one };
  },

  /**
   * A TCP reset (ECONNRESET) mid-transaction, while the callback is between statements.
   * The transaction is rejected, not hung; its next statement is refused, never run on the
   * connection that the pool opens next for the query queued behind it.
   */
  async 'reset-mid-transaction'() {
    const cutter = await proxy();
    const sql = postgres(cutter.url, { max: 1, ...quiet, connection: { application_name: 'driver-test-reset' } });
    await sql`CREATE TABLE IF NOT EXISTS driver_reset (label text NOT NULL)`;
    await sql`DELETE FROM driver_reset`;
    let late = null;
    let callbackDone;
    const callbackEnded = new Promise((resolve) => (callbackDone = resolve));
    const outcome = sql
      .begin(async (tx) => {
        await tx`INSERT INTO driver_reset VALUES ('inside')`;
        cutter.reset();
        await sleep(400);
        try {
          await tx`INSERT INTO driver_reset VALUES ('after')`;
          late = 'ran';
        } catch (err) {
          late = codeOf(err);
        }
        callbackDone();
      })
      .then(() => 'committed', (err) => codeOf(err));
    await sleep(50);
    const queued = sql`SELECT 1 AS one`.then(() => 'ok', (err) => codeOf(err));
    const result = await within(outcome, 10_000, 'the transaction after a TCP reset');
    const other = await within(queued, 10_000, 'the query queued behind it');
    await within(callbackEnded, 10_000, 'the callback');
    await sleep(300);
    const rows = await within(sql`SELECT label FROM driver_reset ORDER BY label`, 10_000, 'a query after the reset');
    await sql.end({ timeout: 5 });
    await cutter.close();
    return { result, late, queued: other, committed: rows.map((r) => r.label) };
  },

  /**
   * A reset while connecting, just after the startup handshake, when postgres.js asks the
   * server for its array types. The query that wanted the connection fails; the process
   * lives on and the next query connects.
   */
  async 'reset-while-connecting'() {
    let armed = true;
    const cutter = await proxy({
      onClientData(chunk, index, backend) {
        // chunk 0 is the startup message; the first one after it is the array-types query
        if (armed && index === 1) {
          armed = false;
          backend.cut();
          return false;
        }
        return true;
      },
    });
    const sql = postgres(cutter.url, { max: 1, ...quiet, connection: { application_name: 'driver-test-connect' } });
    const first = await within(
      sql`SELECT 1 AS one`.then(() => 'ok', (err) => codeOf(err)),
      10_000,
      'the first query, whose connection was reset while connecting',
    );
    await sleep(300);
    const [row] = await within(sql`SELECT 2 AS two`, 10_000, 'the next query');
    await sql.end({ timeout: 5 });
    await cutter.close();
    return { first, next: row.two };
  },

  /**
   * The server ends a transaction left idle (idle_in_transaction_session_timeout) while the
   * callback is stalled; the callback then writes. Nothing of it may be committed.
   */
  async 'idle-in-transaction-timeout'() {
    const sql = postgres(url, {
      max: 1,
      ...quiet,
      connection: { application_name: 'driver-test-idle', idle_in_transaction_session_timeout: '300' },
    });
    const check = admin();
    await sql`CREATE TABLE IF NOT EXISTS driver_idle (label text NOT NULL)`;
    await sql`DELETE FROM driver_idle`;
    let late = null;
    let callbackDone;
    const callbackEnded = new Promise((resolve) => (callbackDone = resolve));
    const outcome = sql
      .begin(async (tx) => {
        await tx`INSERT INTO driver_idle VALUES ('inside')`;
        await sleep(1200); // stalled: the server gives up on us after 300 ms
        try {
          await tx`INSERT INTO driver_idle VALUES ('late')`;
          late = 'ran';
        } catch (err) {
          late = codeOf(err);
        }
        callbackDone();
      })
      .then(() => 'committed', (err) => codeOf(err));
    await sleep(600);
    const queued = sql`SELECT 1 AS one`.then(() => 'ok', (err) => codeOf(err));
    const result = await within(outcome, 10_000, 'the timed-out transaction');
    const other = await within(queued, 10_000, 'the query queued behind it');
    await within(callbackEnded, 10_000, 'the callback');
    await sleep(300);
    const rows = await check`SELECT label FROM driver_idle ORDER BY label`;
    await sql.end({ timeout: 5 });
    await check.end({ timeout: 5 });
    return { result, late, queued: other, committed: rows.map((r) => r.label) };
  },

  /**
   * LISTEN comes back after its backend is terminated: once while it sits idle, and once
   * while a second LISTEN is in flight (the backend's last word, 57P01, then arrives as the
   * answer to a query, and must not be handed to the next session's first one).
   */
  async 'listen-resubscribe'() {
    let dieOnSecondChannel = true;
    const cutter = await proxy({
      onClientData(chunk, _index, backend) {
        if (dieOnSecondChannel && chunk.includes('listen "driver_test_second"')) {
          dieOnSecondChannel = false;
          backend.die(terminated);
          return false;
        }
        return true;
      },
    });
    const sql = postgres(cutter.url, {
      max: 1,
      ...quiet,
      backoff: () => 0.2,
      connection: { application_name: 'driver-test-listen' },
    });
    const sender = admin();
    const received = [];
    let listens = 0;
    await within(
      sql.listen('driver_test_channel', (payload) => received.push(payload), () => listens++),
      10_000,
      'the first LISTEN',
    );
    const waitFor = async (what, done) => {
      const deadline = Date.now() + 10_000;
      while (!done() && Date.now() < deadline) await sleep(50);
      return done();
    };
    // 1. killed while idle
    const [{ n: killed }] = await sender`
      SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
       WHERE datname = current_database() AND application_name = 'driver-test-listen'`;
    await waitFor('the second LISTEN', () => listens >= 2);
    await sender`SELECT pg_notify('driver_test_channel', 'after-kill')`;
    await waitFor('the notification after the kill', () => received.includes('after-kill'));
    // 2. killed while another LISTEN is in flight
    const second = await within(
      sql.listen('driver_test_second', () => {}).then(() => 'listening', (err) => codeOf(err)),
      10_000,
      'the LISTEN whose backend died',
    );
    await waitFor('the third LISTEN', () => listens >= 3);
    await sender`SELECT pg_notify('driver_test_channel', 'after-death')`;
    await waitFor('the notification after the death', () => received.includes('after-death'));
    await sql.end({ timeout: 5 });
    await sender.end({ timeout: 5 });
    await cutter.close();
    return { killed, listens, second, received };
  },
};

const run = scenarios[scenario];
if (!run) {
  console.error(`unknown scenario ${scenario}; one of: ${Object.keys(scenarios).join(', ')}`);
  process.exit(2);
}
run().then(
  (result) => {
    process.stdout.write(JSON.stringify(result) + '\n');
    process.exit(0);
  },
  (err) => {
    process.stdout.write(JSON.stringify({ scenario_error: String(err?.stack ?? err) }) + '\n');
    process.exit(3);
  },
);
