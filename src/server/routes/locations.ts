/** /locations: the warehouses and stores that hold stock, as `location list --json`. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { listLocations } from '../../engine/locations.js';
import type { ServerContext } from '../context.js';
import { AUTHENTICATED, LocationList, ok, problems, WITH_QUERY } from '../schemas.js';

const security = [{ bearer: [] }];

export const locationRoutes: FastifyPluginAsyncTypebox<ServerContext> = async (app, ctx) => {
  const { db, requireRole } = ctx;

  app.get(
    '/locations',
    {
      onRequest: requireRole('read'),
      schema: {
        tags: ['locations'],
        operationId: 'listLocations',
        summary: 'Every location, highest priority first (the order a reserve tries them in), each with its stock summed',
        security,
        response: { 200: ok(LocationList, 'every location'), ...problems(...AUTHENTICATED, ...WITH_QUERY) },
      },
    },
    async () => ({ locations: await listLocations(db) }),
  );
};
