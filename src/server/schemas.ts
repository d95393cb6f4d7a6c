/**
 * The API's schemas, in one place: Fastify validates requests with them, serialises
 * responses with them, and @fastify/swagger turns them into /openapi.json. Every object
 * refuses unknown fields (additionalProperties: false), so a typo is a 422, never ignored.
 */
import { Type, type TSchema } from '@sinclair/typebox';
import { SKU_PATTERN } from '../engine/input.js';
import { LOCATION_CODE_PATTERN } from '../engine/locations.js';
import { SPLIT_POLICIES } from '../engine/names.js';
import { FULFILMENT_STATUSES, LOCATION_KINDS, ORDER_STATUSES, PAYMENT_STATUSES, RESERVATION_STATUSES } from '../db/schema.js';

const strict = { additionalProperties: false } as const;
/** Printable text: no control characters (the engine refuses them too, with a sentence). */
const text = (maxLength: number, description: string) => Type.String({ minLength: 1, maxLength, description });
const nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
/** One of these strings: a plain `enum`, as a generated client reads it best (typed as the values, for requests). */
const choice = <const V extends readonly string[]>(values: V, description?: string) =>
  Type.Unsafe<V[number]>({ type: 'string', enum: [...values], ...(description ? { description } : {}) });
/** The same for a response field, which the engine types as a string. */
const oneOf = (values: readonly string[], description?: string) => choice(values, description) as ReturnType<typeof Type.Unsafe<string>>;

/**
 * The order statuses an order can have. `fulfilled` is allowed by the table's check but no
 * step leads to it (paid → processing → shipped → delivered), so the API never names it.
 */
export const LIVE_ORDER_STATUSES = ORDER_STATUSES.filter((s) => s !== 'fulfilled');
const OrderStatus = oneOf(LIVE_ORDER_STATUSES);
/** What a paid order can be: paid, then each fulfilment step. */
const PaidStatus = oneOf(['paid', ...FULFILMENT_STATUSES]);

/**
 * What a value must be, in words, by the description of its schema: a 422 says this, not
 * the regular expression or the bound it failed (the validator reports the failing
 * schema, whose description names it).
 */
export const MUST_BE_WORDS = new Map<string, string>();
/** A string of a pattern, with the words a caller is told when it does not match. */
const patterned = (pattern: string, words: string, extra: { description?: string; examples?: string[] } = {}) => {
  const description = extra.description ?? words;
  MUST_BE_WORDS.set(description, words);
  return Type.String({ pattern, ...extra, description });
};
/** A whole number in a query string (sent as text, read as a number), with the words a caller is told when it is not one. */
const wholeNumber = (minimum: number, maximum: number, words: string, description = words) => {
  MUST_BE_WORDS.set(description, words);
  return Type.Integer({ minimum, maximum, description });
};

export const Sku = patterned(SKU_PATTERN.source, 'a SKU: 1 to 64 letters, digits, dots, dashes or underscores');
export const Duration = patterned('^\\d+[smhd]$', 'a duration such as 90s, 15m, 2h or 1d', { examples: ['15m'] });

/** RFC 9457 problem documents: the media type every error is sent as. */
export const PROBLEM_MEDIA_TYPE = 'application/problem+json';

const FieldError = Type.Object({ field: Type.String(), message: Type.String() }, strict);

/**
 * RFC 9457 problem document: one schema for every error, with each extension member any
 * error carries, under one name each (the HTTP edge renames the CLI's singular `sku`).
 */
