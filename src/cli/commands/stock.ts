import type { CommandContext } from '../run.js';
import { parseDelta, parseSku, parseStockLevel, parseText } from '../../engine/input.js';
import type { StockChangeResult, StockItem } from '../../engine/catalogue.js';

function renderStock(ctx: CommandContext, items: StockItem[]): string {
  const { chalk } = ctx.out;
  if (items.length === 0) return 'No stock rows match.';
  return ctx.out.table(
    ['SKU', 'Name', 'On hand', 'Reserved', 'Available', 'Version', 'In stock'],
    items.map((i) => [
      i.sku,
      i.name,
      i.stock_quantity,
      i.reserved_stock,
      i.available > 0 ? i.available : chalk.red(String(i.available)),
      i.version,
      i.in_stock ? chalk.green('yes') : chalk.red('no'),
    ]),
    { align: ['left', 'left', 'right', 'right', 'right', 'right', 'left'] },
  );
}

export async function show(ctx: CommandContext, skuArgs: string[], flags: { low?: string; watch?: boolean }) {
  const skus = skuArgs.map(parseSku);
  const low = flags.low === undefined ? undefined : parseStockLevel(flags.low, '--low value');
  const { db } = await ctx.openDb({ application: 'stockctl-stock' });
  const { listStock } = await import('../../engine/catalogue.js');
  if (flags.watch && !ctx.out.json) {
    while (!ctx.signal.aborted) {
      const items = await listStock(db, { skus, low });
      const clear = process.stdout.isTTY ? '\x1b[2J\x1b[H' : '';
      ctx.out.line(`${clear}${new Date().toLocaleTimeString()}  (Ctrl-C to stop)\n${renderStock(ctx, items)}`);
      await new Promise((r) => setTimeout(r, 2000));
    }
    return;
  }
  const items = await listStock(db, { skus, low });
  ctx.out.result({ items }, () => ctx.out.line(renderStock(ctx, items)));
}

function renderChange(ctx: CommandContext, r: StockChangeResult) {
  ctx.out.result(r, () => {
    if (!r.changed) ctx.out.line(`${r.sku} already has ${r.stock_quantity} on hand; nothing changed.`);
    else
      ctx.out.line(
        `${r.sku}: on hand ${r.previous_stock_quantity} → ${r.stock_quantity} (reserved ${r.reserved_stock}, available ${r.available}, version ${r.version}).`,
      );
  });
}

export async function set(ctx: CommandContext, skuArg: string, qtyArg: string, flags: { reason?: string }) {
  const input = { sku: parseSku(skuArg), quantity: parseStockLevel(qtyArg), reason: parseText(flags.reason, 'reason'), actor: ctx.actor };
  const { db } = await ctx.openDb({ application: 'stockctl-stock', lockTimeoutMs: 10_000 });
  const { changeStock } = await import('../../engine/catalogue.js');
  renderChange(ctx, await changeStock(db, input));
}

export async function adjust(ctx: CommandContext, skuArg: string, deltaArg: string, flags: { reason?: string }) {
  const input = { sku: parseSku(skuArg), delta: parseDelta(deltaArg), reason: parseText(flags.reason, 'reason'), actor: ctx.actor };
  const { db } = await ctx.openDb({ application: 'stockctl-stock', lockTimeoutMs: 10_000 });
  const { changeStock } = await import('../../engine/catalogue.js');
  renderChange(ctx, await changeStock(db, input));
}
