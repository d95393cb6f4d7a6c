import { readFileSync } from 'node:fs';
import type { CommandContext } from '../run.js';
import { formatPrice, parseCount, parseDuration, parseOrderLines, parseRetrySetting, parseText } from '../../engine/input.js';
import { withRetryFlags } from '../../engine/settings.js';
import { InvalidInputError, StockctlError } from '../../errors.js';
import type { Strategy } from '../../engine/orders.js';

function timeLeft(seconds: number | null): string {
  if (seconds === null) return '';
  if (seconds <= 0) return 'expired';
  const m = Math.floor(seconds / 60);
  return m >= 60 ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m` : `${m}m${String(seconds % 60).padStart(2, '0')}s`;
}

function parseOrderKey(raw: string): string {
  const key = raw.trim();
  if (!key || key.length > 200) throw new InvalidInputError(`Invalid order "${raw}": give an order id or its ref.`);
  return key;
}

export async function reserve(
  ctx: CommandContext,
  items: string[],
  flags: { customer?: string; ref?: string; ttl?: string; strategy?: Strategy; maxRetries?: string; retryBackoff?: string },
) {
  const settings = withRetryFlags(ctx.settings, flags, parseRetrySetting);
  const input = {
    lines: parseOrderLines(items),
    customerId: parseText(flags.customer, 'customer id', 200),
    ref: flags.ref === undefined ? undefined : parseOrderKey(flags.ref),
    ttlSeconds: flags.ttl === undefined ? undefined : parseDuration(flags.ttl, '--ttl'),
    strategy: flags.strategy,
    actor: ctx.actor,
  };
  const { db } = await ctx.openDb({ application: 'stockctl-reserve', max: 1 });
  const { reserveOrder } = await import('../../engine/orders.js');
  const order = await reserveOrder(db, input, settings);
  ctx.out.result(order, () => {
    const { chalk } = ctx.out;
    const what = order.items.map((i) => `${i.sku}×${i.quantity}`).join(', ');
    if (order.replay) ctx.out.line(`Order ${chalk.bold(order.order_id)} already exists for ref ${order.ref} (${order.status}); nothing more reserved.`);
    else ctx.out.line(`Reserved ${what} as order ${chalk.bold(order.order_id)}${order.ref ? ` (ref ${order.ref})` : ''}, total ${formatPrice(order.total)}.`);
    if (order.status === 'pending') ctx.out.line(`Pay before ${order.payment_expires_at}: stockctl pay ${order.ref ?? order.order_id}`);
  });
}

export async function pay(ctx: CommandContext, key: string, flags: { paymentRef?: string; allowLate?: boolean }) {
  const input = { order: parseOrderKey(key), paymentRef: parseText(flags.paymentRef, 'payment ref', 200), allowLate: flags.allowLate, actor: ctx.actor };
  const { db } = await ctx.openDb({ application: 'stockctl-pay', max: 1, lockTimeoutMs: 10_000 });
  const { payOrder } = await import('../../engine/orders.js');
  const paid = await payOrder(db, input);
  ctx.out.result(paid, () => {
    if (paid.replay) ctx.out.line(`Order ${paid.order_id} was already paid at ${paid.paid_at}; nothing changed.`);
    else ctx.out.line(`Order ${paid.order_id} paid${paid.late ? ' (late)' : ''}: ${paid.units_sold} unit(s) sold.`);
  });
}

function readOrderList(source: string): string[] {
  const text = readFileSync(source === '-' ? 0 : source, 'utf8');
  return text
    .split(/\r?\n/)
    .map((l) => l.replace(/#.*/, '').trim())
    .filter(Boolean);
}

export async function cancel(
  ctx: CommandContext,
  keys: string[],
  flags: { reason?: string; restock?: boolean; fromFile?: string; dryRun?: boolean },
) {
  let orders = keys.map(parseOrderKey);
  if (flags.fromFile !== undefined) {
    try {
      orders = orders.concat(readOrderList(flags.fromFile).map(parseOrderKey));
    } catch (err) {
      if (err instanceof StockctlError) throw err;
      throw new InvalidInputError(`Cannot read orders from "${flags.fromFile}": ${(err as Error).message}.`);
    }
  }
  orders = [...new Set(orders)];
  if (orders.length === 0) throw new InvalidInputError('Name at least one order (id or ref), or use --from-file FILE (- for stdin).');
  const reason = parseText(flags.reason, 'reason');
  const { db } = await ctx.openDb({ application: 'stockctl-cancel', max: 1, lockTimeoutMs: 10_000 });
  const { cancelOrder } = await import('../../engine/orders.js');
  const { toDomainError } = await import('../../db/errors.js');
  const results: Record<string, unknown>[] = [];
  let worst = 0;
  const spinner = orders.length > 1 ? ctx.out.spinner(`Cancelling ${orders.length} orders`) : undefined;
  for (const [i, order] of orders.entries()) {
    if (ctx.signal.aborted) break;
    if (spinner) spinner.text = `Cancelling orders: ${i}/${orders.length}`;
    try {
      const r = await cancelOrder(db, { order, reason, restock: flags.restock, dryRun: flags.dryRun, actor: ctx.actor });
      results.push({ order, ...r, exit_code: 0 });
    } catch (err) {
      const e = toDomainError(err);
      if (!(e instanceof StockctlError) || e.exitCode === 7) throw e;
      results.push({ order, outcome: 'error', exit_code: e.exitCode, error: { code: e.code, message: e.message } });
      worst = Math.max(worst, e.exitCode);
    }
  }
  spinner?.stop();
  const count = (o: string) => results.filter((r) => r.outcome === o).length;
  const summary = {
    dry_run: Boolean(flags.dryRun),
    cancelled: count('cancelled') + count('restocked'),
    already_cancelled: count('already_cancelled'),
    failed: count('error'),
    results,
  };
  ctx.out.result(summary, () => {
    const { chalk } = ctx.out;
    for (const r of results) {
      const label = String(r.order);
      switch (r.outcome) {
        case 'cancelled':
          ctx.out.line(`${chalk.green('cancelled')}  ${label}: released ${r.released_units} unit(s)`);
          break;
        case 'restocked':
          ctx.out.line(`${chalk.green('cancelled')}  ${label}: ${r.restocked_units} sold unit(s) back on hand`);
          break;
        case 'already_cancelled':
          ctx.out.line(`${chalk.dim('unchanged')}  ${label}: already cancelled`);
          break;
        case 'would_cancel':
          ctx.out.line(`${chalk.yellow('would cancel')}  ${label}: would release ${r.released_units} unit(s)`);
          break;
        case 'would_restock':
          ctx.out.line(`${chalk.yellow('would cancel')}  ${label}: would put ${r.restocked_units} sold unit(s) back`);
          break;
        default:
          process.stderr.write(`${chalk.red('failed')}  ${label}: ${(r.error as { message: string }).message}\n`);
      }
    }
  });
  return worst;
}

export async function extend(ctx: CommandContext, key: string, flags: { ttl: string }) {
  const input = { order: parseOrderKey(key), ttlSeconds: parseDuration(flags.ttl, '--ttl'), actor: ctx.actor };
  const { db } = await ctx.openDb({ application: 'stockctl-extend', max: 1, lockTimeoutMs: 10_000 });
  const { extendOrder } = await import('../../engine/orders.js');
  const r = await extendOrder(db, input);
  ctx.out.result(r, () => ctx.out.line(`Order ${r.order_id} now expires at ${r.payment_expires_at} (${r.reservations_extended} reservation(s) moved).`));
}

export async function list(ctx: CommandContext, flags: { status?: string; limit: string }) {
  const limit = parseCount(flags.limit, '--limit', 10_000);
  const { db } = await ctx.openDb({ application: 'stockctl-orders' });
  const { listOrders } = await import('../../engine/queries.js');
  const orders = await listOrders(db, { status: flags.status, limit });
  ctx.out.result({ orders }, () => {
    if (orders.length === 0) return ctx.out.line('No orders match.');
    ctx.out.line(
      ctx.out.table(
        ['Order', 'Ref', 'Customer', 'Status', 'Items', 'Total', 'Created', 'Time left'],
        orders.map((o) => [o.order_id, o.ref ?? '', o.customer_id ?? '', o.status, o.item_count, formatPrice(o.total), o.created_at, timeLeft(o.seconds_left)]),
      ),
    );
  });
}

export async function show(ctx: CommandContext, key: string) {
  const { db } = await ctx.openDb({ application: 'stockctl-orders' });
  const { showOrder } = await import('../../engine/queries.js');
  const o = await showOrder(db, parseOrderKey(key));
  ctx.out.result(o, () => {
    const { chalk } = ctx.out;
    ctx.out.line(`${chalk.bold('Order')} ${o.order_id}${o.ref ? `  ref ${o.ref}` : ''}`);
    ctx.out.line(`Status: ${o.status} (payment ${o.payment_status})  total ${formatPrice(o.total)}  customer ${o.customer_id ?? '-'}`);
    ctx.out.line(`Created ${o.created_at} by ${o.created_by ?? '-'}`);
    if (o.status === 'pending') ctx.out.line(`Pay by ${o.payment_expires_at} (${timeLeft(o.seconds_left)} left)`);
    if (o.paid_at) ctx.out.line(`Paid ${o.paid_at}${o.payment_ref ? ` (payment ref ${o.payment_ref})` : ''}`);
    if (o.cancelled_at) ctx.out.line(`Cancelled ${o.cancelled_at} by ${o.cancelled_by ?? '-'}: ${o.cancel_reason ?? 'no reason given'}`);
    if (o.admin_notes) ctx.out.line(`Notes: ${o.admin_notes.replace(/\n/g, '; ')}`);
    ctx.out.line('\nLines');
    ctx.out.line(ctx.out.table(['SKU', 'Name', 'Qty', 'Unit price', 'Line total'], o.items.map((i) => [i.sku, i.name, i.quantity, formatPrice(i.unit_price), formatPrice(i.line_total)])));
    ctx.out.line('\nReservations');
    ctx.out.line(ctx.out.table(['Reservation', 'SKU', 'Qty', 'Status', 'Reserved', 'Expires', 'Released'], o.reservations.map((r) => [r.reservation_id, r.sku, r.quantity, r.status, r.reserved_at, r.expires_at, r.released_at ?? ''])));
    ctx.out.line('\nLedger');
    ctx.out.line(ctx.out.table(['#', 'SKU', 'Kind', 'On hand Δ', 'Reserved Δ', 'Actor', 'Reason', 'At'], o.movements.map((m) => [m.movement_id, m.sku, m.kind, m.stock_delta, m.reserved_delta, m.actor, m.reason ?? '', m.created_at])));
  });
}
