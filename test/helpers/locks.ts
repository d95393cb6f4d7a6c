/**
 * A lock held by another session, as a user's second terminal or another service would:
 * its own connection, a transaction that takes the lock with `statement` and keeps it
 * until `release()`.
 */
import postgres from 'postgres';

export interface HeldLock {
  /** Ends the holding transaction and its connection; safe to call more than once. */
  release(): Promise<void>;
}

/** Resolves once the lock is taken. */
export async function holdLock(url: string, statement: string): Promise<HeldLock> {
  const holder = postgres(url, { max: 1, onnotice: () => {} });
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let locked!: () => void;
  const isLocked = new Promise<void>((resolve) => (locked = resolve));
  const held = holder.begin(async (tx) => {
    await tx.unsafe(statement);
    locked();
    await released;
  });
  try {
    await Promise.race([isLocked, held]);
  } catch (err) {
    await holder.end();
    throw err;
  }
  let ended = false;
  return {
    async release() {
      if (ended) return;
      ended = true;
      release();
      await held;
      await holder.end();
    },
  };
}

/**
 * Hold the lock a writer of stock (a pay, a `stock adjust`, another process) holds on
 * the stock level of `sku` at `location`. Fails if there is no such level, rather than
 * holding nothing.
 */
export function holdStockLevel(url: string, sku: string, location = 'default'): Promise<HeldLock> {
  const quote = (s: string) => `'${s.replace(/'/g, "''")}'`;
  return holdLock(
    url,
    `DO $$ BEGIN
       PERFORM 1 FROM stock_levels WHERE sku = ${quote(sku)} AND location = ${quote(location)} FOR NO KEY UPDATE;
       IF NOT FOUND THEN RAISE EXCEPTION 'no stock level %/%', ${quote(sku)}, ${quote(location)}; END IF;
     END $$`,
  );
}
