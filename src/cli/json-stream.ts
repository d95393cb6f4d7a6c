/**
 * A JSON document written in pieces: exactly the text of `JSON.stringify(value, null, 2)`,
 * never built as one string. V8 refuses strings over about 512 MiB ("Invalid string
 * length"): `cancel --from-file` over 2.5 M orders had committed its cancels and then
 * could not print their report. Small parts of the document (a result row) are still
 * stringified natively, which is what keeps this fast.
 */

export interface JsonStreamLimits {
  /** A subtree of at most this many values and keys is stringified in one call. */
  pieceNodes: number;
  /** ... as long as its strings and keys hold at most this many characters. */
  pieceChars: number;
  /** A longer string is escaped in slices of this many characters. */
  sliceChars: number;
}

const DEFAULT_LIMITS: JsonStreamLimits = { pieceNodes: 512, pieceChars: 8192, sliceChars: 16_384 };

/** Characters gathered before a write: 64 KiB, the size of a pipe's buffer. */
export const CHUNK_CHARS = 65_536;

/** What JSON.stringify leaves out of an object, and writes as null in an array. */
const unwritable = (v: unknown) => v === undefined || typeof v === 'function' || typeof v === 'symbol';

/** A value as JSON.stringify sees it: through its `toJSON(key)`, if it has one. */
function jsonValue(key: string, value: unknown): unknown {
  if ((typeof value === 'object' && value !== null) || typeof value === 'bigint') {
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') return toJSON.call(value, key);
  }
  return value;
}

/** Number, String, Boolean and BigInt objects: JSON.stringify writes their primitive. */
const boxed = (v: object) => v instanceof Number || v instanceof String || v instanceof Boolean || v instanceof BigInt;

/**
 * How much JSON one native JSON.stringify call may write. A value is walked only as far
 * as the budget allows, so a large one costs little to refuse. A Date inside is a short
 * string; any other `toJSON` inside is refused (what it returns is unknown).
 */
class PieceBudget {
  private nodes = 0;
  private chars = 0;
  constructor(private readonly limits: JsonStreamLimits) {}

  fits(v: unknown): boolean {
    if (++this.nodes > this.limits.pieceNodes) return false;
    if (typeof v === 'string') return (this.chars += v.length) <= this.limits.pieceChars;
    if (typeof v !== 'object' || v === null || v instanceof Date) return true;
    if (typeof (v as { toJSON?: unknown }).toJSON === 'function') return false;
    if (Array.isArray(v)) return v.every((item) => this.fits(item));
    for (const key of Object.keys(v)) {
      this.chars += key.length;
      if (!this.fits((v as Record<string, unknown>)[key])) return false;
    }
    return this.chars <= this.limits.pieceChars;
  }
}

/**
 * Can this subtree be stringified in one call? Its root must not have a `toJSON` (already
 * applied: JSON.stringify would apply it again).
 */
function fitsInOnePiece(root: object, limits: JsonStreamLimits): boolean {
  if (root instanceof Date || typeof (root as { toJSON?: unknown }).toJSON === 'function') return false;
  return new PieceBudget(limits).fits(root);
}

/**
 * Where the run of items from `start` that one JSON.stringify call may write ends (at
 * `start` when the first is too large by itself). An item with a `toJSON` of its own other
 * than a Date's is never in a run: JSON.stringify would hand it its index in the run, not
 * in the array.
 */
function runEnd(items: readonly unknown[], start: number, limits: JsonStreamLimits): number {
  const budget = new PieceBudget(limits);
  let end = start;
  while (end < items.length && budget.fits(items[end])) end++;
  return end;
}

/** A long string, escaped slice by slice, never between the two halves of a surrogate pair. */
function* stringPieces(text: string, sliceChars: number): Generator<string> {
  yield '"';
  for (let start = 0; start < text.length; ) {
    let end = Math.min(start + sliceChars, text.length);
    const last = text.charCodeAt(end - 1);
    if (end < text.length && last >= 0xd800 && last <= 0xdbff) end--;
    yield JSON.stringify(text.slice(start, end)).slice(1, -1);
    start = end;
  }
  yield '"';
}

