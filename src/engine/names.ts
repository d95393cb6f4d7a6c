/**
 * Names the command line offers as choices, apart from the modules that use them (which
 * load drizzle) so that `stockctl --help` loads nothing but this.
 */

/** How a reserve claims stock (src/engine/reserve/). */
export type Strategy = 'guarded' | 'optimistic' | 'locking' | 'batched';
export const STRATEGIES: Strategy[] = ['guarded', 'optimistic', 'locking', 'batched'];

/**
 * Where a reserve may take an order's units from when no single location covers all of it:
 * a line from several locations (`units`), each line from one (`lines`), or nowhere (`never`).
 */
export type SplitPolicy = 'units' | 'lines' | 'never';
export const SPLIT_POLICIES: SplitPolicy[] = ['units', 'lines', 'never'];
export const DEFAULT_SPLIT_POLICY: SplitPolicy = 'units';

/** What an API token may do, least to most. */
export { LOCATION_KINDS, TOKEN_ROLES } from '../db/limits.js';
