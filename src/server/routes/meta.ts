/** Health, readiness, metrics and the OpenAPI document. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { getTableName, is } from 'drizzle-orm';
import { getViewConfig, isPgSequence, PgTable, PgView } from 'drizzle-orm/pg-core';
import * as schema from '../../db/schema.js';
import { SQLSTATE, sqlState } from '../../db/errors.js';
import { metricFamilies, prometheusText } from '../../engine/report.js';
import { schemaState } from '../../db/migrate.js';
import { DatabaseUnavailableError } from '../../errors.js';
import { LOADTEST_SKU_PREFIX } from '../../loadtest/skus.js';
import { STOCKCTL_VERSION } from '../../version.js';
import type { ServerContext } from '../context.js';
import { HttpProblem, RETRY_AFTER_S } from '../problems.js';
import { METRICS_CONTENT_TYPE } from '../metrics.js';
import { ANY_ROUTE, AUTHENTICATED, Health, ok, okAs, problems, Ready, WITH_QUERY } from '../schemas.js';

/** Does a session of this pool take writes (not a standby, not a primary held read-only)? */
async function acceptsWrites(sql: ServerContext['sql']): Promise<boolean> {
  const [row] = await sql<{ read_only: string }[]>`SELECT current_setting('transaction_read_only') AS read_only`;
  return row.read_only === 'off';
}

/** Every table, view and sequence of the schema, by name: what the server reads and writes. */
const RELATIONS = Object.values(schema)
  .flatMap((x) =>
    is(x, PgTable) ? [getTableName(x)] : is(x, PgView) ? [getViewConfig(x).name] : isPgSequence(x) && x.seqName ? [x.seqName] : [],
  )
  .sort();

/**
 * One real query on every relation (a row of each, if it has one): a table dropped or
 * renamed by hand, or one this login may not read, makes the probe fail, where the
 * migrations journal alone would still say "migrated".
 */
async function readEveryRelation(sql: ServerContext['sql']): Promise<void> {
  const probe = RELATIONS.map((name) => `(SELECT 1 FROM "${name}" LIMIT 1)`).join(' UNION ALL ');
  try {
    await sql.unsafe(probe);
  } catch (err) {
    if (sqlState(err) !== SQLSTATE.undefinedTable && sqlState(err) !== SQLSTATE.insufficientPrivilege) throw err;
    const missing = await sql<{ name: string }[]>`SELECT name FROM unnest(${RELATIONS}::text[]) AS name WHERE to_regclass(quote_ident(name)) IS NULL ORDER BY name`;
    const names = missing.map((m) => m.name);
    if (names.length === 0) {
      throw new DatabaseUnavailableError('This login may not read every table of the schema; grant it SELECT on every table and sequence of the schema (or connect as the role that migrated it) and retry.', 'schema_not_readable');
    }
    throw new DatabaseUnavailableError(
      `The database is missing ${names.length === 1 ? 'the table' : 'the tables'} ${names.join(', ')} though its migrations are applied (dropped by hand?); restore it, or migrate a fresh database.`,
      'schema_incomplete',
    );
  }
}

/** A readiness probe answers quickly, database or not. */
const READY_TIMEOUT_MS = 2000;

const PUBLIC: [] = [];

export const metaRoutes: FastifyPluginAsyncTypebox<ServerContext> = async (app, ctx) => {
  app.get(
    '/healthz',
    {
      schema: {
        tags: ['meta'],
        operationId: 'getHealth',
        summary: 'The process is alive (no database check)',
        security: PUBLIC,
        response: { 200: ok(Health, 'alive'), ...problems(...WITH_QUERY, ...ANY_ROUTE) },
      },
    },
    async () => ({ status: 'ok' as const, strategy: ctx.strategy, version: STOCKCTL_VERSION }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['meta'],
        operationId: 'getReadiness',
        summary: 'Ready for traffic: the database reachable, taking writes, migrated, every table readable; 503 from the moment the server begins to stop',
        security: PUBLIC,
        response: { 200: ok(Ready, 'ready'), ...problems(...WITH_QUERY, ...ANY_ROUTE) },
      },
    },
    async () => {
      // Normally refused by the app's drain hook already; a probe that got in just before is told too.
      if (ctx.draining()) {
        throw new HttpProblem(503, 'shutting_down', 'The server is shutting down.', {}, { 'retry-after': String(RETRY_AFTER_S) });
      }
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new DatabaseUnavailableError(`The database did not answer within ${READY_TIMEOUT_MS} ms.`)), READY_TIMEOUT_MS);
      });
      try {
        const [state, writable] = await Promise.race([Promise.all([schemaState(ctx.sql), acceptsWrites(ctx.sql)]), timeout]);
        if (!writable) {
          // Mid-failover a promoted node stays read-only for a few seconds: not ready to take orders.
          throw new DatabaseUnavailableError('The database is read-only (a standby, or a new primary not yet taking writes after a failover).');
        }
        if (!state.migrated) {
          throw new DatabaseUnavailableError(
            `The database schema is not migrated (${state.applied} of ${state.expected} migrations applied); run \`stockctl migrate\`.`,
            'not_migrated',
          );
        }
        await Promise.race([readEveryRelation(ctx.sql), timeout]);
        return { status: 'ready' as const, migrations: { applied: state.applied, expected: state.expected }, tables: RELATIONS.length };
      } finally {
        clearTimeout(timer);
      }
    },
  );

  app.get(
    '/metrics',
    {
      onRequest: ctx.requireRole('read'),
      schema: {
        tags: ['meta'],
        operationId: 'getMetrics',
        summary: 'Prometheus metrics: the database figures of `report --format prometheus`, then the server\'s own (HTTP requests, event streams)',
        security: [{ bearer: [] }],
        response: { 200: okAs('text/plain; version=0.0.4', 'the Prometheus text format, version 0.0.4'), ...problems(...AUTHENTICATED, ...WITH_QUERY) },
      },
    },
    async (_request, reply) => {
      const families = await metricFamilies(ctx.db, { windowSeconds: 3600, maxSkus: ctx.metricsMaxSkus, exceptSkuPrefixes: [LOADTEST_SKU_PREFIX] });
      const own = await ctx.metrics.registry.metrics();
      return reply.type(METRICS_CONTENT_TYPE).send(`${prometheusText(families)}\n${own}`);
    },
  );

  app.get(
    '/openapi.json',
    {
      schema: {
        tags: ['meta'],
        operationId: 'getOpenApiDocument',
        summary: 'This OpenAPI 3 document, generated from the route schemas',
        security: PUBLIC,
        response: { 200: ok(Type.Object({}, { additionalProperties: true }), 'the OpenAPI 3.0 document'), ...problems(...WITH_QUERY, ...ANY_ROUTE) },
      },
    },
    async () => app.swagger(),
  );
};