function* valuePieces(value: unknown, indent: string, ancestors: object[], limits: JsonStreamLimits): Generator<string> {
  if (typeof value !== 'object' || value === null || boxed(value)) {
    if (typeof value === 'string' && value.length > limits.sliceChars) yield* stringPieces(value, limits.sliceChars);
    else yield JSON.stringify(value);
    return;
  }
  if (fitsInOnePiece(value, limits)) {
    // JSON text has no newline but the ones that indent it.
    const text = JSON.stringify(value, null, 2);
    yield indent ? text.replace(/\n/g, `\n${indent}`) : text;
    return;
  }
  if (ancestors.includes(value)) throw new TypeError('Converting circular structure to JSON');
  ancestors.push(value);
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) yield '[]';
    else {
      for (let i = 0; i < value.length; ) {
        const opening = i === 0 ? '[' : ',';
        const end = runEnd(value, i, limits);
        if (end > i) {
          // A run of small items in one call: `[\n  a,\n  b\n]` at this depth, less its brackets.
          const text = JSON.stringify(value.slice(i, end), null, 2).replace(/\n/g, `\n${indent}`);
          yield opening + text.slice(1, text.length - indent.length - 2);
          i = end;
        } else {
          yield `${opening}\n${inner}`;
          const item = jsonValue(String(i), value[i]);
          if (unwritable(item)) yield 'null';
          else yield* valuePieces(item, inner, ancestors, limits);
          i++;
        }
      }
      yield `\n${indent}]`;
    }
  } else {
    let empty = true;
    for (const key of Object.keys(value)) {
      const item = jsonValue(key, (value as Record<string, unknown>)[key]);
      if (unwritable(item)) continue;
      yield `${empty ? '{' : ','}\n${inner}${JSON.stringify(key)}: `;
      empty = false;
      yield* valuePieces(item, inner, ancestors, limits);
    }
    yield empty ? '{}' : `\n${indent}}`;
  }
  ancestors.pop();
}

/** The text of `JSON.stringify(value, null, 2)`, in pieces of bounded size. */
export function* jsonPieces(value: unknown, limits: Partial<JsonStreamLimits> = {}): Generator<string> {
  const root = jsonValue('', value);
  // JSON.stringify gives undefined for these, which a template literal writes as "undefined".
  if (unwritable(root)) yield String(undefined);
  else yield* valuePieces(root, '', [], { ...DEFAULT_LIMITS, ...limits });
}

/** Resolves once `stream` wants more ('drain'), or can take no more at all. */
function drained(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done);
      stream.off('close', done);
      stream.off('error', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
    stream.on('error', done);
  });
}

const closed = (stream: NodeJS.WritableStream) => (stream as { destroyed?: boolean }).destroyed === true || !stream.writable;

/**
 * Write `value` and a newline to `stream` as `JSON.stringify(value, null, 2)` would, in
 * chunks of about `chunkChars` characters, waiting for the reader whenever the stream
 * asks to (backpressure). A document smaller than one chunk is written at once, within
 * this call; an error before the first chunk went out is thrown from this call too, so
 * nothing half-written precedes it.
 */
export function writeJsonDocument(
  stream: NodeJS.WritableStream,
  value: unknown,
  opts: { chunkChars?: number; limits?: Partial<JsonStreamLimits> } = {},
): Promise<void> {
  const chunkChars = opts.chunkChars ?? CHUNK_CHARS;
  const pieces = jsonPieces(value, opts.limits);
  let buffer = '';
  const pump = (): Promise<void> => {
    if (closed(stream)) return Promise.resolve(); // the reader went away (`| head`)
    for (let next = pieces.next(); !next.done; next = pieces.next()) {
      buffer += next.value;
      if (buffer.length >= chunkChars) {
        const chunk = buffer;
        buffer = '';
        if (!stream.write(chunk)) return drained(stream).then(pump);
      }
    }
    stream.write(`${buffer}\n`);
    return Promise.resolve();
  };
  return pump();
}
