/** The embedded server's TCP port on the loopback: the first free one from 54329, unless fixed. */
import net from 'node:net';
import { DatabaseUnavailableError } from '../../errors.js';
import { HOST } from './layout.js';

const FIRST_PORT = 54329;
const PORT_SEARCH_SPAN = 200;

export async function choosePort(from = FIRST_PORT): Promise<number> {
  const start = Math.max(from, FIRST_PORT);
  for (let port = start; port < start + PORT_SEARCH_SPAN && port <= 65535; port++) {
    if (await portFree(port)) return port;
  }
  throw new DatabaseUnavailableError(
    `No free TCP port found on ${HOST} between ${start} and ${start + PORT_SEARCH_SPAN - 1} for the embedded PostgreSQL server; set STOCKCTL_EMBEDDED_PORT.`,
  );
}

export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ host: HOST, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}
