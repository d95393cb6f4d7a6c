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
import type { ServerContext } from '../context.js';
import {
  AUTHENTICATED,
  CancelBody,
  CancelResult,
  header,
  ExtendBody,
  ExtendResult,
  LINK_NEXT,
  ListOrdersQuery,
  ok,
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
  WITH_BODY,
  WITH_PARAMS,
  WITH_QUERY,
} from '../schemas.js';
import { nextLink } from './paging.js';

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
/** What every route here may answer besides its own: authentication, a query parameter it does not take, a bug, 503. */
const AUTH = [...AUTHENTICATED, ...WITH_QUERY];
/** ... and a route with a body and an order id in its path. */
const WRITE = [...AUTH, ...WITH_BODY, ...WITH_PARAMS];

const LOCATION = { Location: header('the order: /orders/{order_id}') };

export const orderRoutes: FastifyPluginAsyncTypebox<ServerContext> = async (app, ctx) => {
  const { db, requireRole } = ctx;
  const actor = (request: { caller?: { name: string } }) => request.caller!.name;

  app.post(
    '/orders',
    {
      onRequest: requireRole('shop'),
      schema: {
        tags: ['orders'],
        operationId: 'createOrder',
        summary: 'Reserve stock for a new pending order (all or nothing)',
        description:
          'Each line says where its units are held (`allocations`, one reservation per location): from the one location that covers the whole order ' +
          'if there is one (highest priority first), else as `split` allows, or all from `location` when the request names one. ' +
          "Idempotency-Key is the order's ref, and covers the whole request (items, customer_id, ttl, payment_method, priority, location, split): " +
          'the same key with the same request answers 200 with the same order and `Idempotent-Replayed: true`, reserving nothing more; ' +
          'the same key with another request is 422 ref_conflict.',
        security,
        headers: ReserveHeaders,
        body: ReserveBody,
        response: {
          201: ok(ReserveResult, 'a new pending order, holding its stock', LOCATION),
          200: ok(ReserveResult, 'a replay: the order this Idempotency-Key made, unchanged', {
            ...LOCATION,
            'Idempotent-Replayed': header('true: this answers an earlier request with the same key', { type: 'string', enum: ['true'] }),
          }),
          ...problems(...AUTH, ...WITH_BODY, 404, 409),
        },
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
          location: body.location,
          split: body.split ?? ctx.splitPolicy,
          strategy: ctx.strategy,
          actor: actor(request),
        },
        ctx.settings,
      );
      reply.code(order.replay ? 200 : 201).header('location', `/orders/${order.order_id}`);
      if (order.replay) reply.header('idempotent-replayed', 'true');
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
        operationId: 'payOrder',
        summary: 'Pay a pending order: its reservations become sales',
        description:
          'The body may be omitted. Paying an order already paid is a no-op 200 (`"replay": true`) with no payment_ref, or the same one; ' +
          'another payment_ref is 409 payment_ref_conflict (a second payment is never recorded in silence).',
        'x-body-optional': true,
        security,
        params: OrderKeyParams,
        body: PayBody,
        response: { 200: ok(PayResult, 'paid (also an order paid before: replay)'), ...problems(...WRITE, 404, 409) },
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
        operationId: 'cancelOrder',
        summary: 'Cancel an order, releasing its stock (shop: pending orders; support: any, paid ones with restock)',
        description: 'The body may be omitted. Cancelling an order already cancelled is a no-op 200 (`"outcome": "already_cancelled"`).',
        'x-body-optional': true,
        security,
        params: OrderKeyParams,
        body: CancelBody,
        response: { 200: ok(CancelResult, 'cancelled (also an order cancelled before)'), ...problems(...WRITE, 404, 409) },
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
        operationId: 'setOrderStatus',
        summary: 'Move a paid order through fulfilment: paid → processing → shipped → delivered',
        security,
        params: OrderKeyParams,
        body: StatusBody,
        response: { 200: ok(StatusResult, 'the order moved on (or had this status already: replay)'), ...problems(...WRITE, 404, 409) },
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
        operationId: 'extendOrder',
        summary: 'Give a pending order more time to pay (its reservations move too)',
        security,
        params: OrderKeyParams,
        body: ExtendBody,
        response: { 200: ok(ExtendResult, 'the new deadline'), ...problems(...WRITE, 404, 409) },
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
        operationId: 'listOrders',
        summary: 'Orders, newest first, in pages (follow next_cursor, or the Link header)',
        security,
        querystring: ListOrdersQuery,
        response: { 200: ok(OrderList, 'one page of orders', LINK_NEXT), ...problems(...AUTH) },
      },
    },
    async (request, reply) => {
      const { query } = request;
      const page = await listOrders(db, {
        status: query.status,
        customerId: query.customer_id === undefined ? undefined : parseCustomerId(query.customer_id),
        limit: query.limit ?? 20,
        cursor: query.cursor,
      });
      if (page.next_cursor) reply.header('link', nextLink('/orders', request.query, page.next_cursor));
      return page;
    },
  );

  app.get(
    '/orders/:id',
    {
      onRequest: requireRole('read'),
      schema: {
        tags: ['orders'],
        operationId: 'getOrder',
        summary: 'One order: lines, reservations, ledger and fulfilment history (the `orders show --json` document)',
        security,
        params: OrderKeyParams,
        response: { 200: ok(OrderDetail, 'the order'), ...problems(...AUTH, ...WITH_PARAMS, 404) },
      },
    },
    async (request) => showOrderWithHistory(db, parseOrderKey(request.params.id)),
  );
};
