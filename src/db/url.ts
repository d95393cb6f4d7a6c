/**
 * DATABASE_URL as a user writes it, read into what postgres.js needs. postgres.js takes
 * a URL string, but WHATWG URL parsing (which it uses) throws on a bad %-escape, cannot
 * hold two hosts, and postgres.js splits `[::1]:5432` on its first colon; libpq's
 * `?host=/run/postgresql` (a Unix socket) reaches the server as an unknown setting. So
 * we read the URL ourselves and hand postgres.js explicit hosts, ports or a socket path.
 * Anything malformed is the user's input (exit 2), named, never "retry later".
 */
import { InvalidInputError } from '../errors.js';

export interface ConnectionTarget {
  /** The URL for postgres.js, without the parts given as options below. */
  url: string;
  /** Explicit overrides for postgres.js: hosts and ports, or a Unix socket path. */
  options: { host?: string[]; port?: number[]; path?: string };
  /** The URL with any password masked, safe to print. */
  display: string;
}

const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-full'];
const USAGE = 'use postgres://user:password@host:5432/dbname';

function bad(what: string): never {
  throw new InvalidInputError(`DATABASE_URL (or --database-url) ${what}; ${USAGE}.`);
}

function decode(part: string, what: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return bad(`has a malformed %-escape in the ${what} (write a literal % as %25)`);
  }
}

/** `host`, `host:port`, `[v6]`, `[v6]:port` to a host and an optional port. */
function parseHost(raw: string): { host: string; port?: number } {
  const v6 = /^\[([0-9A-Fa-f:.]+(?:%[\w.]+)?)\](?::(\d*))?$/.exec(raw);
  const plain = /^([^:[\]]*)(?::(\d*))?$/.exec(raw);
  const match = v6 ?? plain;
  if (!match) return bad(`has a host it cannot read: "${raw}" (write an IPv6 address in brackets, [::1]:5432)`);
  const host = decode(match[1], 'host');
  if (match[2] === undefined || match[2] === '') return { host };
  const port = Number(match[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return bad(`has an invalid port "${match[2]}" (1 to 65535)`);
  return { host, port };
}

export function parseDatabaseUrl(raw: string): ConnectionTarget {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(raw);
  if (!scheme) return bad('is not a URL');
  if (scheme[1] !== 'postgres' && scheme[1] !== 'postgresql') return bad(`has the scheme "${scheme[1]}:", not postgres:`);
  const rest = raw.slice(scheme[0].length);
  const authorityEnd = rest.search(/[/?#]/);
  const authority = authorityEnd === -1 ? rest : rest.slice(0, authorityEnd);
  const tail = authorityEnd === -1 ? '' : rest.slice(authorityEnd);
  const at = authority.lastIndexOf('@');
  const userinfo = at === -1 ? '' : authority.slice(0, at);
  const hostList = at === -1 ? authority : authority.slice(at + 1);
  const colon = userinfo.indexOf(':');
  decode(colon === -1 ? userinfo : userinfo.slice(0, colon), 'user name');
  if (colon !== -1) decode(userinfo.slice(colon + 1), 'password');

  const queryStart = tail.indexOf('?');
  const pathPart = queryStart === -1 ? tail : tail.slice(0, queryStart);
  decode(pathPart.replace(/^\//, ''), 'database name');
  let params: URLSearchParams;
  try {
    params = new URLSearchParams(queryStart === -1 ? '' : tail.slice(queryStart + 1).replace(/#.*$/, ''));
  } catch {
    return bad('has a query string it cannot read');
  }

  const sslmode = params.get('sslmode') ?? params.get('ssl');
  if (sslmode === 'verify-ca') {
    // libpq's mode that checks the certificate but not the host name: the driver has none.
    bad('has sslmode=verify-ca, which stockctl cannot honour (its driver has no CA-only check); use verify-full, which also checks the host name, or require');
  } else if (sslmode !== null && !SSL_MODES.includes(sslmode)) {
    bad(`has sslmode=${sslmode}, which is not one of ${SSL_MODES.join(', ')}`);
  }

  const options: ConnectionTarget['options'] = {};
  const hosts = hostList === '' ? [] : hostList.split(',').map(parseHost);
  const socketDir = params.get('host');
  const portParam = params.get('port');
  let defaultPort: number | undefined;
  if (portParam !== null) {
    defaultPort = Number(portParam);
    if (!Number.isInteger(defaultPort) || defaultPort < 1 || defaultPort > 65535) bad(`has an invalid port "${portParam}" (1 to 65535)`);
  }
  if (socketDir !== null) {
    // libpq's form for a Unix socket: postgres:///db?host=/run/postgresql
    if (!socketDir.startsWith('/')) bad(`has host=${socketDir}; as a parameter, host must be a socket directory such as /var/run/postgresql`);
    options.path = `${socketDir.replace(/\/$/, '')}/.s.PGSQL.${defaultPort ?? hosts[0]?.port ?? 5432}`;
  } else if (hosts.some((h) => h.host.startsWith('/'))) {
    // postgres://%2Fvar%2Frun%2Fpostgresql/db, the URL-encoded socket directory
    options.path = `${hosts[0].host.replace(/\/$/, '')}/.s.PGSQL.${hosts[0].port ?? defaultPort ?? 5432}`;
  } else if (hosts.length > 1 || hosts.some((h) => h.host.includes(':')) || defaultPort !== undefined) {
    options.host = hosts.length ? hosts.map((h) => h.host) : ['localhost'];
    options.port = (hosts.length ? hosts : [{}]).map((h: { port?: number }) => h.port ?? defaultPort ?? 5432);
  }
  params.delete('host');
  params.delete('port');
  const query = params.toString();
  // postgres.js still reads user, password, database and settings from the URL; the host
  // part it sees is a placeholder whenever the options above name the hosts.
  const url = `postgres://${userinfo}${userinfo ? '@' : ''}${options.host || options.path ? 'localhost' : hostList}${pathPart}${query ? `?${query}` : ''}`;
  const display = `${scheme[0]}${colon === -1 ? userinfo : `${userinfo.slice(0, colon)}:***`}${at === -1 ? '' : '@'}${hostList}${tail}`;
  return { url, options, display };
}
