/**
 * What the lone and the batched reserve share: what a reserve is asked and what it
 * answers, and whether expired orders still hold the stock it is short of.
 */
import { sql } from 'drizzle-orm';
import type { Db } from '../../db/client.js';
import { array, rows } from '../../db/query.js';
import type { OrderLine } from '../input.js';
import type { SplitPolicy, Strategy } from '../names.js';

export interface ReserveInput {
  lines: OrderLine[];
  customerId?: string;
  ref?: string;
  /** The payment window, resolved by the caller (src/engine/windows.ts); else PAYMENT_TIMEOUT_MINUTES. */
  ttlSeconds?: number;
  /** Recorded on the order: how the customer pays, and the tier whose extra time the window includes. */
  paymentMethod?: string;
  priority?: string;
  strategy?: Strategy;
  /** Take every unit from this location (store pickup). */
  location?: string;
  /** When no single location covers the order; else DEFAULT_SPLIT_POLICY. */
  split?: SplitPolicy;
  actor: string;
}

/** Where a line's units are held: one reservation per (line, location). */
export interface ItemAllocation {
  location: string;
  quantity: number;
  reservation_id: string;
}

export interface ReservedItem {
  sku: string;
  quantity: number;
  /** The line's first reservation (its only one unless the line was split). */
  reservation_id: string;
  allocations: ItemAllocation[];
}

export interface ReserveResult {
  order_id: string;
  ref: string | null;
  status: string;
  customer_id: string | null;
  payment_expires_at: string;
  payment_method: string | null;
  /** The window the order was given, in seconds (null for orders made before it was recorded). */
  payment_window_seconds: number | null;
  priority: string | null;
  total: number;
  strategy: string;
  attempts: number;
  /** True when the ref named an existing order: nothing more was reserved. */
  replay: boolean;
  items: ReservedItem[];
  /** Stock retries (optimistic) and conflict retries (40001/40P01) this call needed. */
  retries: number;
  /** Expired orders released on the spot so that this reserve could succeed. */
  expired_orders_released: number;
}

/** Do unswept, expired orders still hold units of these SKUs? (One cheap indexed read.) */
export async function holdsExpiredReservations(db: Db, skus: string[]): Promise<boolean> {
  const [row] = await rows<{ held: boolean }>(
    db,
    sql`SELECT EXISTS (SELECT 1 FROM stock_reservations
                        WHERE status = 'active' AND expires_at < now() AND sku = ANY(${array(skus)}::text[])) AS held`,
  );
  return row.held;
}
