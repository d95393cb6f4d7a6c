import { defineConfig } from 'vitest/config';

/**
 * Every test runs against real PostgreSQL: DATABASE_URL if set, else the embedded
 * server. The global setup migrates one template database; each test file clones it.
 */
export default defineConfig({
  test: {
    environment: 'node',
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    // Files run in parallel, each in its own process; the CLI tests spawn processes
    // of their own, so keep the number of workers modest.
    pool: 'forks',
    maxWorkers: 3,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
  },
});
