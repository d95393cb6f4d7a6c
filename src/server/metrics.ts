/**
 * The server's own metrics (prom-client, a registry per app): HTTP requests by route and
 * status, their durations, event-stream clients and live stock's LISTEN reconnects. GET
 * /metrics serves them after the database's figures (src/engine/report.ts), which are
 * also `report --format prometheus`, the node_exporter textfile.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** prom-client's text format, as it names it (text/plain; version=0.0.4). */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Requests the router did not match are counted under this route, not under their URL (a label per URL would grow without bound). */
export const UNMATCHED_ROUTE = 'unmatched';

export interface ServerMetrics {
  registry: Registry;
  /** One answered request: its route (the pattern, `/orders/{id}`), status and seconds. */
  observeRequest(method: string, route: string, status: number, seconds: number): void;
  /** Live stock lost its LISTEN session (its streams reconnect, to a new one). */
  listenReconnected(): void;
}

export function createServerMetrics(opts: { sseClients: () => number }): ServerMetrics {
  const registry = new Registry();
  const requests = new Counter({
    name: 'stockctl_http_requests_total',
    help: 'HTTP requests answered, by method, route (the path pattern) and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const durations = new Histogram({
    name: 'stockctl_http_request_duration_seconds',
    help: 'Time from a request arriving to its answer, by method, route and status (an event stream counts until it opens).',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  new Gauge({
    name: 'stockctl_sse_clients',
    help: 'Open event streams (GET /stock/events).',
    registers: [registry],
    collect() {
      this.set(opts.sseClients());
    },
  });
  const reconnects = new Counter({
    name: 'stockctl_listen_reconnects_total',
    help: 'Times live stock lost its LISTEN session; its streams ended, and the next one listens on a new session.',
    registers: [registry],
  });
  return {
    registry,
    observeRequest(method, route, status, seconds) {
      const labels = { method, route, status: String(status) };
      requests.inc(labels);
      durations.observe(labels, seconds);
    },
    listenReconnected: () => reconnects.inc(),
  };
}

/** A Fastify route pattern as the OpenAPI document writes it: `/orders/:id` → `/orders/{id}`. */
export const routeLabel = (url: string | undefined) => (url ? url.replace(/:([A-Za-z0-9_]+)/g, '{$1}') : UNMATCHED_ROUTE);
