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

/** One SKU's stock at one location, as live stock carries it beside the SKU's totals. */
export interface StockLevelState {
  location: string;
  /** Whether the location sells: an inactive one's units count for nothing available. */
  active: boolean;
  stock_quantity: number;
  reserved_stock: number;
  incoming: number;
  available: number;
  version: number;
}

/** One SKU at one location, as `stock --location`, `stock --by-location` and GET /stock?location= show it. */
export interface LevelItem extends StockLevelState {
  sku: string;
  name: string;
  in_stock: boolean;
}

/** Units a level can sell: on hand less reserved, never below 0, and none at an inactive location. */
export const levelAvailable = (l: { active: boolean; stock_quantity: number; reserved_stock: number }) =>
  l.active ? Math.max(0, l.stock_quantity - l.reserved_stock) : 0;

/** A SKU's totals from its levels, as the stock_items view sums them. */
export function totalsOf(sku: string, name: string, levels: Iterable<StockLevelState>): StockItem {
  const item: StockItem = { sku, name, stock_quantity: 0, reserved_stock: 0, available: 0, incoming: 0, version: 0, in_stock: false };
  for (const l of levels) {
    item.stock_quantity += l.stock_quantity;
    item.reserved_stock += l.reserved_stock;
    item.incoming += l.incoming;
    item.available += levelAvailable(l);
    item.version += l.version;
  }
  item.in_stock = item.available > 0;
  return item;
}
