/** /orders: reserve, pay, cancel, extend, fulfilment, and the read views. One engine call per route. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { InvalidInputError } from '../../errors.js';
import { parseCustomerId, parseDuration, parseOrderKey, parseOrderLines, parseRef, parseText } from '../../engine/input.js';
import { resolvePaymentWindow } from '../../engine/windows.js';
import { cancelOrder, extendOrder, payOrder, reserveOrder } from '../../engine/orders.js';
import { findOrder } from '../../engine/order-rows.js';
import { listOrders } from '../../engine/queries.js';
import { setOrderStatus, showOrderWithHistory } from '../../engine/fulfilment.js';
import { roleAllows } from '../../engine/tokens.js';
import { HttpProblem } from '../problems.js';
import type { ServerContext } from '../app.js';
import {
  CancelBody,
  CancelResult,
  ExtendBody,
  ExtendResult,
  ListOrdersQuery,
  OrderDetail,
  OrderKeyParams,
  OrderList,
  PayBody,
  PayResult,
  problems,
  ReserveBody,
  ReserveHeaders,
  ReserveResult,
  StatusBody,
  StatusResult,
} from '../schemas.js';

/**
 * A header's text as the client meant it: Node reads header bytes as Latin-1, while
 * clients send UTF-8 (`Idempotency-Key: café-1`). Bytes that are not UTF-8 are refused.
 */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
function utf8Header(value: string, name: string): string {
  try {
    return strictUtf8.decode(Buffer.from(value, 'latin1'));
  } catch {
    throw new InvalidInputError(`The ${name} header is not valid UTF-8; send the key as UTF-8 (or plain ASCII).`);
  }
}

/**
 * The one Idempotency-Key of a request. Node joins repeated headers with ", ", which would
 * make two keys one ref ("dup-a, dup-b"): two of them are refused instead.
 */
function idempotencyKey(request: { headers: Record<string, unknown>; raw: { rawHeaders: string[] } }): string | undefined {
  const sent = request.raw.rawHeaders.filter((name, i) => i % 2 === 0 && name.toLowerCase() === 'idempotency-key').length;
  if (sent > 1) throw new InvalidInputError(`The request has ${sent} Idempotency-Key headers; send exactly one (its value is the order's ref).`);
  const key = request.headers['idempotency-key'];
  return typeof key === 'string' ? key : undefined;
}

const security = [{ bearer: [] }];

/** Pay and cancel may be sent without a body (curl -X DELETE): that is the empty object. */
const emptyBodyIsEmptyObject = async (request: { body: unknown }) => {
  if (request.body === undefined || request.body === null) request.body = {};
};
const AUTH = [401, 403, 413, 422, 503];

