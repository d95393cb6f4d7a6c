/**
 * A stock row as stockctl shows it: `stock --json`, GET /stock, and each change the live
 * feed carries (src/engine/stock.ts announces it in this shape). Its own module, below the
 * catalogue and the feed, so that neither has to import the other for it.
 */
export interface StockItem {
  sku: string;
  name: string;
  stock_quantity: number;
  reserved_stock: number;
  /** Summed over the active locations, each clamped at 0. */
  available: number;
  /** On their way from another location (transfers): never available. */
  incoming: number;
  version: number;
  in_stock: boolean;
}
