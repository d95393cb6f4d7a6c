/**
 * loadtest over HTTP: the same buyers, fired at a running `stockctl serve` through
 * keep-alive connections (no more than --concurrency of them), each answer turned back
 * into what reserveOrder would have returned or thrown, so that the run's counting and
 * its checks on the database are the very same.
 */
import http from 'node:http';
import https from 'node:https';
import { DatabaseUnavailableError, InsufficientStockError, InvalidInputError, StockctlError } from '../errors.js';
import { quote } from '../engine/input.js';
import { StockConflictError, type ReserveInput, type ReserveResult } from '../engine/orders.js';

export interface HttpTarget {
  /** The server's strategy (from /healthz): the one the run measures. */
  strategy: string;
  reserve(input: ReserveInput): Promise<ReserveResult>;
  close(): void;
}

interface Answer {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/**
 * What an answer said, to go after its status: ` code: detail`, else the server's own
 * message (a 503 while it shuts down has no problem document), never an empty ` :`.
 */
function saidBy(answer: Answer): string {
  const code = typeof answer.body?.code === 'string' && answer.body.code ? ` ${answer.body.code}` : '';
  const texts = [answer.body?.detail, answer.body?.message, answer.body?.error];
  const detail = texts.find((t): t is string => typeof t === 'string' && t.trim() !== '');
  return `${code}: ${detail ?? 'the answer gave no reason'}`;
}

export async function connectHttpTarget(baseUrl: string, token: string, connections: number): Promise<HttpTarget> {
  let base: URL;
  try {
    base = new URL(baseUrl);
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error('scheme');
  } catch {
    throw new InvalidInputError(`Invalid --url ${quote(baseUrl)}: use the server's address, like http://127.0.0.1:8080.`);
  }
  const client = base.protocol === 'https:' ? https : http;
  const agent = new client.Agent({ keepAlive: true, maxSockets: connections });
  const request = (method: string, path: string, body?: unknown) =>
    new Promise<Answer>((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = client.request(
        new URL(path, base),
        {
          method,
          agent,
          headers: {
            authorization: `Bearer ${token}`,
            ...(payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}),
          },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (c: string) => (text += c));
          res.on('end', () => {
            try {
              resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) });
            } catch {
              resolve({ status: res.statusCode ?? 0, body: { detail: text.slice(0, 200) } });
            }
          });
        },
      );
      req.setTimeout(60_000, () => req.destroy(new Error(`no answer from ${base.origin} within 60 s`)));
      // Without the socket's code: a server that went away is not the database going away
      // (which `loadtest --chaos` counts as a fault, see chaos.ts faultCode).
      req.on('error', (err) => reject(new Error(`${method} ${path}: ${err.message}`)));
      req.end(payload);
    });

  let health: Answer;
  try {
    health = await request('GET', '/healthz');
  } catch (err) {
    agent.destroy();
    throw new StockctlError(`Cannot reach the server at ${base.origin} (${(err as Error).message}); start it with \`stockctl serve\`.`, 7, 'server_unavailable');
  }
  const strategy = typeof health.body?.strategy === 'string' ? health.body.strategy : 'unknown';
  // The buyers' own route with an empty body: the role is checked before the body is, so
  // a token that may not order is a 401 or 403 here, and one that may is a 422 (no items),
  // and nothing is written either way.
  const probe = await request('POST', '/orders', {});
  if (probe.status === 401 || probe.status === 403) {
    agent.destroy();
    throw new InvalidInputError(`The server at ${base.origin} refused the --token (${probe.body?.detail ?? probe.status}); use a token of role shop or above.`);
  }

  return {
    strategy,
    async reserve(input) {
      const answer = await request('POST', '/orders', {
        items: input.lines.map((l) => ({ sku: l.sku, quantity: l.quantity })),
        ...(input.ttlSeconds ? { ttl: `${input.ttlSeconds}s` } : {}),
        ...(input.customerId ? { customer_id: input.customerId } : {}),
      });
      if (answer.status === 201 || answer.status === 200) return answer.body as ReserveResult;
      const code = answer.body?.code;
      if (code === 'insufficient_stock') throw new InsufficientStockError(answer.body.shortages);
      if (code === 'stock_conflict') throw new StockConflictError(answer.body.skus ?? [], answer.body.attempts ?? 0);
      // The server lost its database connection (a killed backend, with --chaos): exit 7's
      // error, as the engine itself would have thrown, marked as the server's answer.
      if (answer.status === 503) {
        throw new DatabaseUnavailableError(`The server at ${base.origin} answered 503${saidBy(answer)}`, code ?? 'database_unavailable', { status: 503 });
      }
      if (code === 'sku_not_found') {
        throw new Error(`the server at ${base.origin} does not see the loadtest's products: run loadtest with the server's DATABASE_URL`);
      }
      throw new Error(`HTTP ${answer.status}${saidBy(answer)}`);
    },
    close: () => agent.destroy(),
  };
}