export const orderRoutes: FastifyPluginAsyncTypebox<ServerContext> = async (app, ctx) => {
  const { db, requireRole } = ctx;
  const actor = (request: { caller?: { name: string } }) => request.caller!.name;

  app.post(
    '/orders',
    {
      onRequest: requireRole('shop'),
      schema: {
        tags: ['orders'],
        summary: 'Reserve stock for a new pending order (all or nothing)',
        description: 'Idempotency-Key is the order ref: the same key with the same items answers 200 with the same order; with other items, 409 ref_conflict.',
        security,
        headers: ReserveHeaders,
        body: ReserveBody,
        response: { 201: ReserveResult, 200: ReserveResult, ...problems(...AUTH, 404, 409) },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const key = idempotencyKey(request);
      const window = resolvePaymentWindow(ctx.paymentWindows, {
        paymentMethod: body.payment_method,
        priority: body.priority,
        ttlSeconds: body.ttl === undefined ? undefined : parseDuration(body.ttl, 'ttl'),
      });
      const order = await reserveOrder(
        db,
        {
          lines: parseOrderLines(body.items.map((i) => `${i.sku}:${i.quantity}`)),
          customerId: parseCustomerId(body.customer_id),
          ref: key === undefined ? undefined : parseRef(utf8Header(key, 'Idempotency-Key')),
          ttlSeconds: window.seconds,
          paymentMethod: window.paymentMethod,
          priority: window.priority,
          strategy: ctx.strategy,
          actor: actor(request),
        },
        ctx.settings,
      );
      reply.code(order.replay ? 200 : 201).header('location', `/orders/${order.order_id}`);
      return order;
    },
  );

  app.patch(
    '/orders/:id/payment',
    {
      onRequest: requireRole('shop'),
      preValidation: emptyBodyIsEmptyObject,
      schema: {
        tags: ['orders'],
        summary: 'Pay a pending order: its reservations become sales',
        security,
        params: OrderKeyParams,
        body: PayBody,
        response: { 200: PayResult, ...problems(...AUTH, 404, 409) },
      },
    },
    async (request) => {
      const body = request.body;
      return payOrder(db, {
        order: parseOrderKey(request.params.id),
        paymentRef: parseText(body.payment_ref, 'payment_ref', 200),
        allowLate: body.allow_late,
        actor: actor(request),
      });
    },
  );

  app.delete(
    '/orders/:id',
    {
      onRequest: requireRole('shop'),
      preValidation: emptyBodyIsEmptyObject,
      schema: {
        tags: ['orders'],
        summary: 'Cancel an order, releasing its stock (shop: pending orders; support: any, paid ones with restock)',
        security,
        params: OrderKeyParams,
        body: CancelBody,
        response: { 200: CancelResult, ...problems(...AUTH, 404, 409) },
      },
    },
    async (request) => {
      const body = request.body;
      const order = parseOrderKey(request.params.id);
      const caller = request.caller!;
      const support = roleAllows(caller.role, 'support');
      if (!support) {
        // A checkout may take back its own unpaid orders; anything sold is support's call.
        const { status } = await findOrder(db, order);
        if (status !== 'pending' && status !== 'cancelled') {
          throw new HttpProblem(403, 'forbidden', `Token ${caller.name} has role ${caller.role}: it may cancel only pending orders; ask support (role support) for paid ones.`, {
            role: caller.role,
            required_role: 'support',
          });
        }
      }
      // `restock` only matters for a paid order, which only support may cancel: for a shop
      // it is dropped, so an order paid since the check above is refused (409), not restocked.
      const restock = support ? body.restock : false;
      return cancelOrder(db, { order, reason: parseText(body.reason, 'reason'), restock, actor: caller.name });
    },
  );

  app.patch(
    '/orders/:id/status',
    {
      onRequest: requireRole('support'),
      schema: {
        tags: ['orders'],
        summary: 'Move a paid order through fulfilment: paid → processing → shipped → delivered',
        security,
        params: OrderKeyParams,
        body: StatusBody,
        response: { 200: StatusResult, ...problems(...AUTH, 404, 409) },
      },
    },
    async (request) => setOrderStatus(db, { order: parseOrderKey(request.params.id), status: request.body.status, actor: actor(request) }),
  );

  app.post(
    '/orders/:id/extend',
    {
      onRequest: requireRole('support'),
      schema: {
        tags: ['orders'],
        summary: 'Give a pending order more time to pay (its reservations move too)',
        security,
        params: OrderKeyParams,
        body: ExtendBody,
        response: { 200: ExtendResult, ...problems(...AUTH, 404, 409) },
      },
    },
    async (request) => extendOrder(db, { order: parseOrderKey(request.params.id), ttlSeconds: parseDuration(request.body.ttl, 'ttl'), actor: actor(request) }),
  );

  app.get(
    '/orders',
    {
      onRequest: requireRole('read'),
      schema: {
        tags: ['orders'],
        summary: 'Orders, newest first, in pages (follow next_cursor)',
        security,
        querystring: ListOrdersQuery,
        response: { 200: OrderList, ...problems(...AUTH) },
      },
    },
    async (request) => {
      return listOrders(db, { status: request.query.status, limit: Number(request.query.limit ?? 20), cursor: request.query.cursor });
    },
  );

  app.get(
    '/orders/:id',
    {
      onRequest: requireRole('read'),
      schema: {
        tags: ['orders'],
        summary: 'One order: lines, reservations, ledger and fulfilment history (the `orders show --json` document)',
        security,
        params: OrderKeyParams,
        response: { 200: OrderDetail, ...problems(...AUTH, 404) },
      },
    },
    async (request) => showOrderWithHistory(db, parseOrderKey(request.params.id)),
  );
};
