/**
 * Locations: the warehouses and stores that hold stock. Every database starts with one,
 * `default`; with one location everything behaves as if there were none.
 */
import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { SQLSTATE, sqlState } from '../db/errors.js';
import { array, execute, iso, rows, transaction, type Tx } from '../db/query.js';
import { InvalidInputError, NotFoundError, RefusedError } from '../errors.js';
import { LOCATION_KINDS } from '../db/schema.js';
import { quote } from './input.js';
import { applyStockChanges, levelAvailableSql } from './stock.js';

export type LocationKind = (typeof LOCATION_KINDS)[number];
export { LOCATION_KINDS };

export interface Location {
  code: string;
  name: string;
  kind: LocationKind;
  priority: number;
  active: boolean;
  /** Summed over the location's levels. */
  stock_quantity: number;
  reserved_stock: number;
  incoming: number;
  available: number;
  skus: number;
  created_at: string;
}

/** Location codes name a place in ledgers and URLs: short, no spaces. */
export const LOCATION_CODE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Priorities are plain integers; higher is tried first. */
const PRIORITY_LIMIT = 1_000_000;

export function parseLocationCode(raw: string): string {
  if (!LOCATION_CODE_PATTERN.test(raw)) {
    throw new InvalidInputError(
      `Invalid location code ${quote(raw)}: use 1 to 64 letters, digits, dots, dashes or underscores, starting with a letter or digit.`,
    );
  }
  return raw;
}

export function parsePriority(raw: string, flag = '--priority'): number {
  const n = Number(raw);
  if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || Math.abs(n) > PRIORITY_LIMIT) {
    throw new InvalidInputError(`Invalid ${flag} ${quote(raw)}: give a whole number from -${PRIORITY_LIMIT} to ${PRIORITY_LIMIT} (higher is tried first).`);
  }
  return n;
}

export function parseLocationKind(raw: string): LocationKind {
  if (!(LOCATION_KINDS as readonly string[]).includes(raw)) {
    throw new InvalidInputError(`Invalid --kind ${quote(raw)}: use ${LOCATION_KINDS.join(' or ')}.`);
  }
  return raw as LocationKind;
}

const locationColumns = sql`loc.code, loc.name, loc.kind, loc.priority, loc.active,
  coalesce(sum(l.stock_quantity), 0)::int AS stock_quantity, coalesce(sum(l.reserved_stock), 0)::int AS reserved_stock,
  coalesce(sum(l.incoming), 0)::int AS incoming,
  coalesce(sum(${levelAvailableSql('l', 'loc.active')}), 0)::int AS available,
  count(l.sku)::int AS skus, ${iso('loc.created_at')} AS created_at`;

/** Every location, highest priority first (the order reserve tries them in). */
export async function listLocations(db: Db | Tx, codes?: string[]): Promise<Location[]> {
  return rows<Location>(
    db,
    sql`SELECT ${locationColumns}
          FROM locations loc LEFT JOIN stock_levels l ON l.location = loc.code
         ${codes ? sql`WHERE loc.code = ANY(${array(codes)}::text[])` : sql``}
         GROUP BY loc.code ORDER BY loc.priority DESC, loc.code`,
  );
}

/** Whether there is more than one location (then what names stock names its location too). */
export async function severalLocations(db: Db | Tx): Promise<boolean> {
  const found = await rows<{ code: string }>(db, sql`SELECT code FROM locations LIMIT 2`);
  return found.length > 1;
}

export async function findLocation(db: Db | Tx, code: string): Promise<Location> {
  const [found] = await listLocations(db, [code]);
  if (!found) throw unknownLocation(code);
  return found;
}

export function unknownLocation(code: string): NotFoundError {
  return new NotFoundError(`No location has code ${quote(code)}; list them with \`stockctl location list\`.`, 'location_not_found', {
    location: code,
  });
}

