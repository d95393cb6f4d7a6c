/**
 * Transfers: units on their way from one location to another. Sending takes them off hand
 * at the source (never below what it has reserved) and shows them as incoming at the
 * destination, where they are never available; receiving puts them on hand there, and
 * cancelling puts them back at the source. Each step locks both levels in the canonical
 * order and writes one ledger row per level, carrying the transfer's id.
 */
import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { execute, iso, rows, transaction, type Tx } from '../db/query.js';
import { InvalidInputError, NotFoundError, RefusedError } from '../errors.js';
import { quote } from './input.js';
import { unknownLocation } from './locations.js';
import { applyStockChanges, ensureLevel, lockLevels, type StockChange } from './stock.js';

export interface Transfer {
  transfer_id: number;
  sku: string;
  from: string;
  to: string;
  quantity: number;
  status: 'in_transit' | 'received' | 'cancelled';
  created_by: string;
  created_at: string;
  closed_by: string | null;
  closed_at: string | null;
}

const transferColumns = sql`transfer_id::int AS transfer_id, sku, from_location AS "from", to_location AS "to", quantity, status,
  created_by, ${iso('created_at')} AS created_at, closed_by, ${iso('closed_at')} AS closed_at`;

export interface SendInput {
  sku: string;
  quantity: number;
  from: string;
  to: string;
  reason?: string;
  actor: string;
}

/** Take units off hand at `from` and show them as incoming at `to` (exit 5 if `from` cannot spare them). */
export async function sendTransfer(db: Db, input: SendInput): Promise<Transfer> {
  if (input.from === input.to) throw new InvalidInputError(`A transfer needs two locations: --from and --to are both ${quote(input.from)}.`);
  return transaction(db, async (tx) => {
    await requireLocations(tx, [input.from, input.to]);
    // Both levels, locked in the canonical order ((sku, location)), whichever way the units go.
    const [first, second] = [input.from, input.to].sort();
    const levels = [await ensureLevel(tx, input.sku, first), await ensureLevel(tx, input.sku, second)];
    const source = levels.find((l) => l.location === input.from)!;
    const spare = source.stockQuantity - source.reservedStock;
    if (spare < input.quantity) {
      throw new RefusedError(
        `Cannot send ${input.quantity} of ${input.sku} from ${input.from}: it has ${source.stockQuantity} on hand and ${source.reservedStock} reserved by pending orders, so ${Math.max(0, spare)} can go.`,
        'transfer_exceeds_available',
        { sku: input.sku, location: input.from, requested: input.quantity, available: Math.max(0, spare) },
      );
    }
    const [created] = await rows<{ id: number }>(
      tx,
      sql`INSERT INTO transfers (sku, product_id, variant_id, from_location, to_location, quantity, created_by)
          VALUES (${input.sku}, ${source.productId}, ${source.variantId}, ${input.from}, ${input.to}, ${input.quantity}, ${input.actor})
          RETURNING transfer_id::int AS id`,
    );
    await move(tx, created.id, [
      { sku: input.sku, location: input.from, stockDelta: -input.quantity, reservedDelta: 0, kind: 'transfer_out' },
      { sku: input.sku, location: input.to, stockDelta: 0, reservedDelta: 0, incomingDelta: input.quantity, kind: 'transfer_in' },
    ], input);
    return findTransfer(tx, created.id);
  });
}

