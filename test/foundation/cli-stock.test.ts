/**
 * The catalogue and stock commands as a user meets them: a spawned bin/stockctl with
 * no terminal, its stdout, stderr and exit code asserted separately, and the database
 * checked afterwards.
 */
import { describe, expect, it } from 'vitest';
import { ANSI_ESCAPE } from '../helpers/cli.js';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();

async function addProduct(sku: string, name: string, stock: number, extra: string[] = []) {
  const res = await t.cli(['product', 'add', sku, '--name', name, '--stock', String(stock), ...extra], {
    env: { STOCKCTL_ACTOR: 'setup' },
  });
  expect(res, res.stderr).toMatchObject({ code: 0, stderr: '' });
  return res;
}

async function stockRow(sku: string) {
  const [row] = await t.sql<{ stock_quantity: number; reserved_stock: number; version: number }[]>`
    SELECT stock_quantity, reserved_stock, version FROM stock_items WHERE sku = ${sku}`;
  return row;
}

async function ledger(sku: string) {
  return t.sql<{ kind: string; stock_delta: number; reserved_delta: number; actor: string; reason: string | null }[]>`
    SELECT kind, stock_delta, reserved_delta, actor, reason FROM stock_movements WHERE sku = ${sku} ORDER BY movement_id`;
}

describe('product add and stock', () => {
  it('adds a product and shows it in the stock table', async () => {
    const added = await addProduct('TEE', 'T-shirt', 10, ['--price', '19.99']);
    expect(added.stdout).toBe('Added product TEE "T-shirt" at 19.99 with 10 on hand.\n');

    // The product, and its one stock level: at 'default'.
    const rows = await t.sql`
      SELECT p.name, p.price, l.location, l.stock_quantity, l.reserved_stock, l.incoming, l.version, l.in_stock
        FROM products p JOIN stock_levels l ON l.product_id = p.product_id WHERE p.sku = 'TEE'`;
    expect(rows).toEqual([
      { name: 'T-shirt', price: 1999, location: 'default', stock_quantity: 10, reserved_stock: 0, incoming: 0, version: 1, in_stock: true },
    ]);

    const shown = await t.cli(['stock', 'TEE']);
    expect(shown.code).toBe(0);
    expect(shown.stderr).toBe('');
    expect(shown.stdout).not.toMatch(ANSI_ESCAPE);
    const lines = shown.stdout.trimEnd().split('\n');
    expect(lines[1]).toMatch(/^│ SKU\s+│ Name\s+│ On hand │ Reserved │ Available │ Version │ In stock │$/);
    expect(lines[3]).toMatch(/^│ TEE\s+│ T-shirt\s+│\s+10 │\s+0 │\s+10 │\s+1 │ yes\s+│$/);
    expect(lines).toHaveLength(5);
  });

  it('stock --json prints exactly {"items": [...]} with the documented fields', async () => {
    await addProduct('MUG', 'Mug', 3);
    await addProduct('CAP', 'Cap', 0);

    const res = await t.cliJson(['stock', 'MUG', 'CAP']);
    expect(res.code).toBe(0);
    expect(res.stderr).toBe('');
    expect(res.json).toEqual({
      items: [
        { sku: 'CAP', name: 'Cap', stock_quantity: 0, reserved_stock: 0, available: 0, incoming: 0, version: 0, in_stock: false },
        { sku: 'MUG', name: 'Mug', stock_quantity: 3, reserved_stock: 0, available: 3, incoming: 0, version: 1, in_stock: true },
      ],
    });
    expect(Object.keys((res.json as { items: object[] }).items[0])).toEqual([
      'sku',
      'name',
      'stock_quantity',
      'reserved_stock',
      'available',
      'incoming',
      'version',
      'in_stock',
    ]);
  });

  it('stock --low shows only rows at or below the threshold', async () => {
    await addProduct('LOW-A', 'Low A', 1);
    await addProduct('LOW-B', 'Low B', 50);
    const res = await t.cliJson<{ items: { sku: string }[] }>(['stock', 'LOW-A', 'LOW-B', '--low', '5']);
    expect(res.code).toBe(0);
    expect(res.json.items.map((i) => i.sku)).toEqual(['LOW-A']);
  });
});