/** A location an order may be pinned to: it exists and sells (exit 4, exit 5). */
export async function requireSellingLocation(db: Db | Tx, code: string): Promise<void> {
  const [found] = await rows<{ active: boolean }>(db, sql`SELECT active FROM locations WHERE code = ${code}`);
  if (!found) throw unknownLocation(code);
  if (!found.active) {
    throw new RefusedError(`Location ${quote(code)} is inactive: it sells nothing until \`stockctl location set ${code} --active true\`.`, 'location_inactive', {
      location: code,
    });
  }
}

/**
 * The location a stock change without `--location` means: the only one there is. With
 * several, the caller must say which (exit 2, naming them).
 */
export async function resolveLocation(db: Db | Tx, code: string | undefined, what: string): Promise<string>;
/** `optional`: undefined instead of exit 2 when there are several. */
export async function resolveLocation(db: Db | Tx, code: string | undefined, what: string, optional: boolean): Promise<string | undefined>;
export async function resolveLocation(db: Db | Tx, code: string | undefined, what: string, optional = false): Promise<string | undefined> {
  if (code !== undefined) {
    const [found] = await rows<{ code: string }>(db, sql`SELECT code FROM locations WHERE code = ${code}`);
    if (!found) throw unknownLocation(code);
    return code;
  }
  const all = await rows<{ code: string }>(db, sql`SELECT code FROM locations ORDER BY priority DESC, code LIMIT 11`);
  if (all.length === 1) return all[0].code;
  if (optional) return undefined;
  const named = all.slice(0, 10).map((l) => l.code).join(', ') + (all.length > 10 ? ', …' : '');
  throw new InvalidInputError(`There are several locations (${named}): say which with --location to ${what}.`, 'location_required');
}

export interface AddLocationInput {
  code: string;
  name: string;
  kind?: LocationKind;
  priority?: number;
}

export async function addLocation(db: Db, input: AddLocationInput): Promise<Location> {
  try {
    await execute(
      db,
      sql`INSERT INTO locations (code, name, kind, priority)
          VALUES (${input.code}, ${input.name}, ${input.kind ?? 'warehouse'}, ${input.priority ?? 0})`,
    );
  } catch (err) {
    if (sqlState(err) === SQLSTATE.uniqueViolation) {
      throw new RefusedError(`Location ${quote(input.code)} already exists.`, 'location_exists', { location: input.code });
    }
    throw err;
  }
  return findLocation(db, input.code);
}

export interface SetLocationInput {
  code: string;
  priority?: number;
  active?: boolean;
  name?: string;
  actor: string;
}

/** Change a location's priority, name or whether it sells; its stock stays where it is. */
export async function setLocation(db: Db, input: SetLocationInput): Promise<Location & { changed: boolean }> {
  return transaction(db, async (tx) => {
    const before = await findLocation(tx, input.code);
    const changed =
      (input.priority !== undefined && input.priority !== before.priority) ||
      (input.active !== undefined && input.active !== before.active) ||
      (input.name !== undefined && input.name !== before.name);
    if (!changed) return { ...before, changed: false };
    await execute(
      tx,
      sql`UPDATE locations SET priority = ${input.priority ?? before.priority}, active = ${input.active ?? before.active},
                 name = ${input.name ?? before.name}, updated_at = now()
           WHERE code = ${input.code}`,
    );
    if (input.active !== undefined && input.active !== before.active) {
      // Its units join or leave every SKU's available total: each of its levels moves on a
      // version, through the one stock change, so live stock hears of it and a reader that
      // keeps the highest version takes the new totals. The ledger rows change no counter.
      const levels = await rows<{ sku: string }>(tx, sql`SELECT sku FROM stock_levels WHERE location = ${input.code} ORDER BY sku`);
      const reason = `location ${input.code} ${input.active ? 'activated' : 'deactivated'}`;
      await applyStockChanges(
        tx,
        levels.map((l) => ({ sku: l.sku, location: input.code, stockDelta: 0, reservedDelta: 0, kind: 'location' as const, reason })),
        input.actor,
      );
    }
    return { ...(await findLocation(tx, input.code)), changed: true };
  });
}
