// POST /orders against a running `stockctl serve`, with autocannon (a lean client: a
// fetch-based one on the same two cores halves the figure), each order one unit of a
// SKU drawn at random from PREFIX1..PREFIXn, or of the one SKU when n is 1.
//   node test/bench/serve-orders.mjs URL TOKEN SKU|PREFIX [SKUS] [CONNECTIONS] [SECONDS]
// Prints one JSON line: requests/s, latency p50 and p99 (ms), and the count of each status.
import autocannon from 'autocannon';

const [url, token, sku, skusArg = '1', connectionsArg = '64', secondsArg = '10'] = process.argv.slice(2);
if (!url || !token || !sku) {
  console.error('usage: node test/bench/serve-orders.mjs URL TOKEN SKU|PREFIX [SKUS] [CONNECTIONS] [SECONDS]');
  process.exit(2);
}
const skus = Number(skusArg);
const bodyFor = () => JSON.stringify({ items: [{ sku: skus === 1 ? sku : `${sku}${1 + Math.floor(Math.random() * skus)}`, quantity: 1 }] });
const statuses = {};
const result = await autocannon({
  url: `${url}/orders`,
  connections: Number(connectionsArg),
  duration: Number(secondsArg),
  requests: [
    {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      setupRequest: (request) => ({ ...request, body: bodyFor() }),
      onResponse: (status) => {
        statuses[status] = (statuses[status] ?? 0) + 1;
      },
    },
  ],
});
console.log(
  JSON.stringify({
    what: 'serve POST /orders',
    skus,
    connections: Number(connectionsArg),
    seconds: Number(secondsArg),
    rps: Math.round(result.requests.average),
    total: result.requests.total,
    p50_ms: result.latency.p50,
    p99_ms: result.latency.p99,
    statuses,
    errors: result.errors,
    timeouts: result.timeouts,
  }),
);
