/**
 * Which cluster a data directory holds: the system identifier initdb wrote in its
 * pg_control. The wire probe compares it with what the server on the port reports, so a
 * home only ever uses its own cluster.
 */
import fs from 'node:fs/promises';
import { endianness } from 'node:os';
import path from 'node:path';

/** The system identifier initdb wrote at the start of global/pg_control (as PostgreSQL's int8). */
export async function clusterIdentifier(dataDir: string): Promise<string | undefined> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(path.join(dataDir, 'global', 'pg_control'), 'r');
    const buf = Buffer.alloc(8);
    const { bytesRead } = await handle.read(buf, 0, 8, 0);
    if (bytesRead < 8) return undefined;
    return (endianness() === 'LE' ? buf.readBigInt64LE(0) : buf.readBigInt64BE(0)).toString();
  } catch {
    return undefined;
  } finally {
    await handle?.close();
  }
}
