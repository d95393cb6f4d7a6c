/**
 * Reserve and its strategies, each file importing only those below it: this one picks how
 * an order is reserved, batched.ts is the `batched` strategy's per-pool batcher, alone.ts
 * reserves one order on its own (and takes the buyers a batch could not serve), and
 * shared.ts holds what both use.
 */
import type { Db } from '../../db/client.js';
import type { Settings } from '../settings.js';
import { reserveAlone } from './alone.js';
import { reserveBatched } from './batched.js';
import type { ReserveInput, ReserveResult } from './shared.js';

export { StockConflictError } from './alone.js';
export type { ReservedItem, ReserveInput, ReserveResult } from './shared.js';
export { STRATEGIES, type Strategy } from '../names.js';

/**
 * Reserve: the pending order, its lines, one reservation per (line, location) and the
 * ledger rows, or nothing at all. `batched` single-line orders not pinned to a location go
 * through this process's batcher for the pool (src/engine/reserve/batched.ts); everything
 * else is reserved on its own.
 */
export async function reserveOrder(db: Db, input: ReserveInput, settings: Settings): Promise<ReserveResult> {
  if (input.strategy === 'batched' && input.lines.length === 1 && input.location === undefined) return reserveBatched(db, input, settings);
  return reserveAlone(db, input, settings);
}
