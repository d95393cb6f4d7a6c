/**
 * The JSON writer behind every `--json` result: the very text of
 * `JSON.stringify(value, null, 2)` and a newline, written in chunks of bounded size as
 * the reader takes them, so that a document longer than V8's longest string (about
 * 512 MiB: `cancel --from-file` over 2.5 M orders) is still written whole.
 */
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createOutput } from '../../src/cli/output.js';
import { CHUNK_CHARS, jsonPieces, writeJsonDocument, type JsonStreamLimits } from '../../src/cli/json-stream.js';

/** A stdout stand-in that takes a chunk at a time, on a later tick, and remembers what it was given. */
class SlowReader extends Writable {
  chunks: string[] = [];
  /** The most the stream ever held unwritten: bounded when the writer waits for 'drain'. */
  mostBuffered = 0;
  constructor() {
    super({ highWaterMark: 16_384, decodeStrings: false });
  }
  override _write(chunk: string, _encoding: BufferEncoding, done: (err?: Error) => void) {
    this.mostBuffered = Math.max(this.mostBuffered, this.writableLength);
    this.chunks.push(chunk);
    setImmediate(done);
  }
  text() {
    return this.chunks.join('');
  }
}

const TINY: JsonStreamLimits = { pieceNodes: 2, pieceChars: 4, sliceChars: 3 };

/** Values as JSON.stringify meets them in practice, and its corner cases. */
const values = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constantFrom(null, true, false, 0, -0, 1.5, -1e21, NaN, Infinity, undefined, '', 'é', '\u2028', '\ud83d\ude00', '\ud800', '"\\\n\t'),
    fc.string({ unit: 'binary', maxLength: 12 }),
    fc.integer(),
    fc.double(),
    fc.date({ noInvalidDate: false }),
    tie('array'),
    tie('object'),
  ),
  array: fc.array(tie('value'), { maxLength: 6 }),
  object: fc.dictionary(fc.string({ maxLength: 6 }), tie('value'), { maxKeys: 6 }),
}));

describe('jsonPieces', () => {
  it('is JSON.stringify(value, null, 2), piece by piece, with the default limits and with tiny ones', () => {
    fc.assert(
      fc.property(values.value, (value) => {
        const expected = String(JSON.stringify(value, null, 2));
        expect([...jsonPieces(value)].join('')).toBe(expected);
        expect([...jsonPieces(value, TINY)].join('')).toBe(expected);
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps what JSON.stringify does with toJSON, boxed primitives, holes, functions and symbols', () => {
    const withToJSON = { toJSON: (key: string) => ({ key, list: [1, { toJSON: () => 'inner' }] }) };
    const value = {
      when: new Date('2030-01-01T12:00:00.123Z'),
      custom: withToJSON,
      list: [withToJSON, undefined, () => 1, Symbol('s'), , new Number(3), new String('s'), new Boolean(false)],
      dropped: undefined,
      fn: () => 2,
      nested: { deeper: { deepest: [[], {}, [[]], { a: [] }] } },
      '': 'empty key',
      2: 'index-like key',
      long: 'x'.repeat(50) + '\ud83d\ude00'.repeat(20),
    };
    for (const limits of [{}, TINY]) expect([...jsonPieces(value, limits)].join('')).toBe(JSON.stringify(value, null, 2));
    expect([...jsonPieces(withToJSON, TINY)].join('')).toBe(JSON.stringify(withToJSON, null, 2));
    expect([...jsonPieces(undefined)].join('')).toBe(String(JSON.stringify(undefined)));
  });

  it('refuses what JSON.stringify refuses: a cycle, a BigInt', () => {
    const cyclic: Record<string, unknown> = { rows: Array.from({ length: 300 }, (_, i) => ({ i })) };
    (cyclic.rows as unknown[]).push(cyclic);
    expect(() => [...jsonPieces(cyclic)]).toThrow(TypeError);
    expect(() => [...jsonPieces({ n: 1n })]).toThrow(TypeError);
  });
});

describe('writeJsonDocument', () => {
  /** A `cancel --json` report over `n` orders, as the command builds it. */
  const cancelReport = (n: number) => ({
    dry_run: false,
    cancelled: n,
    already_cancelled: 0,
    failed: 0,
    results: Array.from({ length: n }, (_, i) => ({ order: `bench-cancel-${i + 1}`, outcome: 'cancelled', released_units: 2, restocked_units: 0, exit_code: 0 })),
  });

  it('writes a large report in chunks of bounded size, waiting for the reader, and the text is JSON.stringify', async () => {
    const report = cancelReport(50_000);
    const reader = new SlowReader();
    const writing = writeJsonDocument(reader, report);
    // Not all of it at once: the rest waits for the reader.
    expect(reader.chunks.length).toBeLessThan(3);
    await writing;
    expect(reader.text()).toBe(`${JSON.stringify(report, null, 2)}\n`);
    expect(reader.chunks.length).toBeGreaterThan(50);
    // A chunk is CHUNK_CHARS and at most one piece more; the stream never holds much more than one.
    for (const chunk of reader.chunks) expect(chunk.length).toBeLessThan(2 * CHUNK_CHARS);
    expect(reader.mostBuffered).toBeLessThan(2 * CHUNK_CHARS);
  });

  it('writes a small document in one write, within the call', async () => {
    const reader = new SlowReader();
    const writing = writeJsonDocument(reader, { ok: true, items: [1, 2] });
    expect(reader.chunks).toEqual([`${JSON.stringify({ ok: true, items: [1, 2] }, null, 2)}\n`]);
    await writing;
  });

  it('throws from the call, having written nothing, when the document cannot be written at all', () => {
    const reader = new SlowReader();
    expect(() => writeJsonDocument(reader, { n: 1n })).toThrow(TypeError);
    expect(reader.chunks).toEqual([]);
  });
});

describe('a --json result (Output.result)', () => {
  it('writes a document longer than the longest string V8 can hold, in bounded chunks, never holding it whole', async () => {
    // 520 rows that share one string of 1 MiB: little memory, 520 MiB of JSON.
    const mib = 'a'.repeat(1 << 20);
    const rows = Array.from({ length: 520 }, (_, i) => ({ order: `o-${i}`, note: mib }));

    const written = createHash('sha256');
    let length = 0;
    let longest = 0;
    const out = await createOutput({ json: true });
    // stdout as a reader that takes everything at once, counting and hashing (a spy would keep every chunk).
    const write = process.stdout.write;
    process.stdout.write = ((chunk: string) => {
      written.update(chunk);
      length += chunk.length;
      longest = Math.max(longest, chunk.length);
      return true;
    }) as typeof process.stdout.write;
    try {
      await out.result(rows, () => {});
    } finally {
      process.stdout.write = write;
    }

    const expected = createHash('sha256');
    let expectedLength = 0;
    const add = (text: string) => {
      expected.update(text);
      expectedLength += text.length;
    };
    add('[');
    rows.forEach((row, i) => {
      add(`${i === 0 ? '' : ','}\n  {\n    "order": "${row.order}",\n    "note": "`);
      add(mib);
      add('"\n  }');
    });
    add('\n]\n');
    expect(length).toBe(expectedLength);
    // Longer than V8's longest string (2^29 - 24 characters): JSON.stringify(rows) throws RangeError.
    expect(length).toBeGreaterThan(2 ** 29 - 24);
    expect(written.digest('hex')).toBe(expected.digest('hex'));
    expect(longest).toBeLessThan(2 * CHUNK_CHARS);
  }, 120_000);
});
