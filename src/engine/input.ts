/**
 * Validation of everything a user can type, in one place. Each parser names the
 * offending value in its error (exit 2) so that nothing invalid reaches the database.
 */
import { InvalidInputError } from '../errors.js';

export const SKU_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/**
 * Characters that must never reach the database or a terminal from typed text: C0 and C1
 * controls (newline, ESC, ...), DEL, the line separators and the bidirectional overrides
 * that make a terminal show something other than what is stored.
 */
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
const CONTROL_CHARACTERS = new RegExp(CONTROL_CHARACTER.source, 'g');
const ECHO_MAX = 40;
const escapeControl = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

/**
 * Length in characters as a reader counts them (Unicode code points): an emoji is one, not
 * the two UTF-16 units of String#length. JSON Schema's maxLength counts the same way, so the
 * CLI and the HTTP API agree on every limit.
 */
export function characterCount(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

/** The first `max` characters (code points: a surrogate pair is never cut in half). */
const firstCharacters = (text: string, max: number) => (text.length <= max ? text : Array.from(text).slice(0, max).join(''));

/**
 * A user's value as it is safe to echo in a message: JSON-quoted (so control characters
 * show as escapes, never raw), and cut to about 40 characters with "…".
 */
export function quote(raw: unknown): string {
  const text = String(raw);
  const cut = characterCount(text) > ECHO_MAX ? `${firstCharacters(text, ECHO_MAX)}…` : text;
  return JSON.stringify(cut).replace(CONTROL_CHARACTERS, escapeControl);
}

/** Text shown whole (a file name, never cut) but safe for a terminal: control characters escaped. */
export const escapeControls = (text: string) => text.replace(CONTROL_CHARACTERS, escapeControl);

/**
 * A one-line message that echoes what was typed (commander's usage errors) made safe for a
 * terminal: control characters escaped, any word longer than 40 characters cut with "…".
 */
export function printable(line: string): string {
  const body = line.replace(/\n$/, '');
  const safe = body.replace(CONTROL_CHARACTERS, escapeControl).replace(/[^\s'"]{41,}/gu, (word) => `${firstCharacters(word, ECHO_MAX)}…`);
  return body === line ? safe : `${safe}\n`;
}

/** No single line or stock level beyond this: a typo guard, and far inside int4. */
export const MAX_QUANTITY = 1_000_000;
/** 1,000,000.00: prices are int4 minor units. */
const MAX_PRICE_MINOR = 100_000_000;

export function parseSku(raw: string): string {
  if (!SKU_PATTERN.test(raw)) {
    throw new InvalidInputError(
      `Invalid SKU ${quote(raw)}: use 1 to 64 letters, digits, dots, dashes or underscores, starting with a letter or digit.`,
    );
  }
  return raw;
}

function parseWhole(raw: string, what: string, min: number, max: number): number {
  const text = String(raw).trim();
  if (!/^[+-]?\d+$/.test(text)) throw new InvalidInputError(`Invalid ${what} ${quote(raw)}: expected a whole number.`);
  const value = Number(text);
  if (value < min || value > max) {
    throw new InvalidInputError(`Invalid ${what} ${quote(raw)}: must be between ${min} and ${max}.`);
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
  if (value === 0) throw new InvalidInputError(`Invalid adjustment ${quote(raw)}: use +N or -N, not zero.`);
  return value;
}

/** A positive count for flags such as --limit or --batch-size. */
export function parseCount(raw: string, what: string, max = 1_000_000): number {
  return parseWhole(raw, what, 1, max);
}

/** `--max-retries` (1 or more) and `--retry-backoff` (0 or more milliseconds). */
/** --max-retries (at least 1) and --retry-backoff, or the variable behind one (`rule`). */
export function parseRetrySetting(raw: string, what: string, rule = what): number {
  return parseWhole(raw, what, rule === '--max-retries' ? 1 : 0, 60_000);
}

/** Decimal money ("19.99", "5") to integer minor units (1999, 500). */
export function parsePrice(raw: string): number {
  const text = String(raw).trim();
  const match = /^(\d+)(?:\.(\d{1,2}))?$/.exec(text);
  if (!match) throw new InvalidInputError(`Invalid price ${quote(raw)}: use a decimal amount like 19.99.`);
  const minor = Number(match[1]) * 100 + Number((match[2] ?? '').padEnd(2, '0'));
  if (match[1].length > 10 || minor > MAX_PRICE_MINOR) {
    throw new InvalidInputError(`Invalid price ${quote(raw)}: too large (at most ${(MAX_PRICE_MINOR / 100).toFixed(2)}).`);
  }
  return minor;
}

/** Integer minor units back to "19.99". */
export function formatPrice(minor: number): string {
  return `${Math.trunc(minor / 100)}.${String(minor % 100).padStart(2, '0')}`;
}

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };
/** Every payment window, from --ttl or PAYMENT_TIMEOUT_MINUTES, lies in 1s .. 366d. */
export const MAX_DURATION_S = 366 * 86400;

/** The one range rule for durations: 1s .. 366d. */
export function checkDuration(seconds: number, what: string, raw: string, hint = ''): number {
  if (!(seconds >= 1 && seconds <= MAX_DURATION_S)) {
    throw new InvalidInputError(`Invalid ${what} ${quote(raw)}: must be between 1s and 366d${hint}.`);
  }
  return seconds;
}

/** "90s", "15m", "2h", "1d" to seconds, unchecked; undefined when it is not written so. */
export function durationSeconds(raw: string): number | undefined {
  const match = /^(\d+)([smhd])$/.exec(String(raw).trim());
  return match ? Number(match[1]) * UNIT_SECONDS[match[2]] : undefined;
}

/** "90s", "15m", "2h", "1d" to seconds. */
export function parseDuration(raw: string, what = 'duration'): number {
  const seconds = durationSeconds(raw);
  if (seconds === undefined) throw new InvalidInputError(`Invalid ${what} ${quote(raw)}: use a number and a unit, like 90s, 15m, 2h or 1d.`);
  return checkDuration(seconds, what, raw);
}

export interface OrderLine {
  sku: string;
  quantity: number;
}

/** One line per SKU, in the order the SKUs first came: two lines of one SKU are one demand. */
export function sumBySku(lines: OrderLine[]): OrderLine[] {
  const bySku = new Map<string, number>();
  for (const l of lines) bySku.set(l.sku, (bySku.get(l.sku) ?? 0) + l.quantity);
  return [...bySku].map(([sku, quantity]) => ({ sku, quantity }));
}

/** "TEE:2" to a line; the same SKU twice in one order is summed. */
export function parseOrderLines(raws: string[]): OrderLine[] {
  if (raws.length === 0) throw new InvalidInputError('Name at least one item as SKU:QTY, e.g. TEE:1.');
  const lines = raws.map((raw) => {
    const idx = raw.lastIndexOf(':');
    if (idx <= 0) throw new InvalidInputError(`Invalid item ${quote(raw)}: use SKU:QTY, e.g. TEE:2.`);
    const sku = parseSku(raw.slice(0, idx));
    return { sku, quantity: parseQuantity(raw.slice(idx + 1), `quantity for ${sku}`) };
  });
  const summed = sumBySku(lines);
  const over = summed.find((l) => l.quantity > MAX_QUANTITY);
  if (over) throw new InvalidInputError(`Invalid quantity for ${over.sku}: more than ${MAX_QUANTITY} in one order.`);
  return summed;
}

/**
 * Free text a user types (customer id, ref, reason, payment ref, name, actor): at most
 * `max` characters and no control characters, which would reach terminals raw.
 */
export function parseText(raw: string | undefined, what: string, max = 500): string | undefined {
  if (raw === undefined) return undefined;
  // String#length counts UTF-16 units: only text longer than `max` of them can be too long.
  const length = raw.length > max ? characterCount(raw) : raw.length;
  if (length > max) throw new InvalidInputError(`The ${what} is too long (${length} characters; at most ${max}).`);
  const control = CONTROL_CHARACTER.exec(raw);
  if (control) {
    throw new InvalidInputError(
      `Invalid ${what} ${quote(raw)}: it contains a control character (${quote(control[0])} at position ${control.index + 1}); use printable text.`,
    );
  }
  return raw;
}

/** Who the order is for (`reserve --customer`, `customer_id`): text as above, and not blank, which no one could look the order up by. */
export function parseCustomerId(raw: string | undefined): string | undefined {
  const id = parseText(raw, 'customer id', 200);
  if (id !== undefined && !id.trim()) throw new InvalidInputError(`Invalid customer id ${quote(id)}: it must not be blank.`);
  return id;
}

function parseKey(raw: string, what: string): string {
  const key = parseText(raw.trim(), what, 200)!;
  if (!key) throw new InvalidInputError(`Invalid ${what} ${quote(raw)}: it must not be empty.`);
  return key;
}

/** An order as the user names it (`<order>`, a --from-file line): its id, an id prefix, or its ref. */
export function parseOrderKey(raw: string): string {
  return parseKey(raw, 'order id or ref');
}

/**
 * An order's external reference (`reserve --ref`, the Idempotency-Key). Not the start of an
 * order id (8+ hex digits, as `bd72aa06`): `pay bd72aa06` would then mean two orders, and the
 * ref would win over the order whose id starts so. A whole UUID is fine (clients make their
 * keys so): an order id written in full wins over a ref spelled the same (see findOrder).
 */
export function parseRef(raw: string): string {
  const ref = parseKey(raw, 'ref');
  if (!isUuid(ref) && uuidPrefixRange(ref)) {
    throw new InvalidInputError(
      `Invalid ref ${quote(ref)}: it looks like the start of an order id (8 or more hex digits), which order lookups would also match; add a letter or a prefix that is not hex, like cart-${firstCharacters(ref, 20)}.`,
    );
  }
  return ref;
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export function isUuid(value: string): boolean {
  return UUID_PATTERN.test(value);
}

/** 32 hex digits as a UUID, dashes in their places (no check: see isUuid). */
export function hexToUuid(hex: string): string {
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The start of an order id as support staff copy it (`3f2a1b2c`, `3f2a1b2c-9e`): at least
 * 8 hex digits, dashes where a UUID has them. Returns the lowest and highest id it can
 * name, so that the lookup is a range on the primary key.
 */
export function uuidPrefixRange(value: string): { low: string; high: string } | undefined {
  const key = value.toLowerCase();
  if (!/^[0-9a-f]{8}[0-9a-f-]{0,28}$/.test(key)) return undefined;
  const hex = key.replace(/-/g, '');
  const low = hexToUuid(hex.padEnd(32, '0'));
  if (hex.length > 32 || !low.startsWith(key)) return undefined;
  return { low, high: hexToUuid(hex.padEnd(32, 'f')) };
}
