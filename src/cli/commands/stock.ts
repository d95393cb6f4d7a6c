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
  if (flags.watch) return watch(ctx, { skus, low });
  const { db } = await ctx.openDb({ application: 'stockctl-stock' });
  const { listStock } = await import('../../engine/catalogue.js');
  const items = await listStock(db, { skus, low });
  ctx.out.result({ items }, () => ctx.out.line(renderStock(ctx, items)));
}

/**
 * `stock --watch`: the rows, redrawn on every committed stock change, from the same
 * LISTEN/NOTIFY feed as the server's /stock/events (no polling). With --json, one JSON
 * line per change (the changed row as a `stock --json` item), for piping.
 */
async function watch(ctx: CommandContext, filter: { skus: string[]; low?: number }) {
  const database = await ctx.openDb({ application: 'stockctl-stock-watch' });
  const { listStock } = await import('../../engine/catalogue.js');
  const { listenForStock } = await import('../../engine/stock-events.js');
  const wanted = filter.skus.length > 0 ? new Set(filter.skus) : undefined;
  const shown = (item: StockItem) => (!wanted || wanted.has(item.sku)) && (filter.low === undefined || item.available <= filter.low);
  const rows = new Map<string, StockItem>();
  let lastChange = '';
  const draw = () => {
    const clear = process.stdout.isTTY ? '\x1b[2J\x1b[H' : '';
    const items = [...rows.values()].filter(shown).sort((a, b) => (a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : 0));
    const change = lastChange ? `Last change: ${lastChange}\n` : '';
    ctx.out.line(`${clear}${new Date().toISOString()}  (Ctrl-C to stop)\n${change}${renderStock(ctx, items)}`);
  };
  const reload = async () => {
    rows.clear();
    for (const item of await listStock(database.db, { skus: filter.skus })) rows.set(item.sku, item);
  };
  // Listen first, then read: a change committed in between is heard (and versions only grow).
  const events = await listenForStock(database.sql, {
    onReconnect: () => void reload().then(() => !ctx.out.json && draw(), () => {}),
  });
  try {
    await reload();
    if (!ctx.out.json) draw();
    events.subscribe((item) => {
      const before = rows.get(item.sku);
      if (before && before.version >= item.version) return;
      if (!before && wanted && !wanted.has(item.sku)) return;
      rows.set(item.sku, item);
      if (ctx.out.json) {
        if (shown(item)) ctx.out.line(JSON.stringify(item));
        return;
      }
      lastChange = `${item.sku}: ${before ? `${before.available} → ` : ''}${item.available} available (version ${item.version})`;
      draw();
    });
    await new Promise<void>((resolve) => {
      if (ctx.signal.aborted) resolve();
      else ctx.signal.addEventListener('abort', () => resolve(), { once: true });
    });
  } finally {
    await events.close();
  }
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
  const input = { sku: parseSku(skuArg), quantity: parseStockLevel(qtyArg), reason: parseText(flags.reason, 'reason'), actor: ctx.config.actor };
  const { db } = await ctx.openDb({ application: 'stockctl-stock', lockTimeoutMs: 10_000 });
  const { changeStock } = await import('../../engine/catalogue.js');
  renderChange(ctx, await changeStock(db, input));
}

export async function adjust(ctx: CommandContext, skuArg: string, deltaArg: string, flags: { reason?: string }) {
  const input = { sku: parseSku(skuArg), delta: parseDelta(deltaArg), reason: parseText(flags.reason, 'reason'), actor: ctx.config.actor };
  const { db } = await ctx.openDb({ application: 'stockctl-stock', lockTimeoutMs: 10_000 });
  const { changeStock } = await import('../../engine/catalogue.js');
  renderChange(ctx, await changeStock(db, input));
}
