/**
 * Leaving the process without losing output. On a pipe, Node writes stdout and stderr
 * asynchronously: `process.exit()` right after a large write keeps only what the pipe
 * buffer took (64 KiB to 128 KiB), and the reader sees cut-off JSON while we exit 0.
 * So every exit waits until both streams have handed all their data to the kernel,
 * however slow the reader. A reader that went away (`| head`) ends it quietly: the
 * EPIPE handler installed by `guardStdout` exits 0 at once.
 */

/** Resolves once everything written to `stream` so far has been flushed (or failed). */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed || !stream.writable) {
      resolve();
      return;
    }
    // Writes complete in order: the callback of an empty write runs after every earlier one.
    stream.write('', () => resolve());
  });
}

/** Documents still being written in chunks, as the reader takes them (src/cli/json-stream.ts). */
const unfinished = new Set<Promise<void>>();

/** Every exit first waits for `writing`; one that failed makes a successful exit 1. */
export function finishBeforeExit(writing: Promise<void>): void {
  unfinished.add(writing);
  const settle = () => unfinished.delete(writing);
  writing.then(settle, settle);
}

export async function exitWhenFlushed(code: number): Promise<never> {
  const written = await Promise.allSettled([...unfinished]);
  const failed = written.some((w) => w.status === 'rejected');
  await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
  process.exit(failed && code === 0 ? 1 : code);
}

/**
 * A reader that went away: on stdout (`stockctl stock --json | head`) the command ends
 * quietly; on stderr, diagnostics are simply lost.
 */
export function guardStdio(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  process.stderr.on('error', () => {});
}
