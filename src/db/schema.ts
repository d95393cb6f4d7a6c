/**
 * The stockctl schema. The CHECK constraints are the last line of defence: even a
 * buggy or hand-written UPDATE cannot oversell, because PostgreSQL refuses the row.
 */
import { sql } from 'drizzle-orm';
import {
  type AnyPgColumn,
  bigint,
  bigserial,
  boolean,
  check,
  index,
  integer,
  pgSequence,
  pgTable,
  pgView,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';
import { LOCATION_KINDS, TOKEN_ROLES } from './limits.js';

const timestamps = {
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
};

/** Prices are never negative. */
const priceCheck = (table: string, t: { price: AnyPgColumn }) => check(`${table}_price_nonnegative`, sql`${t.price} >= 0`);

export const products = pgTable(
  'products',
  {
    productId: uuid('product_id').primaryKey().defaultRandom(),
    sku: text('sku').notNull(),
    name: text('name').notNull(),
    price: integer('price').notNull().default(0),
    ...timestamps,
  },
  (t) => [uniqueIndex('products_sku_key').on(t.sku), priceCheck('products', t)],
);

export const productVariants = pgTable(
  'product_variants',
  {
    variantId: uuid('variant_id').primaryKey().defaultRandom(),
    productId: uuid('product_id')
      .notNull()
      .references(() => products.productId),
    sku: text('sku').notNull(),
    name: text('name').notNull(),
    price: integer('price').notNull().default(0),
    ...timestamps,
  },
  (t) => [
    uniqueIndex('product_variants_sku_key').on(t.sku),
    index('product_variants_product_idx').on(t.productId),
    priceCheck('product_variants', t),
  ],
);

export { LOCATION_KINDS };

/**
 * Where units are kept: a warehouse or a store. Reserve takes units from the active
 * location of highest priority that can cover an order; an inactive one keeps its stock
 * but sells nothing.
 */
export const locations = pgTable(
  'locations',
  {
    code: text('code').primaryKey(),
    name: text('name').notNull(),
    kind: text('kind', { enum: LOCATION_KINDS }).notNull().default('warehouse'),
    priority: integer('priority').notNull().default(0),
    active: boolean('active').notNull().default(true),
    ...timestamps,
  },
  (t) => [check('locations_kind_valid', sql`${t.kind} IN ('warehouse','store')`)],
);

/**
 * The stock of one SKU at one location: its units on hand, reserved and on their way
 * (incoming, never available). The CHECK constraints are the last line of defence: even a
 * buggy or hand-written UPDATE cannot oversell a location, because PostgreSQL refuses the
 * row. The primary key's order (sku, location) is the order every writer locks levels in.
 */
export const stockLevels = pgTable(
  'stock_levels',
  {
    sku: text('sku').notNull(),
    location: text('location')
      .notNull()
      .references(() => locations.code),
    productId: uuid('product_id')
      .notNull()
      .references((): AnyPgColumn => products.productId),
    variantId: uuid('variant_id').references((): AnyPgColumn => productVariants.variantId),
    stockQuantity: integer('stock_quantity').notNull().default(0),
    reservedStock: integer('reserved_stock').notNull().default(0),
    incoming: integer('incoming').notNull().default(0),
    version: integer('version').notNull().default(0),
    inStock: boolean('in_stock')
      .notNull()
      .generatedAlwaysAs(sql`stock_quantity - reserved_stock > 0`),
    updatedAt: timestamps.updatedAt,
  },
  (t) => [
    primaryKey({ columns: [t.sku, t.location], name: 'stock_levels_pkey' }),
    index('stock_levels_product_idx').on(t.productId),
    index('stock_levels_variant_idx').on(t.variantId),
    check('stock_levels_stock_nonnegative', sql`${t.stockQuantity} >= 0`),
    check('stock_levels_reserved_nonnegative', sql`${t.reservedStock} >= 0`),
    check('stock_levels_reserved_within_stock', sql`${t.reservedStock} <= ${t.stockQuantity}`),
    check('stock_levels_incoming_nonnegative', sql`${t.incoming} >= 0`),
  ],
);

export const TRANSFER_STATUSES = ['in_transit', 'received', 'cancelled'] as const;

/** Units on their way from one location to another: off hand at the first, incoming at the second. */
export const transfers = pgTable(
  'transfers',
  {
    transferId: bigserial('transfer_id', { mode: 'number' }).primaryKey(),
    sku: text('sku').notNull(),
    productId: uuid('product_id')
      .notNull()
      .references((): AnyPgColumn => products.productId),
    variantId: uuid('variant_id').references((): AnyPgColumn => productVariants.variantId),
    fromLocation: text('from_location')
      .notNull()
      .references(() => locations.code),
    toLocation: text('to_location')
      .notNull()
      .references(() => locations.code),
    quantity: integer('quantity').notNull(),
    status: text('status', { enum: TRANSFER_STATUSES }).notNull().default('in_transit'),
    createdBy: text('created_by').notNull(),
    closedBy: text('closed_by'),
    createdAt: timestamps.createdAt,
    closedAt: timestamp('closed_at', { withTimezone: true }),
  },
  (t) => [
    index('transfers_in_transit_idx').on(t.sku, t.toLocation).where(sql`status = 'in_transit'`),
    check('transfers_quantity_positive', sql`${t.quantity} > 0`),
    check('transfers_locations_differ', sql`${t.fromLocation} <> ${t.toLocation}`),
    check('transfers_status_valid', sql`${t.status} IN ('in_transit','received','cancelled')`),
    check('transfers_closed_has_time', sql`${t.status} = 'in_transit' OR ${t.closedAt} IS NOT NULL`),
  ],
);

export const ORDER_STATUSES = ['pending', 'paid', 'cancelled', 'processing', 'fulfilled', 'shipped', 'delivered'] as const;
export const PAYMENT_STATUSES = ['awaiting', 'paid', 'expired', 'void', 'refunded'] as const;
export const RESERVATION_STATUSES = ['active', 'converted', 'expired', 'cancelled'] as const;

export const orders = pgTable(
  'orders',
  {
    orderId: uuid('order_id').primaryKey().defaultRandom(),
    ref: text('ref'),
    customerId: text('customer_id'),
    status: text('status', { enum: ORDER_STATUSES }).notNull().default('pending'),
    paymentStatus: text('payment_status', { enum: PAYMENT_STATUSES }).notNull().default('awaiting'),
    paymentRef: text('payment_ref'),
    paymentExpiresAt: timestamp('payment_expires_at', { withTimezone: true }),
    paidAt: timestamp('paid_at', { withTimezone: true }),
    cancelledAt: timestamp('cancelled_at', { withTimezone: true }),
    cancelReason: text('cancel_reason'),
    cancelledBy: text('cancelled_by'),
    adminNotes: text('admin_notes'),
    subtotal: bigint('subtotal', { mode: 'number' }).notNull().default(0),
    total: bigint('total', { mode: 'number' }).notNull().default(0),
    itemCount: integer('item_count').notNull().default(0),
    reserveAttempts: integer('reserve_attempts').notNull().default(1),
    strategy: text('strategy'),
    createdBy: text('created_by'),
    /** How the customer pays, and the window reserve gave the order (seconds); null for orders made before payment windows existed. */
    paymentMethod: text('payment_method'),
    paymentWindowSeconds: integer('payment_window_seconds'),
    /** The customer tier whose extra time the window includes (PRIORITY_WINDOWS), if any. */
    priority: text('priority'),
    /**
     * What the request said of where the units come from: the location it was pinned to,
     * and the split policy it was reserved under (null for orders made before locations),
     * so that the same ref with another of either is a conflict, not a replay.
     */
    location: text('location'),
    splitPolicy: text('split_policy'),
    ...timestamps,
  },
  (t) => [
    uniqueIndex('orders_ref_key').on(t.ref),
    index('orders_pending_expiry_idx').on(t.paymentExpiresAt).where(sql`status = 'pending'`),
    index('orders_status_created_idx').on(t.status, t.createdAt),
    check('orders_status_valid', sql`${t.status} IN ('pending','paid','cancelled','processing','fulfilled','shipped','delivered')`),
    check('orders_payment_status_valid', sql`${t.paymentStatus} IN ('awaiting','paid','expired','void','refunded')`),
    check('orders_pending_has_window', sql`${t.status} <> 'pending' OR ${t.paymentExpiresAt} IS NOT NULL`),
    check('orders_paid_has_time', sql`${t.status} <> 'paid' OR ${t.paidAt} IS NOT NULL`),
    check('orders_cancelled_has_time', sql`${t.status} <> 'cancelled' OR ${t.cancelledAt} IS NOT NULL`),
    check('orders_payment_window_positive', sql`${t.paymentWindowSeconds} > 0`),
  ],
);

/**
 * The stock row an order line, reservation or ledger entry is about: its product, its
 * variant when it is one, and the SKU as it was (kept for reading the history).
 */
const stockRowRef = {
  productId: uuid('product_id')
    .notNull()
    .references((): AnyPgColumn => products.productId),
  variantId: uuid('variant_id').references((): AnyPgColumn => productVariants.variantId),
  sku: text('sku').notNull(),
};

export const orderItems = pgTable(
  'order_items',
  {
    orderItemId: uuid('order_item_id').primaryKey().defaultRandom(),
    orderId: uuid('order_id')
      .notNull()
      .references(() => orders.orderId),
    ...stockRowRef,
    name: text('name').notNull(),
    unitPrice: integer('unit_price').notNull(),
    quantity: integer('quantity').notNull(),
    lineTotal: bigint('line_total', { mode: 'number' }).notNull(),
    createdAt: timestamps.createdAt,
  },
  (t) => [
    index('order_items_order_idx').on(t.orderId),
    check('order_items_quantity_positive', sql`${t.quantity} > 0`),
  ],
);

export const stockReservations = pgTable(
  'stock_reservations',
  {
    reservationId: uuid('reservation_id').primaryKey().defaultRandom(),
    orderId: uuid('order_id')
      .notNull()
      .references(() => orders.orderId),
    orderItemId: uuid('order_item_id')
      .notNull()
      .references(() => orderItems.orderItemId),
    ...stockRowRef,
    /** The location whose units this reservation holds. */
    location: text('location')
      .notNull()
      .references(() => locations.code),
    quantity: integer('quantity').notNull(),
    status: text('status', { enum: RESERVATION_STATUSES }).notNull().default('active'),
    reservedAt: timestamp('reserved_at', { withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    releasedAt: timestamp('released_at', { withTimezone: true }),
    updatedAt: timestamps.updatedAt,
  },
  (t) => [
    index('stock_reservations_order_idx').on(t.orderId),
    // Foreign-key targets need an index on the referencing side, or deleting the parent
    // (loadtest cleanup) scans this table once per row.
    index('stock_reservations_order_item_idx').on(t.orderItemId),
    index('stock_reservations_active_expiry_idx').on(t.expiresAt).where(sql`status = 'active'`),
    index('stock_reservations_active_sku_idx').on(t.sku, t.location).where(sql`status = 'active'`),
    check('stock_reservations_quantity_positive', sql`${t.quantity} > 0`),
    check('stock_reservations_status_valid', sql`${t.status} IN ('active','converted','expired','cancelled')`),
  ],
);

/** The ledger: one row per change of a stock level's on hand, reserved or incoming units. */
export const stockMovements = pgTable(
  'stock_movements',
  {
    movementId: bigserial('movement_id', { mode: 'number' }).primaryKey(),
    ...stockRowRef,
    location: text('location')
      .notNull()
      .references(() => locations.code),
    kind: text('kind').notNull(),
    stockDelta: integer('stock_delta').notNull().default(0),
    reservedDelta: integer('reserved_delta').notNull().default(0),
    incomingDelta: integer('incoming_delta').notNull().default(0),
    orderId: uuid('order_id').references(() => orders.orderId),
    reservationId: uuid('reservation_id').references(() => stockReservations.reservationId),
    transferId: bigint('transfer_id', { mode: 'number' }).references(() => transfers.transferId),
    actor: text('actor').notNull(),
    reason: text('reason'),
    createdAt: timestamps.createdAt,
  },
  (t) => [
    index('stock_movements_sku_idx').on(t.sku, t.location),
    index('stock_movements_transfer_idx').on(t.transferId),
    index('stock_movements_order_idx').on(t.orderId),
    index('stock_movements_reservation_idx').on(t.reservationId),
    index('stock_movements_created_idx').on(t.createdAt),
  ],
);

export const sweepRuns = pgTable(
  'sweep_runs',
  {
    runId: bigserial('run_id', { mode: 'number' }).primaryKey(),
    startedAt: timestamp('started_at', { withTimezone: true }).notNull().defaultNow(),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
    ordersExpired: integer('orders_expired').notNull().default(0),
    unitsReleased: integer('units_released').notNull().default(0),
    batches: integer('batches').notNull().default(0),
    dryRun: boolean('dry_run').notNull().default(false),
    actor: text('actor'),
    error: text('error'),
  },
  (t) => [index('sweep_runs_started_idx').on(t.startedAt)],
);

/**
 * Every sellable SKU with its stock summed over its locations: products without variants,
 * and variants. On hand, reserved and incoming are sums; `available` sums each active
 * location's units on hand and not reserved, each clamped at 0 first, so that no location
 * can add to or hide another's, and an inactive one adds nothing. Reads go through this
 * view; writes go to stock_levels (see engine/stock.ts).
 */
export const stockItems = pgView('stock_items', {
  productId: uuid('product_id').notNull(),
  variantId: uuid('variant_id'),
  sku: text('sku').notNull(),
  name: text('name').notNull(),
  price: integer('price').notNull(),
  stockQuantity: integer('stock_quantity').notNull(),
  reservedStock: integer('reserved_stock').notNull(),
  incoming: integer('incoming').notNull(),
  available: integer('available').notNull(),
  version: integer('version').notNull(),
  inStock: boolean('in_stock').notNull(),
  locations: integer('locations').notNull(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull(),
}).as(sql`
  SELECT c.product_id, c.variant_id, c.sku, c.name, c.price,
         coalesce(t.stock_quantity, 0) AS stock_quantity, coalesce(t.reserved_stock, 0) AS reserved_stock,
         coalesce(t.incoming, 0) AS incoming, coalesce(t.available, 0) AS available,
         coalesce(t.version, 0) AS version, coalesce(t.available, 0) > 0 AS in_stock,
         coalesce(t.locations, 0) AS locations, greatest(c.updated_at, t.updated_at) AS updated_at
    FROM (SELECT p.product_id, NULL::uuid AS variant_id, p.sku, p.name, p.price, p.updated_at
            FROM products p
           WHERE NOT EXISTS (SELECT 1 FROM product_variants v WHERE v.product_id = p.product_id)
          UNION ALL
          SELECT v.product_id, v.variant_id, v.sku, v.name, v.price, v.updated_at
            FROM product_variants v) c
    LEFT JOIN LATERAL (
          SELECT sum(l.stock_quantity)::int AS stock_quantity, sum(l.reserved_stock)::int AS reserved_stock,
                 sum(l.incoming)::int AS incoming,
                 (coalesce(sum(greatest(l.stock_quantity - l.reserved_stock, 0)) FILTER (WHERE loc.active), 0))::int AS available,
                 sum(l.version)::int AS version, count(*)::int AS locations, max(l.updated_at) AS updated_at
            FROM stock_levels l JOIN locations loc ON loc.code = l.location
           WHERE l.sku = c.sku) t ON true`);

/** The fulfilment states after payment, in the only order an order may move through them. */
export const FULFILMENT_STATUSES = ['processing', 'shipped', 'delivered'] as const;

/** Each fulfilment step of an order (paid → processing → shipped → delivered): who and when. */
export const orderStatusHistory = pgTable(
  'order_status_history',
  {
    historyId: bigserial('history_id', { mode: 'number' }).primaryKey(),
    orderId: uuid('order_id')
      .notNull()
      .references(() => orders.orderId),
    fromStatus: text('from_status').notNull(),
    toStatus: text('to_status').notNull(),
    actor: text('actor').notNull(),
    createdAt: timestamps.createdAt,
  },
  (t) => [index('order_status_history_order_idx').on(t.orderId, t.historyId)],
);

export { TOKEN_ROLES };

/**
 * API tokens for `stockctl serve`. Only the SHA-256 of a token is stored: the token
 * itself is shown once, when created. The name is the actor recorded with every change.
 */
export const apiTokens = pgTable(
  'api_tokens',
  {
    tokenId: bigserial('token_id', { mode: 'number' }).primaryKey(),
    name: text('name').notNull(),
    role: text('role', { enum: TOKEN_ROLES }).notNull(),
    tokenHash: text('token_hash').notNull(),
    createdAt: timestamps.createdAt,
    createdBy: text('created_by'),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
  },
  (t) => [
    uniqueIndex('api_tokens_name_key').on(t.name),
    uniqueIndex('api_tokens_hash_key').on(t.tokenHash),
    check('api_tokens_role_valid', sql`${t.role} IN ('read','shop','support','admin')`),
  ],
);

/**
 * The processes listening for live stock (`serve` with an open event stream, `stock
 * --watch`), one row per LISTEN session. A row whose session is gone counts for nothing
 * and is removed by the next listener to register or leave, and by `sweep`.
 */
export const stockListeners = pgTable('stock_listeners', {
  listenerId: bigserial('listener_id', { mode: 'number' }).primaryKey(),
  pid: integer('pid').notNull(),
  backendStart: timestamp('backend_start', { withTimezone: true }).notNull(),
  application: text('application').notNull(),
  registeredAt: timestamp('registered_at', { withTimezone: true }).notNull().defaultNow(),
});

/**
 * How many sessions listen for live stock: the count of live rows of stock_listeners, set
 * (under one lock) whenever a listener registers or leaves. A stock change reads it after
 * its first row changed and sends its NOTIFY only when it is above 0: a notifying commit
 * takes a lock that every other notifying commit waits for, and nobody listening must cost
 * the write path nothing. A sequence, because its value is read as it is now, whatever the
 * reader's snapshot, without a snapshot of its own; src/engine/stock-events.ts says why
 * that loses no change.
 */
export const stockListenersLive = pgSequence('stock_listeners_live', { minValue: 0, startWith: 0 });
