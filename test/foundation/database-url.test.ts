/**
 * DATABASE_URL as users write it: a malformed one is their input (exit 2, naming what is
 * wrong), never "Internal error" nor "retry later"; the forms libpq accepts for a Unix
 * socket and several hosts work.
 */
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseDatabaseUrl } from '../../src/db/url.js';
import { runCli } from '../helpers/cli.js';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();

describe('a malformed DATABASE_URL', () => {
  const cases: [string, RegExp][] = [
    ['postgres://u:p%ZZw@h/x', /malformed %-escape in the password/],
    ['postgres://u@h/x%E0%A4%A', /malformed %-escape in the database name/],
    ['postgres://postgres@127.0.0.1/test?sslmode=bogus', /sslmode=bogus, which is not one of disable, allow, prefer, require, verify-full/],
    ['postgres://postgres@127.0.0.1/test?sslmode=verify-ca', /sslmode=verify-ca, which stockctl cannot honour .*; use verify-full, which also checks the host name, or require/],
    ['postgres://postgres@127.0.0.1:99999/test', /invalid port "99999"/],
    ['postgres://postgres@::1/test', /host it cannot read: "::1" \(write an IPv6 address in brackets/],
    ['mysql://root@localhost/shop', /scheme "mysql:", not postgres:/],
    ['localhost:5432/shop', /is not a URL/],
  ];

  it.each(cases)('%s is exit 2, naming what is wrong', async (url, names) => {
    const res = await runCli(['stock'], { databaseUrl: url });
    expect(res.code, res.stderr).toBe(2);
    expect(res.stderr).toMatch(names);
    expect(res.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    expect(res.stderr).not.toMatch(/Internal error|retry/);
  });

  it('a setting the server does not know, in the query string, is exit 2 naming it', async () => {
    const url = new URL(t.url);
    url.searchParams.set('statement_timout', '5s');
    const res = await runCli(['stock'], { databaseUrl: url.toString() });
    expect(res.code, res.stderr).toBe(2);
    expect(res.stderr).toMatch(/parameter the server does not know: unrecognized configuration parameter "statement_timout"/);
  });

  it('never prints a password', async () => {
    const res = await runCli(['stock'], { databaseUrl: 'postgres://u:s3cret@127.0.0.1:1/x' });
    expect(res.code).toBe(7);
    expect(res.stderr).toContain('postgres://u:***@127.0.0.1:1/x');
    expect(res.stderr).not.toContain('s3cret');
  });
});

describe('the forms libpq accepts', () => {
  it('reads a Unix socket directory, several hosts and an IPv6 host into explicit options', () => {
    expect(parseDatabaseUrl('postgres:///shop?host=/var/run/postgresql&user=app').options).toEqual({
      path: '/var/run/postgresql/.s.PGSQL.5432',
    });
    expect(parseDatabaseUrl('postgres://app@%2Ftmp:5433/shop').options).toEqual({ path: '/tmp/.s.PGSQL.5433' });
    expect(parseDatabaseUrl('postgres://app@db1:5432,db2:5433,[::1]/shop').options).toEqual({
      host: ['db1', 'db2', '::1'],
      port: [5432, 5433, 5432],
    });
  });

  const socket = '/var/run/postgresql/.s.PGSQL.5432';
  const external = process.env.DATABASE_URL ? new URL(process.env.DATABASE_URL) : undefined;
  // The socket belongs to the server at 127.0.0.1:5432 (CI's external run); not the embedded one.
  it.runIf(external?.port === '5432' && fs.existsSync(socket))(
    'a Unix-socket URL connects',
    async () => {
      const url = `postgres:///${new URL(t.url).pathname.slice(1)}?host=/var/run/postgresql&user=${new URL(t.url).username || 'postgres'}`;
      const res = await runCli(['stock', '--json'], { databaseUrl: url });
      expect(res.code, res.stderr).toBe(0);
      expect(JSON.parse(res.stdout)).toEqual({ items: [] });
    },
  );
});
