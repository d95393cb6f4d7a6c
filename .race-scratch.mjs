import postgres from 'postgres';
const D = '/work/main/dist';
const { openDatabase } = await import(`${D}/db/client.js`);
const { runMigrations } = await import(`${D}/db/migrate.js`);
const { addProduct } = await import(`${D}/engine/catalogue.js`);
const { reserveOrder } = await import(`${D}/engine/orders.js`);
const { DEFAULT_SETTINGS } = await import(`${D}/engine/settings.js`);
const base = 'postgres://postgres@127.0.0.1:5432/';
const name = 'eng_scratch_' + Math.random().toString(16).slice(2, 8);
const admin = postgres(base + 'test', { max: 1, onnotice() {} });
await admin.unsafe(`CREATE DATABASE ${name}`);
const url = base + name;
await runMigrations(url);
const strategy = process.argv[2] ?? 'locking';
const conns = Number(process.argv[3] ?? 20), N = Number(process.argv[4] ?? 60), K = Number(process.argv[5] ?? 20);
const main = await openDatabase({ url, max: 1 });
await addProduct(main.db, { sku: 'X', name: 'x', price: 1, stock: K, actor: 't' });
const pools = await Promise.all(Array.from({ length: conns }, () => openDatabase({ url, max: 1 })));
const t0 = Date.now();
const keep = setInterval(async () => {
  const rows = await admin.unsafe(`select pid, state, wait_event_type, wait_event, now()-xact_start as x, left(regexp_replace(query,'\\s+',' ','g'),80) q from pg_stat_activity where datname='${name}' and state <> 'idle'`);
  console.log('WATCHDOG', Date.now() - t0, JSON.stringify(counts), rows.length, JSON.stringify(rows.slice(0, 4)));
}, 5000);
const counts = {};
await Promise.all(pools.map(async (p, c) => {
  for (let b = c; b < N; b += conns) {
    const t = Date.now();
    try { const r = await reserveOrder(p.db, { lines: [{ sku: 'X', quantity: 1 }], strategy, actor: 't' }, DEFAULT_SETTINGS); counts.ok = (counts.ok ?? 0) + 1; if (r.retries) counts.retries = (counts.retries ?? 0) + r.retries; }
    catch (e) { const k = e.code ?? e.cause?.code ?? e.message; counts[k] = (counts[k] ?? 0) + 1; }
  }
}));
clearInterval(keep); console.log(strategy, JSON.stringify(counts), Date.now() - t0, 'ms');
await Promise.all(pools.map((p) => p.close()));
await main.close();
await admin.unsafe(`DROP DATABASE ${name} WITH (FORCE)`);
await admin.end();
