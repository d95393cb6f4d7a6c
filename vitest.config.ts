import { defineConfig } from 'vitest/config';

/**
 * Every test runs against real PostgreSQL: DATABASE_URL if set, else the embedded
 * server. The global setup migrates one template database; each test file clones it.
 *
 * Two groups, one after the other. Most files run three at a time, each in its own
 * process: they spend their time waiting (on a deadline, a lock, a spawned stockctl), and
 * a file takes a handful of connections. The files that take (nearly) every connection
 * the server has (`up to 100 buyers`, a server filled until it refuses), size their run by
 * the room left, or race on tight timing, then run alone, one at a time.
 */
const ALONE = [
  'test/engine/contention.test.ts',
  'test/engine/expiry-race.test.ts',
  'test/engine/property.test.ts',
  'test/foundation/full-server.test.ts',
  'test/cli/loadtest-connections.test.ts',
  'test/driver/postgres-driver.test.ts',
  'test/cli/locations-races.test.ts',
  'test/engine/locations-contention.test.ts',
  'test/engine/locations-property.test.ts',
];

const common = {
  environment: 'node',
  pool: 'forks',
  testTimeout: 60_000,
  hookTimeout: 120_000,
  teardownTimeout: 60_000,
} as const;

export default defineConfig({
  test: {
    ...common,
    // Run once for both groups; they inherit what it provides.
    globalSetup: ['test/helpers/global-setup.ts'],
    projects: [
      {
        test: {
          ...common,
          name: 'shared',
          include: ['test/**/*.test.ts'],
          exclude: ALONE,
          maxWorkers: 3,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          ...common,
          name: 'alone',
          include: ALONE,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
