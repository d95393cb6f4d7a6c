/**
 * Where loadtest's products live: every run's SKUs start with this prefix, so they never
 * touch real catalogue rows, and whatever reports on the real catalogue (`check`'s low
 * stock rule) can leave them out. Kept apart from run.ts so that reading it loads nothing.
 */
export const LOADTEST_SKU_PREFIX = 'loadtest-';
