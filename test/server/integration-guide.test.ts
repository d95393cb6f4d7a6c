/**
 * The integration guide of docs/api.md, as an integrator follows it: types generated from
 * the running server's /openapi.json by openapi-typescript, the guide's checkout.ts
 * type-checked by tsc against them (strict), compiled, and run with openapi-fetch against
 * the server. Its output is what the guide says it prints.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';
import { startServer, type RunningServer } from './_server.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const t = useTestDatabase();
let server: RunningServer;
let shop = '';
let dir = '';

/** The fenced block after a marker line of the API guide. */
function guideBlock(marker: string): string {
  const guide = fs.readFileSync(path.join(root, 'docs/api.md'), 'utf8');
  const at = guide.indexOf(marker);
  expect(at, marker).toBeGreaterThan(0);
  const match = /```ts\n([\s\S]*?)\n```/.exec(guide.slice(at));
  return `${match![1]}\n`;
}

function run(command: string, args: string[], env: Record<string, string> = {}) {
  const res = spawnSync(command, args, { cwd: dir, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
  expect({ command: [path.basename(command), ...args].join(' '), code: res.status, stderr: res.stderr }).toMatchObject({ code: 0 });
  return res.stdout;
}

beforeAll(async () => {
  expect((await t.cli(['product', 'add', 'TEE', '--name', 'T-shirt', '--price', '10', '--stock', '10'])).code).toBe(0);
  const token = await t.cliJson<{ token: string }>(['token', 'create', 'checkout', '--role', 'shop']);
  shop = token.json.token;
  server = await startServer(t.url);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stockctl-guide-'));
  // An ES module project whose dependencies are this repository's (openapi-fetch, openapi-typescript, typescript).
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ type: 'module', private: true }));
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
});

afterAll(async () => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  const res = await server?.stop();
  if (res) expect(res.code, res.stderr).toBe(0);
});

describe('the integration guide', () => {
  it('generates the types, type-checks checkout.ts against them, and runs it against the server', () => {
    const bin = (name: string) => path.join(root, 'node_modules', '.bin', name);
    run(bin('openapi-typescript'), [`${server.url}/openapi.json`, '-o', 'stockctl-api.d.ts']);
    fs.writeFileSync(path.join(dir, 'checkout.ts'), guideBlock('<!-- integration guide: the test runs the next block as checkout.ts -->'));
    run(bin('tsc'), ['--strict', '--module', 'nodenext', '--target', 'es2022', '--skipLibCheck', 'checkout.ts']);
    const out = run(process.execPath, ['checkout.js'], { STOCKCTL_API: server.url, STOCKCTL_TOKEN: shop });
    expect(out.trim().split('\n')).toEqual(['201 pending 2000', '200 true true', '200 paid', "409 { sku: 'TEE', requested: 1000, available: 8 }", '200 true']);
  }, 120_000);
});
