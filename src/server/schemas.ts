/**
 * The API's schemas, in one place: Fastify validates requests with them, serialises
 * responses with them, and @fastify/swagger turns them into /openapi.json. Every object
 * refuses unknown fields (additionalProperties: false), so a typo is a 422, never ignored.
 */
import { Type, type TSchema } from '@sinclair/typebox';
import { SKU_PATTERN } from '../engine/input.js';
import { FULFILMENT_STATUSES, ORDER_STATUSES } from '../db/schema.js';

const strict = { additionalProperties: false } as const;
/** Printable text: no control characters (the engine refuses them too, with a sentence). */
const text = (maxLength: number, description: string) => Type.String({ minLength: 1, maxLength, description });
const nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

/** What a value that fails a pattern must be, in words, by the pattern: a 422 says this, not the regular expression. */
export const PATTERN_WORDS = new Map<string, string>();
/** A string of a pattern, with the words a caller is told when it does not match. */
const patterned = (pattern: string, words: string, extra: { description?: string; examples?: string[] } = {}) => {
  PATTERN_WORDS.set(pattern, words);
  return Type.String({ pattern, description: words, ...extra });
};

export const Sku = patterned(SKU_PATTERN.source, 'a SKU: 1 to 64 letters, digits, dots, dashes or underscores');
export const Duration = patterned('^\\d+[smhd]$', 'a duration such as 90s, 15m, 2h or 1d', { examples: ['15m'] });

/** RFC 9457 problem document, with the CLI's error code and any details (shortages, ...). */
export const Problem = Type.Object(
  {
    type: Type.String({ description: 'a URI naming the kind of problem' }),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String({ description: 'one sentence: what was wrong and what to do' }),
    instance: Type.Optional(Type.String()),
    code: Type.String({ description: "the CLI's error code, e.g. insufficient_stock, order_not_found" }),
    shortages: Type.Optional(Type.Array(Type.Object({ sku: Type.String(), requested: Type.Integer(), available: Type.Integer() }))),
  },
  { additionalProperties: true, $id: 'Problem', description: 'application/problem+json (RFC 9457)' },
);
const ProblemRef = Type.Ref('Problem');

/** Response schemas for the problem statuses a route can answer. */
export function problems(...statuses: number[]): Record<number, TSchema> {
  return Object.fromEntries(statuses.map((s) => [s, ProblemRef]));
}

export const OrderKeyParams = Type.Object({ id: text(200, 'the order id, a unique id prefix (8+ hex digits), or its ref (Idempotency-Key)') }, strict);
export const SkuParams = Type.Object({ sku: Sku }, strict);

export const ReserveBody = Type.Object(
  {
    items: Type.Array(Type.Object({ sku: Sku, quantity: Type.Integer({ minimum: 1, maximum: 1_000_000 }) }, strict), { minItems: 1, maxItems: 100 }),
    customer_id: Type.Optional(text(200, 'your customer id, recorded on the order')),
    ttl: Type.Optional(Duration),
    payment_method: Type.Optional(
      text(50, "how the customer pays, stored on the order: the window is PAYMENT_TIMEOUTS' entry for it (else its default=, else PAYMENT_TIMEOUT_MINUTES)"),
    ),
    priority: Type.Optional(text(50, 'customer tier: adds its PRIORITY_WINDOWS extra time to the window')),
  },
  strict,
);
export const ReserveHeaders = Type.Object(
  {
    authorization: Type.Optional(Type.String()),
    // Node hands header bytes over one per character: 200 characters of UTF-8 are up to 800.
    'idempotency-key': Type.Optional(text(800, "the order's ref, at most 200 characters of UTF-8: the same key again returns the same order (200)")),
  },
  { additionalProperties: true },
);
export const ReserveResult = Type.Object({
  order_id: Type.String({ format: 'uuid' }),
  ref: nullable(Type.String()),
  status: Type.String(),
  customer_id: nullable(Type.String()),
  payment_expires_at: Type.String(),
  payment_method: nullable(Type.String()),
  payment_window_seconds: nullable(Type.Integer({ description: 'the window the order was given' })),
  priority: nullable(Type.String()),
  total: Type.Integer({ description: 'minor units' }),
  strategy: Type.String(),
  attempts: Type.Integer(),
  replay: Type.Boolean(),
  items: Type.Array(Type.Object({ sku: Type.String(), quantity: Type.Integer(), reservation_id: nullable(Type.String()) })),
  retries: Type.Integer(),
  expired_orders_released: Type.Integer(),
});

export const PayBody = Type.Object(
  { payment_ref: Type.Optional(text(200, 'payment provider reference')), allow_late: Type.Optional(Type.Boolean()) },
  strict,
);
export const PayResult = Type.Object({
  order_id: Type.String(),
  ref: nullable(Type.String()),
  status: Type.Literal('paid'),
  paid_at: Type.String(),
  payment_ref: nullable(Type.String()),
  replay: Type.Boolean(),
  late: Type.Boolean(),
  units_sold: Type.Integer(),
});

export const CancelBody = Type.Object(
  { reason: Type.Optional(text(500, 'why, recorded on the order')), restock: Type.Optional(Type.Boolean({ description: 'support: cancel a paid order and put its units back' })) },
  strict,
);
export const CancelResult = Type.Object({
  order_id: Type.String(),
  ref: nullable(Type.String()),
  outcome: Type.String({ description: 'cancelled, already_cancelled or restocked' }),
  previous_status: Type.String(),
  released_units: Type.Integer(),
  restocked_units: Type.Integer(),
});

