import { readFileSync } from 'node:fs';
import type { CommandContext } from '../run.js';
import {
  formatPrice,
  parseCount,
  parseCustomerId,
  parseDuration,
  parseOrderKey,
  parseOrderLines,
  parseRef,
  parseRetrySetting,
  parseText,
  quote,
} from '../../engine/input.js';
import { withRetryFlags } from '../../engine/settings.js';
import { formatWindow, resolvePaymentWindow } from '../../engine/windows.js';
import { InvalidInputError, StockctlError } from '../../errors.js';
import type { Strategy } from '../../engine/orders.js';
import { parseLocationCode } from '../../engine/locations.js';
import type { SplitPolicy } from '../../engine/names.js';
import { cliMessage } from '../wording.js';

function span(seconds: number): string {
  const m = Math.floor(seconds / 60);
  if (m >= 48 * 60) return `${Math.floor(m / 1440)}d${String(Math.floor(m / 60) % 24).padStart(2, '0')}h`;
  return m >= 60 ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m` : `${m}m${String(seconds % 60).padStart(2, '0')}s`;
}

/** "12m30s", or "expired 3m05s ago" once the window has passed (until the sweep cancels the order). */
function timeLeft(seconds: number | null): string {
  if (seconds === null) return '';
  return seconds > 0 ? span(seconds) : `expired ${span(-seconds)} ago`;
}

/** How a result names its order: the id, and the ref when there is one. */
const orderLabel = (o: { order_id: string; ref: string | null }) => `${o.order_id}${o.ref ? ` (ref ${o.ref})` : ''}`;

/** "Payment method card, priority vip", or nothing when the order was given neither. */
function windowLabel(o: { payment_method: string | null; priority: string | null }): string {
  const parts = [o.payment_method === null ? '' : `payment method ${o.payment_method}`, o.priority === null ? '' : `priority ${o.priority}`].filter(Boolean);
  const text = parts.join(', ');
  return text && `${text.charAt(0).toUpperCase()}${text.slice(1)}`;
}

/** "Held at STORE1", or each line's split ("TEE: 2 at WH1, 1 at STORE1"); nothing when all is at `default`. */
function allocationsLabel(items: { sku: string; allocations: { location: string; quantity: number }[] }[]): string {
  const places = new Set(items.flatMap((i) => i.allocations.map((a) => a.location)));
  if (places.size === 0 || (places.size === 1 && places.has('default'))) return '';
  if (places.size === 1) return `Held at ${[...places][0]}.`;
  return `Held at: ${items.map((i) => `${i.sku}: ${i.allocations.map((a) => `${a.quantity} at ${a.location}`).join(', ')}`).join('; ')}.`;
}

/** The payment status that each order status implies; `orders show` names it only when it differs. */
const IMPLIED_PAYMENT: Record<string, string> = { pending: 'awaiting', paid: 'paid', processing: 'paid', fulfilled: 'paid', shipped: 'paid', delivered: 'paid' };

export async function reserve(
  ctx: CommandContext,
  items: string[],
  flags: {
    customer?: string;
    ref?: string;
    ttl?: string;
    paymentMethod?: string;
    priority?: string;
    strategy?: Strategy;
    location?: string;
    split?: SplitPolicy;
    maxRetries?: string;
    retryBackoff?: string;
  },
) {
  const settings = withRetryFlags(ctx.config.settings, flags, parseRetrySetting);
  const window = resolvePaymentWindow(ctx.config.paymentWindows, {
    paymentMethod: flags.paymentMethod,
    priority: flags.priority,
    ttlSeconds: flags.ttl === undefined ? undefined : parseDuration(flags.ttl, '--ttl'),
  });
  const input = {
    lines: parseOrderLines(items),
    customerId: parseCustomerId(flags.customer),
    ref: flags.ref === undefined ? undefined : parseRef(flags.ref),
    ttlSeconds: window.seconds,
    paymentMethod: window.paymentMethod,
    priority: window.priority,
    strategy: flags.strategy,
    location: flags.location === undefined ? undefined : parseLocationCode(flags.location),
    split: flags.split ?? ctx.config.splitPolicy,
    actor: ctx.config.actor,
  };
  const { db } = await ctx.openDb({ application: 'stockctl-reserve', max: 1 });
  const { reserveOrder } = await import('../../engine/orders.js');
  const order = await reserveOrder(db, input, settings);
  ctx.out.result(order, () => {
    const { chalk } = ctx.out;
    const what = order.items.map((i) => `${i.sku}×${i.quantity}`).join(', ');
    if (order.replay) ctx.out.line(`Order ${chalk.bold(order.order_id)} already exists for ref ${order.ref} (${order.status}); nothing more reserved.`);
    else ctx.out.line(`Reserved ${what} as order ${chalk.bold(order.order_id)}${order.ref ? ` (ref ${order.ref})` : ''}, total ${formatPrice(order.total)}.`);
    const where = allocationsLabel(order.items);
    if (where) ctx.out.line(where);
    const how = windowLabel(order);
    if (how && order.payment_window_seconds !== null) ctx.out.line(`${how}: a ${formatWindow(order.payment_window_seconds)} window to pay.`);
    if (order.status === 'pending') ctx.out.line(`Pay before ${order.payment_expires_at}: stockctl pay ${order.ref ?? order.order_id}`);
  });
}

export async function pay(ctx: CommandContext, key: string, flags: { paymentRef?: string; allowLate?: boolean }) {
  const input = { order: parseOrderKey(key), paymentRef: parseText(flags.paymentRef, 'payment ref', 200), allowLate: flags.allowLate, actor: ctx.config.actor };
  const { db } = await ctx.openDb({ application: 'stockctl-pay', max: 1, lockTimeoutMs: 10_000 });
  const { payOrder } = await import('../../engine/orders.js');
  const paid = await payOrder(db, input);
  ctx.out.result(paid, () => {
    if (paid.replay) ctx.out.line(`Order ${orderLabel(paid)} was already paid at ${paid.paid_at}; nothing changed.`);
    else ctx.out.line(`Order ${orderLabel(paid)} paid${paid.late ? ' (late)' : ''}: ${paid.units_sold} unit(s) sold.`);
  });
}

const READ_ERRORS: Record<string, string> = { ENOENT: 'no such file', EACCES: 'permission denied', EISDIR: 'it is a directory' };

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
      const why = READ_ERRORS[(err as NodeJS.ErrnoException).code ?? ''] ?? 'cannot read it';
      throw new InvalidInputError(`Cannot read orders from ${quote(flags.fromFile)}: ${why}.`);
    }
  }
  orders = [...new Set(orders)];
  if (orders.length === 0 && flags.fromFile === undefined) {
    throw new InvalidInputError('Name at least one order (id or ref), or use --from-file FILE (- for stdin).');
  }
  const reason = parseText(flags.reason, 'reason');
  const results: Record<string, unknown>[] = [];
  let worst = 0;
  let stopped: string | undefined;
  // An empty list (nothing pending upstream in a pipeline) is not a mistake: nothing to do.
  if (orders.length > 0) {
    const { db } = await ctx.openDb({ application: 'stockctl-cancel', max: 1, lockTimeoutMs: 10_000 });
    const { cancelOrders } = await import('../../engine/orders.js');
    const spinner = orders.length > 1 ? ctx.out.spinner(`Cancelling ${orders.length} orders`) : undefined;
    try {
      const { reports, interrupted } = await cancelOrders(db, {
        orders,
        reason,
        restock: flags.restock,
        dryRun: flags.dryRun,
        actor: ctx.config.actor,
        signal: ctx.signal,
        onProgress: ({ done, total }) => {
          if (spinner) spinner.text = `Cancelling orders: ${done}/${total}`;
        },
      });
      for (const r of reports) {
        if ('result' in r) {
          results.push({ order: r.order, ...r.result, exit_code: 0 });
        } else {
          results.push({ order: r.order, outcome: 'error', exit_code: r.error.exitCode, error: { code: r.error.code, message: cliMessage(r.error) } });
          worst = Math.max(worst, r.error.exitCode);
        }
      }
      if (interrupted) stopped = `Stopped after ${reports.length} of ${orders.length} orders; the others were not touched.`;
    } finally {
      spinner?.stop();
    }
    if (stopped) ctx.out.note(stopped);
  }
  const count = (o: string) => results.filter((r) => r.outcome === o).length;
  const failed = count('error');
  const summary = {
    dry_run: Boolean(flags.dryRun),
    cancelled: count('cancelled') + count('restocked'),
    already_cancelled: count('already_cancelled'),
    failed,
    results,
    // A failure is also the one JSON error every command gives: the first order
    // with the worst exit code, the command's own.
    ...(failed > 0 ? { error: commandError(results, worst) } : {}),
  };
  // The cancels are committed: the report must get out whatever its size (a stream, never one string).
  await ctx.out.result(summary, () => {
    const { chalk } = ctx.out;
    if (orders.length === 0) ctx.out.note('Nothing to cancel: the list of orders is empty.');
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

function commandError(results: Record<string, unknown>[], worst: number): { code: string; message: string } {
  const first = results.find((r) => r.exit_code === worst)!;
  const { code, message } = first.error as { code: string; message: string };
  if (results.length === 1) return { code, message };
  const failed = results.filter((r) => r.outcome === 'error').length;
  return { code, message: `${failed} of ${results.length} orders were not cancelled (see results); ${String(first.order)}: ${message}` };
}

export async function extend(ctx: CommandContext, key: string, flags: { ttl: string }) {
  const input = { order: parseOrderKey(key), ttlSeconds: parseDuration(flags.ttl, '--ttl'), actor: ctx.config.actor };
  const { db } = await ctx.openDb({ application: 'stockctl-extend', max: 1, lockTimeoutMs: 10_000 });
  const { extendOrder } = await import('../../engine/orders.js');
  const r = await extendOrder(db, input);
  ctx.out.result(r, () => ctx.out.line(`Order ${orderLabel(r)} now expires at ${r.payment_expires_at} (${r.reservations_extended} reservation(s) moved).`));
}

export async function list(ctx: CommandContext, flags: { status?: string; customer?: string; limit: string; cursor?: string }) {
  const limit = parseCount(flags.limit, '--limit', 10_000);
  // A blank customer (an unset shell variable) is refused, never dropped as no filter.
  const customerId = parseCustomerId(flags.customer);
  const { db } = await ctx.openDb({ application: 'stockctl-orders' });
  const { listOrders } = await import('../../engine/queries.js');
  const page = await listOrders(db, { status: flags.status, customerId, limit, cursor: flags.cursor });
  const { orders } = page;
  // Never silently cut: a script sees next_cursor, a person a note on stderr.
  if (page.next_cursor !== null && !ctx.out.json) {
    ctx.out.note(`More orders match than the ${orders.length} shown; raise --limit, or add --cursor ${page.next_cursor} for the next page.`);
  }
  await ctx.out.result(page, () => {
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
  const { showOrderWithHistory } = await import('../../engine/fulfilment.js');
  const o = await showOrderWithHistory(db, parseOrderKey(key));
  // With one location, where a reservation is goes without saying.
  const { severalLocations } = await import('../../engine/locations.js');
  const located = !ctx.out.json && (await severalLocations(db));
  ctx.out.result(o, () => {
    const { chalk } = ctx.out;
    ctx.out.line(`${chalk.bold('Order')} ${o.order_id}${o.ref ? `  ref ${o.ref}` : ''}`);
    const payment = IMPLIED_PAYMENT[o.status] === o.payment_status ? '' : ` (payment ${o.payment_status})`;
    ctx.out.line(`Status: ${o.status}${payment}  total ${formatPrice(o.total)}  customer ${o.customer_id ?? '-'}`);
    ctx.out.line(`Created ${o.created_at} by ${o.created_by ?? '-'}`);
    if (o.payment_window_seconds !== null) {
      const how = [o.payment_method ?? 'no payment method', o.priority === null ? '' : `priority ${o.priority}`].filter(Boolean).join(', ');
      ctx.out.line(`Payment window ${formatWindow(o.payment_window_seconds)} (${how})`);
    }
    if (o.status === 'pending') ctx.out.line(`Pay by ${o.payment_expires_at} (${timeLeft(o.seconds_left)}${o.seconds_left! > 0 ? ' left' : ''})`);
    if (o.paid_at) ctx.out.line(`Paid ${o.paid_at}${o.payment_ref ? ` (payment ref ${o.payment_ref})` : ''}`);
    if (o.cancelled_at) ctx.out.line(`Cancelled ${o.cancelled_at} by ${o.cancelled_by ?? '-'}: ${o.cancel_reason ?? 'no reason given'}`);
    if (o.admin_notes) ctx.out.line(`Notes: ${o.admin_notes.replace(/\n/g, '; ')}`);
    for (const h of o.status_history) ctx.out.line(`Fulfilment: ${h.from_status} → ${h.to_status} at ${h.at} by ${h.actor}`);
    ctx.out.line('\nLines');
    ctx.out.line(ctx.out.table(['SKU', 'Name', 'Qty', 'Unit price', 'Line total'], o.items.map((i) => [i.sku, i.name, i.quantity, formatPrice(i.unit_price), formatPrice(i.line_total)])));
    ctx.out.line('\nReservations');
    ctx.out.line(
      ctx.out.table(
        ['Reservation', 'SKU', ...(located ? ['Location'] : []), 'Qty', 'Status', 'Reserved', 'Expires', 'Released'],
        o.reservations.map((r) => [r.reservation_id, r.sku, ...(located ? [r.location] : []), r.quantity, r.status, r.reserved_at, r.expires_at, r.released_at ?? '']),
      ),
    );
    ctx.out.line('\nLedger');
    ctx.out.line(ctx.out.table(['#', 'SKU', 'Kind', 'On hand Δ', 'Reserved Δ', 'Actor', 'Reason', 'At'], o.movements.map((m) => [m.movement_id, m.sku, m.kind, m.stock_delta, m.reserved_delta, m.actor, m.reason ?? '', m.created_at])));
  });
}

export async function setStatus(ctx: CommandContext, key: string, statusArg: string) {
  const { parseFulfilmentStatus, setOrderStatus } = await import('../../engine/fulfilment.js');
  const input = { order: parseOrderKey(key), status: parseFulfilmentStatus(statusArg), actor: ctx.config.actor };
  const { db } = await ctx.openDb({ application: 'stockctl-orders', max: 1, lockTimeoutMs: 10_000 });
  const r = await setOrderStatus(db, input);
  ctx.out.result(r, () =>
    ctx.out.line(
      r.replay
        ? `Order ${orderLabel(r)} is already ${r.status}; nothing changed.`
        : `Order ${orderLabel(r)}: ${r.previous_status} → ${r.status} (by ${r.actor}).`,
    ),
  );
}
