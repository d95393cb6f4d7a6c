/**
 * Live stock changes, for `serve` (GET /stock/events) and `stock --watch`. Every stock
 * change sends a NOTIFY on STOCK_CHANNEL in its own transaction (src/engine/stock.ts), so
 * a listener hears of a change only once it is committed, and of every committed change.
 * One LISTEN connection per process fans each notification out to its subscribers.
 */
import type postgres from 'postgres';
import type { StockItem } from './catalogue.js';

export const STOCK_CHANNEL = 'stockctl_stock';

export type StockListener = (item: StockItem) => void;

export interface StockEvents {
  subscribe(listener: StockListener): () => void;
  /** Stop listening (the LISTEN connection is closed with the pool). */
  close(): Promise<void>;
}

/** Parse one notification's payload; a malformed one (never sent by stockctl) is dropped. */
export function parseStockNotification(payload: string): StockItem | undefined {
  try {
    const item = JSON.parse(payload) as StockItem;
    return typeof item?.sku === 'string' ? item : undefined;
  } catch {
    return undefined;
  }
}

export async function listenForStock(sql: postgres.Sql, opts: { onReconnect?: () => void } = {}): Promise<StockEvents> {
  const listeners = new Set<StockListener>();
  let first = true;
  const { unlisten } = await sql.listen(
    STOCK_CHANNEL,
    (payload) => {
      const item = parseStockNotification(payload);
      if (!item) return;
      for (const listener of listeners) listener(item);
    },
    () => {
      // Called on the first LISTEN and again after postgres.js re-established a lost one:
      // changes made while it was down were not heard, so clients should re-read.
      if (!first) opts.onReconnect?.();
      first = false;
    },
  );
  return {
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close() {
      listeners.clear();
      await unlisten().catch(() => {});
    },
  };
}