export const Problem = Type.Object(
  {
    type: Type.String({ description: 'a URI naming the kind of problem: urn:stockctl:problem:<code>' }),
    title: Type.String(),
    status: Type.Integer({ minimum: 400, maximum: 599 }),
    detail: Type.String({ description: 'one sentence: what was wrong and what to do' }),
    instance: Type.Optional(Type.String({ description: 'the path the request was made to' })),
    code: Type.String({ description: "the CLI's error code, e.g. insufficient_stock, order_not_found, ref_conflict" }),
    request_id: Type.String({ description: 'the X-Request-Id of this request (the one sent, if it was sane, else one made up): quote it when asking about it' }),
    errors: Type.Optional(Type.Array(FieldError, { description: 'invalid_input: every failing field (at most 20), as the caller wrote it' })),
    errors_omitted: Type.Optional(Type.Integer({ minimum: 1, description: 'invalid_input: failing fields not listed in `errors`' })),
    shortages: Type.Optional(
      Type.Array(
        Type.Object(
          {
            sku: Type.String(),
            requested: Type.Integer(),
            available: Type.Integer({ description: 'what the order could have had: at the location it was pinned to, or at one location when its lines may not split' }),
            available_total: Type.Optional(Type.Integer({ description: 'what every active location holds together, when that is more' })),
          },
          strict,
        ),
        { description: 'insufficient_stock: each short SKU' },
      ),
    ),
    skus: Type.Optional(Type.Array(Type.String(), { description: 'the SKUs concerned: sku_not_found, stock_conflict, reservations_exceed_on_hand' })),
    variants: Type.Optional(Type.Array(Type.String(), { description: 'sku_not_found for a product with variants: the SKUs that hold its stock' })),
    attempts: Type.Optional(Type.Integer({ description: 'stock_conflict: optimistic attempts made' })),
    order_id: Type.Optional(Type.String({ format: 'uuid', description: 'the order a refusal by state (or a conflict) concerns' })),
    location: Type.Optional(Type.String({ description: 'location_not_found, location_inactive, stock_below_reserved: the location concerned' })),
    order: Type.Optional(Type.String({ description: 'order_not_found, order_ambiguous: the id or ref asked for' })),
    matches: Type.Optional(Type.Array(Type.String(), { description: 'order_ambiguous: orders the id prefix matches (the first three)' })),
    payment_expires_at: Type.Optional(Type.String({ description: 'window_not_extended: the order\'s current deadline' })),
    payment_ref: Type.Optional(Type.String({ description: "payment_ref_conflict: the reference the order was paid with" })),
    from: Type.Optional(Type.String({ description: 'invalid_transition: the order\'s status' })),
    to: Type.Optional(Type.String({ description: 'invalid_transition: the status asked for' })),
    role: Type.Optional(Type.String({ description: "forbidden: the token's role" })),
    required_role: Type.Optional(Type.String({ description: 'forbidden: the least role the request needs' })),
    priority: Type.Optional(Type.String({ description: 'unknown_priority: the tier asked for' })),
    tiers: Type.Optional(Type.Array(Type.String(), { description: 'unknown_priority: the configured tiers (PRIORITY_WINDOWS)' })),
    stock_quantity: Type.Optional(Type.Integer({ description: 'reservations_exceed_on_hand: units on hand' })),
    requested: Type.Optional(Type.Integer({ description: 'reservations_exceed_on_hand: units the sale needs' })),
    allowed_methods: Type.Optional(Type.Array(Type.String(), { description: 'method_not_allowed: the methods the path takes (as the Allow header says)' })),
  },
  // Open, as RFC 9457 says (a client ignores members it does not know); the contract test
  // holds the server to the members listed here.
  { additionalProperties: true, $id: 'Problem', description: 'application/problem+json (RFC 9457)' },
);
const ProblemRef = Type.Ref('Problem');

/** A response header: its schema and description (@fastify/swagger puts the description beside the schema). */
export const header = (description: string, schema: object = { type: 'string' }) => ({ ...schema, description });
const REQUEST_ID = header('the request id: the X-Request-Id sent (1 to 200 printable ASCII characters), else a new UUID; also in the log line and in any problem document');
const RETRY_AFTER = header('seconds to wait before trying again', { type: 'integer', minimum: 0 });

/** The headers of every response, and those a status adds. */
const HEADERS_BY_STATUS: Record<number, ResponseHeaders> = {
  401: { 'WWW-Authenticate': header('Bearer realm="stockctl" (with error="invalid_token" for an unknown or revoked token)') },
  429: { 'Retry-After': RETRY_AFTER },
  503: { 'Retry-After': RETRY_AFTER },
};