describe('stock set and stock adjust', () => {
  it('records every change in the ledger with its actor and reason, and bumps the version each time', async () => {
    await addProduct('LEDGER', 'Ledger test', 10);

    // --actor wins over STOCKCTL_ACTOR.
    const minus = await t.cli(['stock', 'adjust', 'LEDGER', '-2', '--reason', 'damaged', '--actor', 'alice'], {
      env: { STOCKCTL_ACTOR: 'bob' },
    });
    expect(minus).toMatchObject({ code: 0, stderr: '' });
    expect(minus.stdout).toBe('LEDGER: on hand 10 → 8 (reserved 0, available 8, version 2).\n');

    const plus = await t.cli(['stock', 'adjust', 'LEDGER', '+3', '--reason', 'found in back room'], {
      env: { STOCKCTL_ACTOR: 'bob' },
    });
    expect(plus).toMatchObject({ code: 0, stderr: '' });
    expect(plus.stdout).toBe('LEDGER: on hand 8 → 11 (reserved 0, available 11, version 3).\n');

    const set = await t.cliJson(['stock', 'set', 'LEDGER', '20', '--reason', 'recount', '--actor', 'carol']);
    expect(set.code).toBe(0);
    expect(set.json).toMatchObject({
      sku: 'LEDGER',
      stock_quantity: 20,
      previous_stock_quantity: 11,
      reserved_stock: 0,
      available: 20,
      version: 4,
      in_stock: true,
      changed: true,
    });

    expect(await ledger('LEDGER')).toEqual([
      { kind: 'initial', stock_delta: 10, reserved_delta: 0, actor: 'setup', reason: 'initial stock' },
      { kind: 'adjust', stock_delta: -2, reserved_delta: 0, actor: 'alice', reason: 'damaged' },
      { kind: 'adjust', stock_delta: 3, reserved_delta: 0, actor: 'bob', reason: 'found in back room' },
      { kind: 'set', stock_delta: 9, reserved_delta: 0, actor: 'carol', reason: 'recount' },
    ]);
    expect(await stockRow('LEDGER')).toEqual({ stock_quantity: 20, reserved_stock: 0, version: 4 });
  });

  it('stock set to the current level changes nothing and writes no ledger row', async () => {
    await addProduct('SAME', 'Same', 4);
    const res = await t.cli(['stock', 'set', 'SAME', '4']);
    expect(res).toMatchObject({ code: 0, stderr: '', stdout: 'SAME already has 4 on hand; nothing changed.\n' });
    expect(await stockRow('SAME')).toEqual({ stock_quantity: 4, reserved_stock: 0, version: 1 });
    expect(await ledger('SAME')).toHaveLength(1);
  });

  it('refuses to set stock below what pending orders hold (exit 5), and changes nothing', async () => {
    await addProduct('HOLD', 'Held', 5);
    await t.sql`UPDATE stock_levels SET reserved_stock = 3 WHERE sku = 'HOLD' AND location = 'default'`; // as a pending order would
    const before = await stockRow('HOLD');

    const res = await t.cli(['stock', 'set', 'HOLD', '2']);
    expect(res.code).toBe(5);
    expect(res.stdout).toBe('');
    expect(res.stderr).toMatch(/^error: .*HOLD.*3 units are reserved/);

    const adjust = await t.cliJson(['stock', 'adjust', 'HOLD', '-3']);
    expect(adjust.code).toBe(5);
    expect(adjust.stderr).toBe('');
    expect(adjust.json).toEqual({
      error: { code: 'stock_below_reserved', message: expect.stringContaining('HOLD'), sku: 'HOLD', location: 'default', requested: 2, reserved: 3 },
    });

    expect(await stockRow('HOLD')).toEqual(before);
    expect(await ledger('HOLD')).toHaveLength(1);

    // Down to exactly what is reserved is allowed.
    const exact = await t.cli(['stock', 'set', 'HOLD', '3']);
    expect(exact).toMatchObject({ code: 0, stderr: '' });
    expect(await stockRow('HOLD')).toEqual({ stock_quantity: 3, reserved_stock: 3, version: 2 });
  });

  it('an adjustment says what it would leave; past 1,000,000 units it is refused as set is (exit 5)', async () => {
    await addProduct('ADJ', 'Adjusted', 5);
    await t.sql`UPDATE stock_levels SET reserved_stock = 3 WHERE sku = 'ADJ' AND location = 'default'`; // as a pending order would
    const below = await t.cli(['stock', 'adjust', 'ADJ', '-4']);
    expect(below).toMatchObject({
      code: 5,
      stdout: '',
      stderr: 'error: Cannot adjust ADJ by -4 (to 1): 3 units are reserved by pending orders (cancel them or let them expire first).\n',
    });
    await t.cli(['stock', 'adjust', 'ADJ', '+999995']);
    const over = await t.cliJson(['stock', 'adjust', 'ADJ', '+1']);
    expect(over).toMatchObject({
      code: 5,
      json: { error: { code: 'stock_above_limit', message: 'Cannot adjust ADJ by +1 (to 1000001): a stock row holds at most 1000000 units.' } },
    });
    expect(await stockRow('ADJ')).toEqual({ stock_quantity: 1_000_000, reserved_stock: 3, version: 2 });
  });

  it('a product whose variants hold its stock names no stock row: not found (exit 4) naming its variants, for set, adjust, reserve and stock alike', async () => {
    await addProduct('PARENT', 'Parent', 0);
    await addProduct('PARENT-S', 'Parent S', 2, ['--parent', 'PARENT']);
    await addProduct('PARENT-M', 'Parent M', 2, ['--parent', 'PARENT']);
    const message = 'SKU "PARENT" is a product with variants, which hold its stock (PARENT-M, PARENT-S); use one of those SKUs.';
    for (const args of [['stock', 'set', 'PARENT', '5'], ['stock', 'adjust', 'PARENT', '+5'], ['reserve', 'PARENT:1'], ['stock', 'PARENT']]) {
      const res = await t.cliJson(args);
      expect(res, args.join(' ')).toMatchObject({
        code: 4,
        json: { error: { code: 'sku_not_found', message, sku: 'PARENT', variants: ['PARENT-M', 'PARENT-S'] } },
      });
    }
    expect((await t.cli(['stock', 'set', 'NO-SUCH', '5'])).code).toBe(4);
  });

  it("refuses `stock`'s own --low and --watch after set or adjust (exit 2) instead of ignoring them", async () => {
    await addProduct('OWN', 'Own', 3);
    const low = await t.cli(['stock', 'set', 'OWN', '23', '--low', 'abc']);
    expect(low).toMatchObject({ code: 2, stdout: '' });
    expect(low.stderr).toMatch(/^error: --low belongs to `stockctl stock` alone, not to `stock set`\./);
    const watch = await t.cliJson(['stock', 'adjust', 'OWN', '+1', '--watch']);
    expect(watch).toMatchObject({ code: 2, json: { error: { code: 'usage', message: '--watch belongs to `stockctl stock` alone, not to `stock adjust`.' } } });
    expect(await stockRow('OWN')).toMatchObject({ stock_quantity: 3 });
  });

  it('refuses to adjust stock below zero (exit 5)', async () => {
    await addProduct('FEW', 'Few', 1);
    const res = await t.cli(['stock', 'adjust', 'FEW', '-2']);
    expect(res.code).toBe(5);
    expect(res.stdout).toBe('');
    expect(res.stderr).toContain('FEW');
    expect(await stockRow('FEW')).toEqual({ stock_quantity: 1, reserved_stock: 0, version: 1 });
  });
});

describe('product add, what a careless hand types', () => {
  it('a price of too many digits is "too large", not a format error; a variant as --parent names its product', async () => {
    const price = await t.cli(['product', 'add', 'PRICEY', '--name', 'Pricey', '--price', '99999999999999']);
    expect(price).toMatchObject({ code: 2, stdout: '', stderr: 'error: Invalid price "99999999999999": too large (at most 1000000.00).\n' });
    await addProduct('SHIRT', 'Shirt', 0);
    await addProduct('SHIRT-M', 'Shirt M', 1, ['--parent', 'SHIRT']);
    const nested = await t.cliJson(['product', 'add', 'SHIRT-M-X', '--name', 'x', '--parent', 'SHIRT-M']);
    expect(nested).toMatchObject({
      code: 5,
      json: {
        error: {
          code: 'parent_is_variant',
          message: 'SKU "SHIRT-M" is a variant of SHIRT, and a variant has no variants of its own; use --parent SHIRT.',
        },
      },
    });
    expect(await t.sql`SELECT sku FROM product_variants WHERE sku = 'SHIRT-M-X'`).toEqual([]);
  });
});
