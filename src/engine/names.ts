/**
 * Names the command line offers as choices, apart from the modules that use them (which
 * load drizzle) so that `stockctl --help` loads nothing but this.
 */

/** How a reserve claims stock (src/engine/reserve/). */
export type Strategy = 'guarded' | 'optimistic' | 'locking' | 'batched';
export const STRATEGIES: Strategy[] = ['guarded', 'optimistic', 'locking', 'batched'];

/** What an API token may do, least to most. */
export { TOKEN_ROLES } from '../db/limits.js';