const PROBLEM_DESCRIPTIONS: Record<number, string> = {
  400: 'malformed_json, malformed_url, malformed_request',
  401: 'unauthorized: no token, or an unknown or revoked one',
  403: "forbidden: the token's role may not",
  404: 'order_not_found, sku_not_found, location_not_found',
  409: 'refused by the current state (insufficient_stock, order_paid, invalid_transition, ...)',
  413: 'body_too_large: over 64 KiB',
  414: 'uri_too_long: a path segment over 1,000 characters',
  415: 'unsupported_media_type: a body that is not application/json',
  422: 'invalid_input (`errors` lists every failing field), ref_conflict, unknown_priority, invalid_cursor, ...',
  429: 'too_many_requests: too many failed authentications from this address, or requests with this token',
  500: 'internal_error: a bug; the server log has the details',
  503: 'database_unavailable, not_migrated, shutting_down, too_many_streams, ...',
};

/** Extra response headers (name → description) by name, in responses(). */
export type ResponseHeaders = Record<string, { description: string }>;

/**
 * A JSON success response: the schema, the headers it carries (X-Request-Id always), and
 * its description. The schema stays a TypeBox schema (the handler's return type comes
 * from it); @fastify/swagger moves `headers` to the response and drops it from the schema.
 */
export function ok<T extends TSchema>(schema: T, description: string, headers: ResponseHeaders = {}): T {
  return { ...schema, description, headers: { 'X-Request-Id': REQUEST_ID, ...headers } } as T;
}

/** A success response of another media type (text, an event stream), with its headers. */
export function okAs(mediaType: string, description: string, schema: object = { type: 'string' }): TSchema {
  return { description, headers: { 'X-Request-Id': REQUEST_ID }, content: { [mediaType]: { schema } } } as unknown as TSchema;
}

/** Response schemas for the problem statuses a route can answer: application/problem+json, with their headers. */
export function problems(...statuses: number[]): Record<number, TSchema> {
  return Object.fromEntries(
    [...new Set(statuses)].map((s) => [
      s,
      {
        description: PROBLEM_DESCRIPTIONS[s] ?? 'a problem document',
        headers: { 'X-Request-Id': REQUEST_ID, ...(HEADERS_BY_STATUS[s] ?? {}) },
        content: { [PROBLEM_MEDIA_TYPE]: { schema: ProblemRef } },
      } as unknown as TSchema,
    ]),
  );
}

