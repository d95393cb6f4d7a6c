// N clients of GET /stock/events on a running `stockctl serve` (raw HTTP, a lean reader),
// and how late each change reaches each of them. Every PROBE_MS it orders one unit of
// PROBE_SKU through POST /orders; the latency of that change at a client is from the
// moment the order was sent to the moment its `stock` event arrived there (an upper bound
// of commit-to-delivery: it includes the order itself). Runs until SIGINT or SIGTERM, then
// prints one JSON line: clients, events received, probes, latency p50 / p99 / max (ms)
// over every probe at every client, and how many streams ended early. Every client takes
// every SKU, unless EACH is PREFIX:N: client i then takes PREFIX<i mod N + 1> (a product
// page) and PROBE_SKU.
//   node test/bench/sse-clients.mjs URL TOKEN PROBE_SKU [CLIENTS] [PROBE_MS] [EACH]
import http from 'node:http';

const [url, token, probeSku, clientsArg = '100', probeMsArg = '100', each] = process.argv.slice(2);
if (!url || !token || !probeSku) {
  console.error('usage: node test/bench/sse-clients.mjs URL TOKEN PROBE_SKU [CLIENTS] [PROBE_MS] [PREFIX:N]');
  process.exit(2);
}
const target = new URL(url);
const agent = new http.Agent({ keepAlive: true, maxSockets: Number(clientsArg) + 4 });
const needle = `"sku":"${probeSku}"`;
/** The time each probe order was sent, by the version it made (from its answer). */
const sentAtVersion = new Map();
/** Probe events that arrived before their order's answer: version -> arrival times. */
const early = new Map();
const latencies = [];
let events = 0;
let ended = 0;
let ready = 0;

function record(version, at) {
  const sent = sentAtVersion.get(version);
  if (sent === undefined) {
    if (!early.has(version)) early.set(version, []);
    early.get(version).push(at);
  } else latencies.push(at - sent);
}

const [eachPrefix, eachCount] = each ? [each.split(':')[0], Number(each.split(':')[1])] : [];
function openClient(i) {
  const path = each ? `/stock/events?sku=${eachPrefix}${(i % eachCount) + 1}&sku=${probeSku}` : '/stock/events';
  const req = http.get({ host: target.hostname, port: target.port, path, agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
    if (res.statusCode !== 200) {
      console.error(`a client got ${res.statusCode}`);
      process.exit(1);
    }
    let tail = '';
    let live = false;
    res.setEncoding('utf8');
    res.on('data', (chunk) => {
      const at = performance.now();
      const text = tail + chunk;
      const lastBreak = text.lastIndexOf('\n\n');
      const complete = lastBreak < 0 ? '' : text.slice(0, lastBreak);
      tail = lastBreak < 0 ? text : text.slice(lastBreak + 2);
      if (!live && complete.includes('event: ready')) {
        live = true;
        ready++;
      }
      for (let i = complete.indexOf('event: stock'); i >= 0; i = complete.indexOf('event: stock', i + 1)) events++;
      if (!live) return;
      for (let i = complete.indexOf(needle); i >= 0; i = complete.indexOf(needle, i + 1)) {
        const block = complete.slice(i, complete.indexOf('}', i));
        const version = Number(/"version":(\d+)/.exec(block)?.[1]);
        const eventStart = complete.lastIndexOf('event: ', i);
        if (complete.startsWith('event: stock', eventStart)) record(version, at);
      }
    });
    res.on('end', () => ended++);
  });
  req.on('error', () => ended++);
}

for (let i = 0; i < Number(clientsArg); i++) openClient(i);
while (ready < Number(clientsArg)) await new Promise((resolve) => setTimeout(resolve, 50));
console.error(`${ready} streams ready`);

let probes = 0;
const probe = async () => {
  const sent = performance.now();
  const res = await fetch(`${url}/orders`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ items: [{ sku: probeSku, quantity: 1 }] }),
  }).catch(() => undefined);
  if (res?.status !== 201) return;
  probes++;
  // The version this order's change made is not in the answer: read it from the row.
  const row = await fetch(`${url}/stock/${probeSku}`, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.json());
  // Probes run one at a time and nobody else orders PROBE_SKU: the row's version is this order's.
  sentAtVersion.set(row.version, sent);
  for (const at of early.get(row.version) ?? []) latencies.push(at - sent);
  early.delete(row.version);
};
let stopping = false;
const loop = (async () => {
  while (!stopping) {
    await probe();
    await new Promise((resolve) => setTimeout(resolve, Number(probeMsArg)));
  }
})();

const finish = async () => {
  stopping = true;
  await loop;
  await new Promise((resolve) => setTimeout(resolve, 500)); // the last probe's events
  latencies.sort((a, b) => a - b);
  const at = (q) => (latencies.length ? Math.round(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] * 10) / 10 : null);
  console.log(
    JSON.stringify({
      what: 'sse clients',
      clients: Number(clientsArg),
      each: each ?? 'every SKU',
      events_received: events,
      probes,
      deliveries: latencies.length,
      expected_deliveries: probes * Number(clientsArg),
      latency_p50_ms: at(0.5),
      latency_p99_ms: at(0.99),
      latency_max_ms: latencies.length ? Math.round(latencies.at(-1) * 10) / 10 : null,
      streams_ended: ended,
    }),
  );
  process.exit(0);
};
process.on('SIGINT', finish);
process.on('SIGTERM', finish);
