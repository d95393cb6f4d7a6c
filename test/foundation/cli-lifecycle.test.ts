/**
 * A command always ends: an unreachable or silent server fails fast with exit 7 (safe to
 * retry), and Ctrl-C or SIGTERM close the pool and exit 130 / 143. A cron job that
 * hangs is the failure these guard against, so the bounds below are generous limits
 * for hang detection, not performance targets.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONNECT_TIMEOUT_S } from '../../src/db/connect.js';
import { ANSI_ESCAPE, runCli, runCliJson, startCli } from '../helpers/cli.js';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();

/** A refused connection fails at once; anything near 10 s is a hang. */
const HANG_LIMIT_MS = 10_000;
/** A silent server is given up on after CONNECT_TIMEOUT_S of waiting; far beyond that is a hang. */
const SILENT_LIMIT_MS = (CONNECT_TIMEOUT_S + 10) * 1000;

describe('a server that refuses connections', () => {
  const url = 'postgres://postgres:s3cret-pw@127.0.0.1:1/nowhere';

  it('exits 7 quickly, says what to check, and never prints the password', async () => {
    const res = await runCli(['stock'], { databaseUrl: url });
    expect(res.code, res.stderr).toBe(7);
    expect(res.ms).toBeLessThan(HANG_LIMIT_MS);
    expect(res.stdout).toBe('');
    expect(res.stderr).toMatch(/^error: .*refused the connection.*DATABASE_URL/);
    expect(res.stderr).not.toContain('s3cret-pw');
  });

  it('with --json: {"error": {"code": "database_unavailable"}} on stdout', async () => {
    const res = await runCliJson(['stock', 'set', 'TEE', '1'], { databaseUrl: url });
    expect(res.code).toBe(7);
    expect(res.stderr).toBe('');
    expect(res.json).toEqual({ error: { code: 'database_unavailable', message: expect.any(String) } });
    expect(res.stdout).not.toContain('s3cret-pw');
  });

  it('migrate exits 7 too', async () => {
    const res = await runCli(['migrate'], { databaseUrl: url });
    expect(res.code, res.stderr).toBe(7);
    expect(res.ms).toBeLessThan(HANG_LIMIT_MS);
    expect(res.stderr).not.toContain('s3cret-pw');
  });
});

describe('a server that accepts TCP connections and never answers', () => {
  let server: net.Server;
  const sockets = new Set<net.Socket>();
  let url = '';

  beforeAll(async () => {
    server = net.createServer((socket) => {
      sockets.add(socket); // accept, read nothing, say nothing
      socket.on('error', () => {});
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `postgres://postgres@127.0.0.1:${(server.address() as net.AddressInfo).port}/silent`;
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  it('every command gives up with exit 7 instead of hanging', async () => {
    const commands = [['stock'], ['stock', '--json'], ['product', 'add', 'TEE', '--name', 'T'], ['migrate']];
    const results = await Promise.all(commands.map((args) => runCli(args, { databaseUrl: url, timeoutMs: SILENT_LIMIT_MS + 30_000 })));
    results.forEach((res, i) => {
      const what = `stockctl ${commands[i].join(' ')} took ${res.ms} ms\nstdout: ${res.stdout}\nstderr: ${res.stderr}`;
      expect(res.timedOut, what).toBe(false);
      expect(res.code, what).toBe(7);
      expect(res.ms, what).toBeLessThan(SILENT_LIMIT_MS);
    });
    // Our own deadline for the first connection answers (see connect.ts), before the driver's.
    expect(results[0].stderr).toMatch(new RegExp(`^error: The database did not answer a connection attempt within ${CONNECT_TIMEOUT_S} s`));
    expect(JSON.parse(results[1].stdout)).toEqual({
      error: { code: 'timeout', message: expect.stringContaining('did not answer a connection attempt') },
    });
  }, 90_000);
});

describe('a server that said it is full, then answers a connection slowly', () => {
  /** The ErrorResponse a full server sends to a new connection. */
  function tooManyClients(): Buffer {
    const fields = Buffer.from('SFATAL\0VFATAL\0C53300\0Msorry, too many clients already\0\0');
    const head = Buffer.alloc(5);
    head.write('E');
    head.writeInt32BE(fields.length + 4, 1);
    return Buffer.concat([head, fields]);
  }

  it('is waited on (it is there, only busy), not taken for a silent server', async () => {
    // Through a proxy: the first connection is told "too many clients", the second is
    // accepted and left without an answer past the connect deadline, the third gets through.
    const target = new URL(t.url);
    const sockets = new Set<net.Socket>();
    let connections = 0;
    const proxy = net.createServer((client) => {
      sockets.add(client);
      client.on('error', () => {});
      connections += 1;
      if (connections === 1) {
        client.once('data', () => client.end(tooManyClients()));
      } else if (connections > 2) {
        const upstream = net.connect(Number(target.port || 5432), target.hostname);
        sockets.add(upstream);
        upstream.on('error', () => client.destroy());
        client.pipe(upstream).pipe(client);
      }
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const via = new URL(t.url);
    via.host = `127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
    try {
      const res = await runCliJson(['stock', '--json'], { databaseUrl: via.toString(), timeoutMs: 60_000 });
      expect(res.code, res.stderr).toBe(0);
      expect(res.json).toMatchObject({ items: expect.any(Array) });
      expect(connections).toBe(3);
      expect(res.ms).toBeGreaterThanOrEqual(CONNECT_TIMEOUT_S * 1000 - 500);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    }
  }, 60_000);
});

describe('stock --watch', () => {
  it.concurrent.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('stops on %s and exits %i after closing its connections', async (signal, exitCode) => {
    const watch = startCli(['stock', '--watch'], { databaseUrl: t.url, timeoutMs: 30_000 });
    await watch.waitForStdout(/Ctrl-C to stop/);
    watch.child.kill(signal);
    const res = await watch.result;
    expect(res.timedOut).toBe(false);
    expect(res.signal).toBeNull();
    expect(res.code, res.stderr).toBe(exitCode);
    expect(res.stderr).toBe('');
    expect(res.stdout).not.toMatch(ANSI_ESCAPE); // no screen clearing into a pipe
    // The pool was closed: no session of this process is left on the server
    // (useTestDatabase's drop fails the file otherwise).
  });
});
