// The floor for one CLI invocation: start Node, open a postgres.js connection, run one
// query, close, exit. `stockctl reserve` is compared against this (see cli-startup.mjs).
import postgres from 'postgres';

const sql = postgres(process.env.DATABASE_URL, { max: 1, onnotice: () => {} });
await sql`SELECT 1`;
await sql.end();
