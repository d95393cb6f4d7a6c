/** Health, readiness, metrics and the OpenAPI document. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { buildReport, prometheus } from '../../engine/report.js';
import { schemaState } from '../../db/migrate.js';
import { DatabaseUnavailableError } from '../../errors.js';
import { STOCKCTL_VERSION } from '../../version.js';
import type { ServerContext } from '../app.js';
import { Health, problems, Ready } from '../schemas.js';

/** Does a session of this pool take writes (not a standby, not a primary held read-only)? */
async function acceptsWrites(sql: ServerContext['sql']): Promise<boolean> {
  const [row] = await sql<{ read_only: string }[]>`SELECT current_setting('transaction_read_only') AS read_only`;
  return row.read_only === 'off';
}

/** A readiness probe answers quickly, database or not. */
const READY_TIMEOUT_MS = 2000;

export const metaRoutes: FastifyPluginAsyncTypebox<ServerContext> = async (app, ctx) => {
  app.get(
    '/healthz',
    { schema: { tags: ['meta'], summary: 'The process is alive (no database check)', response: { 200: Health } } },
    async () => ({ status: 'ok', strategy: ctx.strategy, version: STOCKCTL_VERSION }),
  );

  app.get(
    '/readyz',
    { schema: { tags: ['meta'], summary: 'The database is reachable and migrated', response: { 200: Ready, ...problems(503) } } },
    async () => {
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
        return { status: 'ready', migrations: { applied: state.applied, expected: state.expected } };
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
        summary: 'The `report --format prometheus` text (last hour)',
        security: [{ bearer: [] }],
        response: { 200: { type: 'string', description: 'Prometheus text format' }, ...problems(401, 403, 503) },
      },
    },
    async (_request, reply) => {
      const text = prometheus(await buildReport(ctx.db, 3600));
      return reply.type('text/plain; version=0.0.4; charset=utf-8').send(`${text}\n`);
    },
  );

  app.get(
    '/openapi.json',
    {
      schema: {
        tags: ['meta'],
        summary: 'This OpenAPI 3 document, generated from the route schemas',
        response: { 200: { type: 'object', additionalProperties: true } },
      },
    },
    async () => app.swagger(),
  );
};