export const StatusBody = Type.Object({ status: Type.Union(FULFILMENT_STATUSES.map((s) => Type.Literal(s))) }, strict);
export const StatusResult = Type.Object({
  order_id: Type.String(),
  ref: nullable(Type.String()),
  previous_status: Type.String(),
  status: Type.String(),
  changed_at: Type.String(),
  actor: Type.String(),
  replay: Type.Boolean(),
});

export const ExtendBody = Type.Object({ ttl: Duration }, strict);
export const ExtendResult = Type.Object({
  order_id: Type.String(),
  ref: nullable(Type.String()),
  payment_expires_at: Type.String(),
  reservations_extended: Type.Integer(),
});

const ORDER_STATUS = Type.Union(ORDER_STATUSES.map((s) => Type.Literal(s)));
export const ListOrdersQuery = Type.Object(
  {
    status: Type.Optional(ORDER_STATUS),
    limit: Type.Optional(patterned('^(100|[1-9][0-9]?)$', 'a whole number from 1 to 100 (default 20; page on with cursor)')),
    cursor: Type.Optional(patterned('^[A-Za-z0-9_-]{1,64}$', 'the next_cursor of the previous page')),
  },
  strict,
);
const OrderSummary = Type.Object({
  order_id: Type.String(),
  ref: nullable(Type.String()),
  customer_id: nullable(Type.String()),
  status: Type.String(),
  payment_status: Type.String(),
  total: Type.Integer(),
  item_count: Type.Integer(),
  created_at: Type.String(),
  payment_expires_at: nullable(Type.String()),
  seconds_left: nullable(Type.Integer()),
});
export const OrderList = Type.Object({
  orders: Type.Array(OrderSummary),
  next_cursor: nullable(Type.String({ description: 'pass as ?cursor= for the next page; null on the last page' })),
});
export const OrderDetail = Type.Object(
  {
    ...OrderSummary.properties,
    paid_at: nullable(Type.String()),
    payment_ref: nullable(Type.String()),
    cancelled_at: nullable(Type.String()),
    cancel_reason: nullable(Type.String()),
    cancelled_by: nullable(Type.String()),
    admin_notes: nullable(Type.String()),
    reserve_attempts: Type.Integer(),
    strategy: nullable(Type.String()),
    created_by: nullable(Type.String()),
    payment_method: nullable(Type.String()),
    payment_window_seconds: nullable(Type.Integer()),
    priority: nullable(Type.String()),
    items: Type.Array(Type.Object({ sku: Type.String(), name: Type.String(), unit_price: Type.Integer(), quantity: Type.Integer(), line_total: Type.Integer() })),
    reservations: Type.Array(
      Type.Object({
        reservation_id: Type.String(),
        sku: Type.String(),
        quantity: Type.Integer(),
        status: Type.String(),
        reserved_at: Type.String(),
        expires_at: Type.String(),
        released_at: nullable(Type.String()),
      }),
    ),
    movements: Type.Array(
      Type.Object({
        movement_id: Type.Integer(),
        sku: Type.String(),
        kind: Type.String(),
        stock_delta: Type.Integer(),
        reserved_delta: Type.Integer(),
        actor: Type.String(),
        reason: nullable(Type.String()),
        created_at: Type.String(),
      }),
    ),
    status_history: Type.Array(Type.Object({ from_status: Type.String(), to_status: Type.String(), actor: Type.String(), at: Type.String() })),
  },
);

export const StockItem = Type.Object(
  {
    sku: Type.String(),
    name: Type.String(),
    stock_quantity: Type.Integer(),
    reserved_stock: Type.Integer(),
    available: Type.Integer(),
    version: Type.Integer(),
    in_stock: Type.Boolean(),
  },
  { $id: 'StockItem' },
);
export const StockQuery = Type.Object(
  {
    sku: Type.Optional(Type.Union([Sku, Type.Array(Sku, { maxItems: 100 })], { description: 'only these SKUs (repeat the parameter)' })),
    low: Type.Optional(
      patterned('^\\d{1,7}$', 'a whole number of units (0 to 9,999,999)', { description: 'only rows with at most this many units available' }),
    ),
  },
  strict,
);
export const StockList = Type.Object({ items: Type.Array(Type.Ref('StockItem')) });
export const EventsQuery = Type.Object(
  { sku: Type.Optional(Type.Union([Sku, Type.Array(Sku, { maxItems: 100 })], { description: 'only these SKUs: their snapshot, and their changes' })) },
  strict,
);
export const EventsHeaders = Type.Object(
  {
    authorization: Type.Optional(Type.String()),
    'last-event-id': Type.Optional(
      Type.String({ maxLength: 100, description: 'the id of the last event received (EventSource sends it when it reconnects): resume after it' }),
    ),
  },
  { additionalProperties: true },
);

export const Health = Type.Object({ status: Type.String(), strategy: Type.Optional(Type.String()), version: Type.Optional(Type.String()) });
export const Ready = Type.Object({ status: Type.String(), migrations: Type.Object({ applied: Type.Integer(), expected: Type.Integer() }) });

