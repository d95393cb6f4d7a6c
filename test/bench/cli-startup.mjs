#!/usr/bin/env node
// Wall time of whole invocations, median of N runs each, side by side in one run:
//   node -e 0            vs  stockctl --help            (target: <= 1.5x)
//   bare postgres.js one-query script  vs  stockctl reserve SKU:1   (target: <= 2x)
// Usage: DATABASE_URL=postgres://... node test/bench/cli-startup.mjs [runs]
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const runs = Number(process.argv[2] ?? 20);
const bin = `${root}bin/stockctl`;
if (!process.env.DATABASE_URL) {
  console.error('Set DATABASE_URL (the embedded server works too: DATABASE_URL=$(npx stockctl db url)).');
  process.exit(2);
}
const sku = `BENCH-${process.pid}`;

function time(args) {
  const samples = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: process.env });
    if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr}`);
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)];
}

spawnSync(process.execPath, [bin, 'product', 'add', sku, '--name', 'bench', '--stock', String(runs * 2 + 10)], { stdio: 'ignore' });
const nodeBare = time(['-e', '0']);
const help = time([bin, '--help']);
const bareQuery = time([`${root}test/bench/bare-query.mjs`]);
const reserve = time([bin, 'reserve', `${sku}:1`, '--ttl', '1s']);
const rows = [
  ['node -e 0', nodeBare, ''],
  ['stockctl --help', help, `${(help / nodeBare).toFixed(2)}x node -e 0`],
  ['bare postgres.js query script', bareQuery, ''],
  ['stockctl reserve SKU:1', reserve, `${(reserve / bareQuery).toFixed(2)}x bare script`],
];
console.log(`median of ${runs} runs each`);
for (const [name, ms, ratio] of rows) console.log(`${name.padEnd(32)} ${ms.toFixed(1).padStart(7)} ms  ${ratio}`);