/** `receive`: the units arrive, on hand at the destination. `cancel`: they go back on hand at the source. */
export async function closeTransfer(db: Db, input: { transferId: number; how: 'receive' | 'cancel'; reason?: string; actor: string }): Promise<Transfer & { replay: boolean }> {
  return transaction(db, async (tx) => {
    const [t] = await rows<Transfer>(tx, sql`SELECT ${transferColumns} FROM transfers WHERE transfer_id = ${input.transferId} FOR UPDATE`);
    if (!t) throw unknownTransfer(input.transferId);
    const wanted = input.how === 'receive' ? 'received' : 'cancelled';
    if (t.status === wanted) return { ...t, replay: true };
    if (t.status !== 'in_transit') {
      throw new RefusedError(`Transfer ${t.transfer_id} was already ${t.status}; it cannot be ${wanted} now.`, 'transfer_closed', {
        transfer_id: t.transfer_id,
        status: t.status,
      });
    }
    await lockLevels(tx, [{ sku: t.sku, location: t.from }, { sku: t.sku, location: t.to }]);
    const arriving: StockChange =
      input.how === 'receive'
        ? { sku: t.sku, location: t.to, stockDelta: t.quantity, reservedDelta: 0, incomingDelta: -t.quantity, kind: 'transfer_receive' }
        : { sku: t.sku, location: t.to, stockDelta: 0, reservedDelta: 0, incomingDelta: -t.quantity, kind: 'transfer_cancel' };
    const changes = input.how === 'receive' ? [arriving] : [arriving, { sku: t.sku, location: t.from, stockDelta: t.quantity, reservedDelta: 0, kind: 'transfer_cancel' as const }];
    await move(tx, t.transfer_id, changes, input);
    await execute(tx, sql`UPDATE transfers SET status = ${wanted}, closed_by = ${input.actor}, closed_at = now() WHERE transfer_id = ${t.transfer_id}`);
    return { ...(await findTransfer(tx, t.transfer_id)), replay: false };
  });
}

/** The levels are locked and were checked: the change goes through whole, or the CHECKs refuse it. */
async function move(tx: Tx, transferId: number, changes: StockChange[], input: { reason?: string; actor: string }): Promise<void> {
  const applied = await applyStockChanges(
    tx,
    changes.map((c) => ({ ...c, transferId, reason: input.reason ?? null })),
    input.actor,
    { guard: true, locked: true },
  );
  if (applied.length !== new Set(changes.map((c) => c.location)).size) {
    throw new RefusedError(`Transfer ${transferId} could not move its units: the stock changed under it.`, 'transfer_refused', { transfer_id: transferId });
  }
}

export async function findTransfer(db: Db | Tx, transferId: number): Promise<Transfer> {
  const [t] = await rows<Transfer>(db, sql`SELECT ${transferColumns} FROM transfers WHERE transfer_id = ${transferId}`);
  if (!t) throw unknownTransfer(transferId);
  return t;
}

/** Transfers, newest first: those still in transit by default. */
export async function listTransfers(db: Db, input: { all?: boolean; sku?: string; location?: string; limit?: number } = {}): Promise<Transfer[]> {
  return rows<Transfer>(
    db,
    sql`SELECT ${transferColumns} FROM transfers
         WHERE true ${input.all ? sql`` : sql`AND status = 'in_transit'`}
               ${input.sku !== undefined ? sql`AND sku = ${input.sku}` : sql``}
               ${input.location !== undefined ? sql`AND (from_location = ${input.location} OR to_location = ${input.location})` : sql``}
         ORDER BY transfer_id DESC LIMIT ${input.limit ?? 100}`,
  );
}

function unknownTransfer(id: number): NotFoundError {
  return new NotFoundError(`No transfer has id ${id}; list them with \`stockctl transfer list\`.`, 'transfer_not_found', { transfer_id: id });
}

async function requireLocations(tx: Tx, codes: string[]): Promise<void> {
  const found = new Set((await rows<{ code: string }>(tx, sql`SELECT code FROM locations WHERE code IN (${sql.join(codes.map((c) => sql`${c}`), sql`, `)})`)).map((r) => r.code));
  const missing = codes.find((c) => !found.has(c));
  if (missing !== undefined) throw unknownLocation(missing);
}

/** A transfer id as typed: a positive whole number. */
export function parseTransferId(raw: string): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < 1) {
    throw new InvalidInputError(`Invalid transfer id ${quote(raw)}: give the number \`stockctl transfer\` printed.`);
  }
  return n;
}
