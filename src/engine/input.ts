/**
 * Validation of everything a user can type, in one place. Each parser names the
 * offending value in its error (exit 2) so that nothing invalid reaches the database.
 */
import { InvalidInputError } from '../errors.js';

export const SKU_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** No single line or stock level beyond this: a typo guard, and far inside int4. */
export const MAX_QUANTITY = 1_000_000;
/** 1,000,000.00: prices are int4 minor units. */
const MAX_PRICE_MINOR = 100_000_000;

export function parseSku(raw: string): string {
  if (!SKU_PATTERN.test(raw)) {
    throw new InvalidInputError(
      `Invalid SKU "${raw}": use 1 to 64 letters, digits, dots, dashes or underscores, starting with a letter or digit.`,
    );
  }
  return raw;
}

function parseWhole(raw: string, what: string, min: number, max: number): number {
  const text = String(raw).trim();
  if (!/^[+-]?\d+$/.test(text)) throw new InvalidInputError(`Invalid ${what} "${raw}": expected a whole number.`);
  const value = Number(text);
  if (value < min || value > max) {
    throw new InvalidInputError(`Invalid ${what} "${raw}": must be between ${min} and ${max}.`);
  }
  return value;
}

/** A quantity to order or reserve: 1 .. MAX_QUANTITY. */
export function parseQuantity(raw: string, what = 'quantity'): number {
  return parseWhole(raw, what, 1, MAX_QUANTITY);
}

/** A stock level: 0 .. MAX_QUANTITY. */
export function parseStockLevel(raw: string, what = 'stock quantity'): number {
  return parseWhole(raw, what, 0, MAX_QUANTITY);
}

/** A signed stock adjustment such as +5 or -2 (never 0). */
export function parseDelta(raw: string): number {
  const value = parseWhole(raw, 'adjustment', -MAX_QUANTITY, MAX_QUANTITY);
  if (value === 0) throw new InvalidInputError(`Invalid adjustment "${raw}": use +N or -N, not zero.`);
  return value;
}

/** A positive count for flags such as --limit or --batch-size. */
export function parseCount(raw: string, what: string, max = 1_000_000): number {
  return parseWhole(raw, what, 1, max);
}

/** `--max-retries` (1 or more) and `--retry-backoff` (0 or more milliseconds). */
export function parseRetrySetting(raw: string, what: string): number {
  return parseWhole(raw, what, what === '--max-retries' ? 1 : 0, 60_000);
}

/** Decimal money ("19.99", "5") to integer minor units (1999, 500). */
export function parsePrice(raw: string): number {
  const text = String(raw).trim();
  const match = /^(\d{1,10})(?:\.(\d{1,2}))?$/.exec(text);
  if (!match) throw new InvalidInputError(`Invalid price "${raw}": use a decimal amount like 19.99.`);
  const minor = Number(match[1]) * 100 + Number((match[2] ?? '').padEnd(2, '0'));
  if (minor > MAX_PRICE_MINOR) throw new InvalidInputError(`Invalid price "${raw}": too large.`);
  return minor;
}

/** Integer minor units back to "19.99". */
export function formatPrice(minor: number): string {
  return `${Math.trunc(minor / 100)}.${String(minor % 100).padStart(2, '0')}`;
}

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };
const MAX_DURATION_S = 366 * 86400;

/** "90s", "15m", "2h", "1d" to seconds. */
export function parseDuration(raw: string, what = 'duration'): number {
  const match = /^(\d{1,7})([smhd])$/.exec(String(raw).trim());
  if (!match) throw new InvalidInputError(`Invalid ${what} "${raw}": use a number and a unit, like 90s, 15m, 2h or 1d.`);
  const seconds = Number(match[1]) * UNIT_SECONDS[match[2]];
  if (seconds < 1 || seconds > MAX_DURATION_S) {
    throw new InvalidInputError(`Invalid ${what} "${raw}": must be between 1s and 366d.`);
  }
  return seconds;
}

export interface OrderLine {
  sku: string;
  quantity: number;
}

/** "TEE:2" to a line; the same SKU twice in one order is summed. */
export function parseOrderLines(raws: string[]): OrderLine[] {
  if (raws.length === 0) throw new InvalidInputError('Name at least one item as SKU:QTY, e.g. TEE:1.');
  const bySku = new Map<string, number>();
  for (const raw of raws) {
    const idx = raw.lastIndexOf(':');
    if (idx <= 0) throw new InvalidInputError(`Invalid item "${raw}": use SKU:QTY, e.g. TEE:2.`);
    const sku = parseSku(raw.slice(0, idx));
    const quantity = parseQuantity(raw.slice(idx + 1), `quantity for ${sku}`);
    const total = (bySku.get(sku) ?? 0) + quantity;
    if (total > MAX_QUANTITY) throw new InvalidInputError(`Invalid quantity for ${sku}: more than ${MAX_QUANTITY} in one order.`);
    bySku.set(sku, total);
  }
  return [...bySku].map(([sku, quantity]) => ({ sku, quantity }));
}

export function parseText(raw: string | undefined, what: string, max = 500): string | undefined {
  if (raw === undefined) return undefined;
  if (raw.length > max) throw new InvalidInputError(`The ${what} is too long (${raw.length} characters; at most ${max}).`);
  return raw;
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export function isUuid(value: string): boolean {
  return UUID_PATTERN.test(value);
}
