import type { CommandContext } from '../run.js';
import { parseQuantity, parseSku, parseText } from '../../engine/input.js';
import { parseLocationCode } from '../../engine/locations.js';
import { parseTransferId, type Transfer } from '../../engine/transfers.js';

const describe = (t: Transfer) => `transfer ${t.transfer_id}: ${t.quantity} of ${t.sku} from ${t.from} to ${t.to}`;

export async function send(ctx: CommandContext, skuArg: string, qtyArg: string, flags: { from: string; to: string; reason?: string }) {
  const input = {
    sku: parseSku(skuArg),
    quantity: parseQuantity(qtyArg),
    from: parseLocationCode(flags.from),
    to: parseLocationCode(flags.to),
    reason: parseText(flags.reason, 'reason'),
    actor: ctx.config.actor,
  };
  const { db } = await ctx.openDb({ application: 'stockctl-transfer', lockTimeoutMs: 10_000 });
  const { sendTransfer } = await import('../../engine/transfers.js');
  const t = await sendTransfer(db, input);
  ctx.out.result(t, () => {
    ctx.out.line(`Sent ${describe(t)}: off hand at ${t.from}, incoming at ${t.to}.`);
    ctx.out.line(`When they arrive: stockctl transfer receive ${t.transfer_id}`);
  });
}

function close(how: 'receive' | 'cancel') {
  return async (ctx: CommandContext, idArg: string, flags: { reason?: string }) => {
    const input = { transferId: parseTransferId(idArg), how, reason: parseText(flags.reason, 'reason'), actor: ctx.config.actor };
    const { db } = await ctx.openDb({ application: 'stockctl-transfer', lockTimeoutMs: 10_000 });
    const { closeTransfer } = await import('../../engine/transfers.js');
    const t = await closeTransfer(db, input);
    ctx.out.result(t, () => {
      if (t.replay) ctx.out.line(`${describe(t)} was already ${t.status}; nothing changed.`);
      else if (how === 'receive') ctx.out.line(`Received ${describe(t)}: on hand at ${t.to}.`);
      else ctx.out.line(`Cancelled ${describe(t)}: back on hand at ${t.from}.`);
    });
  };
}

/** `transfer receive <id>`: the units arrived. */
export const receive = close('receive');
/** `transfer cancel <id>`: they never left. */
export const cancel = close('cancel');

export async function list(ctx: CommandContext, flags: { all?: boolean; sku?: string; location?: string }) {
  const { db } = await ctx.openDb({ application: 'stockctl-transfer' });
  const { listTransfers } = await import('../../engine/transfers.js');
  const transfers = await listTransfers(db, {
    all: flags.all,
    sku: flags.sku === undefined ? undefined : parseSku(flags.sku),
    location: flags.location === undefined ? undefined : parseLocationCode(flags.location),
  });
  ctx.out.result({ transfers }, () =>
    ctx.out.line(
      transfers.length === 0
        ? flags.all
          ? 'No transfers.'
          : 'No transfers in transit.'
        : ctx.out.table(
            ['Id', 'SKU', 'Qty', 'From', 'To', 'Status', 'Sent', 'By'],
            transfers.map((t) => [t.transfer_id, t.sku, t.quantity, t.from, t.to, t.status, t.created_at, t.created_by]),
          ),
    ),
  );
}
