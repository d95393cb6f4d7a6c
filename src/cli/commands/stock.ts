import type { CommandContext } from '../run.js';
import { InvalidInputError } from '../../errors.js';
import { parseDelta, parseSku, parseStockLevel, parseText } from '../../engine/input.js';
import type { LevelItem, StockChangeResult, StockItemByLocation } from '../../engine/catalogue.js';
import { parseLocationCode } from '../../engine/locations.js';
import type { StockItem } from '../../engine/stock-item.js';

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

/** Each SKU at each location (`--by-location`), or at one (`--location`). */
function renderLevels(ctx: CommandContext, levels: LevelItem[]): string {
  const { chalk } = ctx.out;
  if (levels.length === 0) return 'No stock levels match.';
  return ctx.out.table(
    ['SKU', 'Name', 'Location', 'On hand', 'Reserved', 'Incoming', 'Available', 'Version'],
    levels.map((l) => [
      l.sku,
      l.name,
      l.active ? l.location : `${l.location} ${chalk.dim('(inactive)')}`,
      l.stock_quantity,
      l.reserved_stock,
      l.incoming,
      l.available > 0 ? l.available : chalk.red(String(l.available)),
      l.version,
    ]),
    { align: ['left', 'left', 'left', 'right', 'right', 'right', 'right', 'right'] },
  );
}

export async function show(ctx: CommandContext, skuArgs: string[], flags: { low?: string; watch?: boolean; byLocation?: boolean; location?: string }) {
  const skus = skuArgs.map(parseSku);
  const low = flags.low === undefined ? undefined : parseStockLevel(flags.low, '--low value');
  const location = flags.location === undefined ? undefined : parseLocationCode(flags.location);
  if (flags.watch) {
    if (location !== undefined || flags.byLocation) throw new InvalidInputError('stock --watch shows the totals: leave out --location and --by-location.');
    return watch(ctx, { skus, low });
  }
  if (location !== undefined && flags.byLocation) throw new InvalidInputError('Give --by-location or --location, not both.');
  const { db } = await ctx.openDb({ application: 'stockctl-stock' });
  const { listStock, listLevels, withLevels } = await import('../../engine/catalogue.js');
  if (location !== undefined) {
    const { findLocation } = await import('../../engine/locations.js');
    await findLocation(db, location);
    if (skus.length > 0) await listStock(db, { skus });
    const levels = (await listLevels(db, { skus, location })).filter((l) => low === undefined || l.available <= low);
    return ctx.out.result({ location, items: levels }, () => ctx.out.line(renderLevels(ctx, levels)));
  }
  const items = await listStock(db, { skus, low });
  if (flags.byLocation) {
    const byLocation: StockItemByLocation[] = await withLevels(db, items);
    const levels = byLocation.flatMap((i) => i.levels.map((l) => ({ sku: i.sku, name: i.name, ...l })));
    return ctx.out.result({ items: byLocation }, () => ctx.out.line(`${renderStock(ctx, items)}\n${renderLevels(ctx, levels)}`));
  }
  ctx.out.result({ items }, () => ctx.out.line(renderStock(ctx, items)));
}

/**
 * `stock --watch`: the rows, then redrawn on every committed stock change, from the same
 * feed as the server's /stock/events (no polling): it joins the feed first, then reads
 * the rows, so no change in between is missed. With --json, one JSON line per row (a
 * `stock --json` item), then one per change, for piping; a consumer that keeps the highest
 * version per SKU holds the database's state. If the feed lost its session, it joins and
 * reads again, and prints the rows that changed meanwhile.
 */