/** What any route may answer: a bug (500), and 503 (the database, or the server shutting down). */
export const ANY_ROUTE = [500, 503] as const;
/** ... and an authenticated one: no or a bad token, a role that may not, too many failures or requests. */
export const AUTHENTICATED = [401, 403, 429, ...ANY_ROUTE] as const;
/** ... a route that reads path parameters: a URL the router cannot read (400), a segment too long (414). */
export const WITH_PARAMS = [400, 414] as const;
/** ... a route that takes a body: not JSON (400), too large (413), another media type (415). */
export const WITH_BODY = [400, 413, 415] as const;
/** Every route refuses an unknown query parameter (422). */
export const WITH_QUERY = [422] as const;

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
    location: Type.Optional(
      patterned(LOCATION_CODE_PATTERN.source, 'a location code: 1 to 64 letters, digits, dots, dashes or underscores', {
        description: 'take every unit from this location (store pickup): 404 location_not_found if there is none, 409 location_inactive if it does not sell',
      }),
    ),
    split: Type.Optional(
      choice(
        SPLIT_POLICIES,
        "when no one location covers the order: units (a line may come from several locations), lines (each line from one location, lines may differ), never (the whole order from one location); default the server's SPLIT_POLICY",
      ),
    ),
  },
  strict,
);
export const ReserveHeaders = Type.Object(
  {
    authorization: Type.Optional(Type.String()),
    // Node hands header bytes over one per character: 200 characters of UTF-8 are up to 800.
    'idempotency-key': Type.Optional(
      text(800, "the order's ref, at most 200 characters of UTF-8: the same request with the same key returns the same order (200); another request with it is 422 ref_conflict"),
    ),
  },
  { additionalProperties: true },
);
/** Where units of an order line are held: one reservation per (line, location). */
export const Allocation = Type.Object(
  { location: Type.String(), quantity: Type.Integer(), reservation_id: Type.String({ format: 'uuid' }) },
  { $id: 'Allocation' },
);
export const ReserveResult = Type.Object({
  order_id: Type.String({ format: 'uuid' }),
  ref: nullable(Type.String()),
  status: oneOf(LIVE_ORDER_STATUSES, 'pending for a new order; a replay says what the order is now'),
  customer_id: nullable(Type.String()),
  payment_expires_at: Type.String({ description: "the deadline to pay (empty on a replay of an order that is no longer pending)" }),
  payment_method: nullable(Type.String()),
  payment_window_seconds: nullable(Type.Integer({ description: 'the window the order was given' })),
  priority: nullable(Type.String()),
  total: Type.Integer({ description: 'minor units' }),
  strategy: Type.String(),
  attempts: Type.Integer(),
  replay: Type.Boolean(),
  items: Type.Array(
    Type.Object({
      sku: Type.String(),
      quantity: Type.Integer(),
      reservation_id: nullable(Type.String({ description: "the line's first reservation (its only one unless the line was split)" })),
      allocations: Type.Array(Type.Ref('Allocation'), { description: 'where the line\'s units are held: one reservation per location' }),
    }),
  ),
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
  status: oneOf(['paid', ...FULFILMENT_STATUSES], 'paid, or the fulfilment step a paid order has reached since (a replay)'),
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
  outcome: oneOf(['cancelled', 'already_cancelled', 'restocked']),
  previous_status: OrderStatus,
  released_units: Type.Integer(),
  restocked_units: Type.Integer(),
});

