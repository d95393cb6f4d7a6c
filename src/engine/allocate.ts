/**
 * Where an order's units come from: the one rule every reserve (and a late payment's
 * re-sale) follows, over levels the caller has locked, so what it decides is exact.
 *
 * 1. The single active location of highest priority that covers every line.
 * 2. Failing that, the split policy: `units` (each line from one location if one covers
 *    it, else from several in priority order), `lines` (each line from one location, the
 *    highest-priority that covers it) or `never`.
 * Demand is summed per SKU first, and a location's availability is clamped at 0, so that no
 * location adds to or hides another's. Inactive locations sell nothing.
 */
import type { Shortage } from '../errors.js';
import { sumBySku } from './input.js';
import type { SplitPolicy } from './names.js';
import { levelAvailable } from './stock-item.js';
import type { LevelRow } from './stock.js';

export { DEFAULT_SPLIT_POLICY, SPLIT_POLICIES, type SplitPolicy } from './names.js';

export interface Allocation {
  sku: string;
  location: string;
  quantity: number;
}


export type AllocationResult = { allocations: Allocation[] } | { short: Shortage[] };

/** Highest priority first; the code breaks ties, so the choice never depends on read order. */
const byPriority = (a: { priority: number; location: string }, b: { priority: number; location: string }) =>
  b.priority - a.priority || (a.location < b.location ? -1 : a.location > b.location ? 1 : 0);

export function allocate(lines: { sku: string; quantity: number }[], levels: LevelRow[], policy: SplitPolicy): AllocationResult {
  const demand = new Map(sumBySku(lines).map((l) => [l.sku, l.quantity]));
  const usable = levels.filter((l) => l.active).sort(byPriority);
  const at = new Map<string, Map<string, number>>(); // location → sku → available
  for (const l of usable) {
    const m = at.get(l.location) ?? new Map<string, number>();
    m.set(l.sku, levelAvailable({ active: l.active, stock_quantity: l.stockQuantity, reserved_stock: l.reservedStock }));
    at.set(l.location, m);
  }
  const locations = [...new Set(usable.map((l) => l.location))];
  const has = (location: string, sku: string) => at.get(location)?.get(sku) ?? 0;
  const total = (sku: string) => locations.reduce((n, loc) => n + has(loc, sku), 0);
  const best = (sku: string) => Math.max(0, ...locations.map((loc) => has(loc, sku)));
  const skus = [...demand.keys()].sort();

  const whole = locations.find((loc) => skus.every((sku) => has(loc, sku) >= demand.get(sku)!));
  if (whole) return { allocations: skus.map((sku) => ({ sku, location: whole, quantity: demand.get(sku)! })) };

  // What all active locations hold together, when the policy could not use all of it.
  const shortage = (sku: string, available: number): Shortage =>
    total(sku) > available ? { sku, requested: demand.get(sku)!, available, available_total: total(sku) } : { sku, requested: demand.get(sku)!, available };
  if (policy === 'never') {
    // One location or none: the lines the location that covers the most lines lacks, each
    // with the most any one location has of it.
    const covered = (loc: string) => skus.filter((sku) => has(loc, sku) >= demand.get(sku)!).length;
    const nearest = locations.reduce<string | undefined>((b, loc) => (b === undefined || covered(loc) > covered(b) ? loc : b), undefined);
    return {
      short: skus
        .filter((sku) => nearest === undefined || has(nearest, sku) < demand.get(sku)!)
        .map((sku) => shortage(sku, best(sku))),
    };
  }
  const allocations: Allocation[] = [];
  const short: Shortage[] = [];
  for (const sku of skus) {
    const want = demand.get(sku)!;
    const one = locations.find((loc) => has(loc, sku) >= want);
    if (one) allocations.push({ sku, location: one, quantity: want });
    else if (policy === 'lines') short.push(shortage(sku, best(sku)));
    else if (total(sku) < want) short.push(shortage(sku, total(sku)));
    else {
      let left = want;
      for (const loc of locations) {
        const take = Math.min(left, has(loc, sku));
        if (take > 0) allocations.push({ sku, location: loc, quantity: take });
        left -= take;
        if (left === 0) break;
      }
    }
  }
  return short.length > 0 ? { short } : { allocations };
}