async function watch(ctx: CommandContext, filter: { skus: string[]; low?: number }) {
  const database = await ctx.openDb({ application: 'stockctl-stock-watch' });
  const listenUrl = ctx.config.listenUrl ?? (database.pooled ? undefined : database.url);
  if (!listenUrl) {
    throw new InvalidInputError(
      'stock --watch needs a PostgreSQL session of its own, which a pooler in transaction mode cannot keep; set STOCKCTL_LISTEN_URL to PostgreSQL itself (or to a pool in session mode).',
      'listen_needs_session',
    );
  }
  const { listStock } = await import('../../engine/catalogue.js');
  const { openStockFeed } = await import('../../engine/stock-events.js');
  const { DatabaseUnavailableError } = await import('../../errors.js');
  const feed = openStockFeed({
    url: listenUrl,
    application: 'stockctl-stock-watch',
    client: { statementTimeoutS: ctx.config.statementTimeoutS },
    // The levels of the SKUs watched, not of the whole catalogue.
    skus: filter.skus.length > 0 ? filter.skus : undefined,
  });
  const wanted = filter.skus.length > 0 ? new Set(filter.skus) : undefined;
  const shown = (item: StockItem) => filter.low === undefined || item.available <= filter.low;
  const rows = new Map<string, StockItem>();
  let lastChange = '';
  const draw = () => {
    const clear = process.stdout.isTTY ? '\x1b[2J\x1b[H' : '';
    const items = [...rows.values()].filter(shown).sort((a, b) => (a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : 0));
    const change = lastChange ? `Last change: ${lastChange}\n` : '';
    ctx.out.line(`${clear}${new Date().toISOString()}  (Ctrl-C to stop)\n${change}${renderStock(ctx, items)}`);
  };
  /** Keep the higher version of each row; true when this one is newer than what we had. */
  const take = (item: StockItem, change = false): boolean => {
    const before = rows.get(item.sku);
    if (before && before.version >= item.version) return false;
    rows.set(item.sku, item);
    if (change) lastChange = `${item.sku}: ${before ? `${before.available} → ` : ''}${item.available} available (version ${item.version})`;
    return true;
  };
  const stopped = new Promise<void>((resolve) => {
    if (ctx.signal.aborted) resolve();
    else ctx.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  let listed = false;
  try {
    while (!ctx.signal.aborted) {
      let live = false;
      const early: StockItem[] = [];
      let lost = () => {};
      const ended = new Promise<void>((resolve) => (lost = resolve));
      const onChange = (item: StockItem) => {
        if (!live) return void early.push(item);
        if (!take(item, true)) return;
        if (!ctx.out.json) draw();
        else if (shown(item)) ctx.out.line(JSON.stringify(item));
      };
      let subscription;
      try {
        subscription = await feed.subscribe({ skus: wanted, onEvent: (e) => onChange(e.item), onEnd: () => lost() }, { waitMs: 30_000 });
      } catch (err) {
        // Once it has shown the rows, a database away for a while is waited out.
        if (!listed || !(err instanceof DatabaseUnavailableError)) throw err;
        ctx.out.note(`Live stock: ${err.message} Trying again.`);
        await Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, 2000))]);
        continue;
      }
      try {
        const snapshot = await listStock(database.db, { skus: filter.skus });
        const first = !listed;
        const fresh = [...snapshot, ...early].filter((item) => take(item));
        listed = live = true;
        if (!ctx.out.json) draw();
        else for (const item of first ? [...rows.values()].sort((a, b) => (a.sku < b.sku ? -1 : 1)) : fresh) if (shown(item)) ctx.out.line(JSON.stringify(item));
        await Promise.race([ended, stopped]);
      } finally {
        subscription.close();
      }
    }
  } finally {
    await feed.close();
  }
}

function renderChange(ctx: CommandContext, r: StockChangeResult, named: boolean) {
  const what = named ? `${r.sku} at ${r.location}` : r.sku;
  ctx.out.result(r, () => {
    if (!r.changed) ctx.out.line(`${what} already has ${r.stock_quantity} on hand; nothing changed.`);
    else
      ctx.out.line(
        `${what}: on hand ${r.previous_stock_quantity} → ${r.stock_quantity} (reserved ${r.reserved_stock}, available ${r.available}, version ${r.version}).`,
      );
  });
}


export async function set(ctx: CommandContext, skuArg: string, qtyArg: string, flags: { reason?: string; location?: string }) {
  const location = flags.location === undefined ? undefined : parseLocationCode(flags.location);
  const input = { sku: parseSku(skuArg), quantity: parseStockLevel(qtyArg), location, reason: parseText(flags.reason, 'reason'), actor: ctx.config.actor };
  const { db } = await ctx.openDb({ application: 'stockctl-stock', lockTimeoutMs: 10_000 });
  const { changeStock } = await import('../../engine/catalogue.js');
  renderChange(ctx, await changeStock(db, input), input.location !== undefined);
}

export async function adjust(ctx: CommandContext, skuArg: string, deltaArg: string, flags: { reason?: string; location?: string }) {
  const location = flags.location === undefined ? undefined : parseLocationCode(flags.location);
  const input = { sku: parseSku(skuArg), delta: parseDelta(deltaArg), location, reason: parseText(flags.reason, 'reason'), actor: ctx.config.actor };
  const { db } = await ctx.openDb({ application: 'stockctl-stock', lockTimeoutMs: 10_000 });
  const { changeStock } = await import('../../engine/catalogue.js');
  renderChange(ctx, await changeStock(db, input), input.location !== undefined);
}