export const StatusBody = Type.Object({ status: choice(FULFILMENT_STATUSES) }, strict);
export const StatusResult = Type.Object({
  order_id: Type.String(),
  ref: nullable(Type.String()),
  previous_status: PaidStatus,
  status: oneOf(FULFILMENT_STATUSES),
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

export const ListOrdersQuery = Type.Object(
  {
    status: Type.Optional(choice(LIVE_ORDER_STATUSES)),
    customer_id: Type.Optional(text(200, "only this customer's orders (the customer_id given when they were made)")),
    limit: Type.Optional(wholeNumber(1, 100, 'a whole number from 1 to 100 (default 20; page on with cursor)')),
    cursor: Type.Optional(patterned('^[A-Za-z0-9_-]{1,64}$', 'the next_cursor of the previous page')),
  },
  strict,
);
/** The Link header beside next_cursor. */
export const LINK_NEXT = {
  Link: header('the next page, when there is one (RFC 8288): the same path and query with cursor=next_cursor, as in `</orders?limit=20&cursor=…>; rel="next"`'),
};
const OrderSummary = Type.Object({
  order_id: Type.String(),
  ref: nullable(Type.String()),
  customer_id: nullable(Type.String()),
  status: OrderStatus,
  payment_status: oneOf(PAYMENT_STATUSES),
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
    items: Type.Array(
      Type.Object({
        sku: Type.String(),
        name: Type.String(),
        unit_price: Type.Integer(),
        quantity: Type.Integer(),
        line_total: Type.Integer(),
        allocations: Type.Array(Type.Ref('Allocation'), { description: "where the line's units are held (by its latest reserve): one reservation per location" }),
      }),
    ),
    reservations: Type.Array(
      Type.Object({
        reservation_id: Type.String(),
        sku: Type.String(),
        location: Type.String(),
        quantity: Type.Integer(),
        status: oneOf(RESERVATION_STATUSES),
        reserved_at: Type.String(),
        expires_at: Type.String(),
        released_at: nullable(Type.String()),
      }),
    ),
    movements: Type.Array(
      Type.Object({
        movement_id: Type.Integer(),
        sku: Type.String(),
        location: Type.String(),
        kind: Type.String(),
        stock_delta: Type.Integer(),
        reserved_delta: Type.Integer(),
        actor: Type.String(),
        reason: nullable(Type.String()),
        created_at: Type.String(),
      }),
    ),
    status_history: Type.Array(Type.Object({ from_status: PaidStatus, to_status: oneOf(FULFILMENT_STATUSES), actor: Type.String(), at: Type.String() })),
  },
);

export const StockItem = Type.Object(
  {
    sku: Type.String(),
    name: Type.String(),
    stock_quantity: Type.Integer(),
    reserved_stock: Type.Integer(),
    available: Type.Integer({ description: 'summed over the active locations, each at least 0' }),
    incoming: Type.Integer({ description: 'on their way from one location to another (transfers): never available' }),
    version: Type.Integer({ description: 'the sum of the versions of its levels: grows with every change' }),
    in_stock: Type.Boolean(),
  },
  { $id: 'StockItem', description: "a SKU's stock summed over its locations (`stock --json`)" },
);
/** One SKU at one location (`stock --location CODE --json`). */
export const LevelItem = Type.Object(
  {
    sku: Type.String(),
    name: Type.String(),
    location: Type.String(),
    active: Type.Boolean({ description: 'whether the location sells: an inactive one has nothing available' }),
    stock_quantity: Type.Integer(),
    reserved_stock: Type.Integer(),
    incoming: Type.Integer(),
    available: Type.Integer(),
    version: Type.Integer(),
    in_stock: Type.Boolean(),
  },
  { $id: 'LevelItem', description: 'one SKU at one location (`stock --location CODE --json`)' },
);
export const Location = Type.Object(
  {
    code: Type.String(),
    name: Type.String(),
    kind: oneOf(LOCATION_KINDS),
    priority: Type.Integer({ description: 'higher is tried first when an order is reserved' }),
    active: Type.Boolean({ description: 'whether it sells' }),
    stock_quantity: Type.Integer(),
    reserved_stock: Type.Integer(),
    incoming: Type.Integer(),
    available: Type.Integer(),
    skus: Type.Integer({ description: 'SKUs with a level here' }),
    created_at: Type.String(),
  },
  { $id: 'Location', description: 'a warehouse or store holding stock, with its levels summed (`location list --json`)' },
);
export const LocationList = Type.Object({ locations: Type.Array(Type.Ref('Location'), { description: 'highest priority first' }) });
export const StockQuery = Type.Object(
  {
    sku: Type.Optional(Type.Union([Sku, Type.Array(Sku, { maxItems: 100 })], { description: 'only these SKUs (repeat the parameter)' })),
    low: Type.Optional(wholeNumber(0, 9_999_999, 'a whole number of units (0 to 9,999,999)', 'only rows with at most this many units available (0 to 9,999,999)')),
    limit: Type.Optional(wholeNumber(1, 1000, 'a whole number from 1 to 1000 (default 100; page on with cursor)')),
    cursor: Type.Optional(patterned('^[A-Za-z0-9_-]{1,100}$', 'the next_cursor of the previous page')),
    location: Type.Optional(
      patterned(LOCATION_CODE_PATTERN.source, 'a location code: 1 to 64 letters, digits, dots, dashes or underscores', {
        description: 'the levels at this location (LevelItem), not the totals: 404 location_not_found if there is none',
      }),
    ),
  },
  strict,
);
export const StockList = Type.Object({
  location: Type.Optional(Type.String({ description: 'with ?location=: the location, and the items are its levels' })),
  items: Type.Array(Type.Union([Type.Ref('LevelItem'), Type.Ref('StockItem')]), { description: 'StockItem totals; with ?location=, LevelItem levels' }),
  next_cursor: nullable(Type.String({ description: 'pass as ?cursor= for the next page (in SKU order); null on the last page' })),
});
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

export const Health = Type.Object({ status: Type.Literal('ok'), strategy: Type.String(), version: Type.String() });
export const Ready = Type.Object({
  status: Type.Literal('ready'),
  migrations: Type.Object({ applied: Type.Integer(), expected: Type.Integer() }),
  tables: Type.Integer({ description: 'tables read by the probe, each with a real query' }),
});

