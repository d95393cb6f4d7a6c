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
    // One file at a time: the concurrency tests open up to 100 connections at once
    // (PostgreSQL's default max_connections), and would starve each other in parallel.
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
  },
});
