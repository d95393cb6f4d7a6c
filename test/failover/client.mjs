#!/usr/bin/env node
/**
 * The checkout client of test/failover/run.sh, and its judge.
 *
 *   node client.mjs wait-ready          GET /readyz on every instance until each answers 200
 *   node client.mjs load                checkout workers until $FO_STATE/stop exists
 *   node client.mjs resolve             retry every unknown order (same Idempotency-Key)
 *   node client.mjs report              check the database, print the one JSON document
 *
 * Everything is passed in the environment (FO_*, see run.sh) and kept in $FO_STATE.
 * Only Node's own modules, and postgres.js from the project for the SQL checks.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const env = process.env;
const STATE = env.FO_STATE ?? '.';
const URLS = (env.FO_URLS ?? '').split(',').filter(Boolean);
const TOKEN = env.FO_TOKEN ?? '';
const SKUS = (env.FO_SKUS ?? 'FO-A').split(',').filter(Boolean);
const WORKERS = Number(env.FO_WORKERS ?? 4);
const THINK_MS = Number(env.FO_THINK_MS ?? 40);
const TIMEOUT_MS = Number(env.FO_TIMEOUT_MS ?? 10_000);
const RESOLVE_S = Number(env.FO_RESOLVE_S ?? 60);
const MAX_LOAD_S = Number(env.FO_MAX_LOAD_S ?? 600);

const file = (name) => path.join(STATE, name);
const readJson = (name, fallback) => {
  try {
    return JSON.parse(fs.readFileSync(file(name), 'utf8'));
  } catch {
    return fallback;
  }
};
const writeJson = (name, value) => {
  const tmp = `${file(name)}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(value)}\n`);
  fs.renameSync(tmp, file(name));
};
const log = (...parts) => process.stderr.write(`[client ${new Date().toISOString().slice(11, 23)}] ${parts.join(' ')}\n`);

/** What one HTTP exchange came to: an answer (status, body, Retry-After) or none (error). */
async function call(base, method, route, { body, key, timeoutMs = TIMEOUT_MS } = {}) {
  const started = Date.now();
  const headers = { authorization: `Bearer ${TOKEN}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (key) headers['idempotency-key'] = key;
  try {
    const res = await fetch(base + route, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, json, text, retryAfter: res.headers.get('retry-after'), started, at: Date.now() };
  } catch (err) {
    const code = err?.name === 'TimeoutError' || err?.cause?.name === 'TimeoutError' ? 'timeout' : (err?.cause?.code ?? err?.code ?? err?.name ?? 'error');
    return { status: 0, error: String(code), message: String(err?.cause?.message ?? err?.message ?? err), started, at: Date.now() };
  }
}

/**
 * acknowledged: the server said it is done (201/200, with an order id for POST);
 * unknown: no answer, a timeout or a 503 (it may or may not have happened);
 * failed: a 5xx other than 503, a bug (also unknown as to its effect);
 * rejected: any other answer (4xx), which says it did not happen.
 */
function classify(method, r) {
  if (r.status === 0) return 'unknown';
  if (r.status === 503) return 'unknown';
  if (r.status >= 500) return 'failed';
  if (method === 'POST') return (r.status === 201 || r.status === 200) && r.json?.order_id ? 'acknowledged' : 'rejected';
  return r.status === 200 ? 'acknowledged' : 'rejected';
}

/** A label for the tally of answers: "POST 201", "PATCH 503", "DELETE network:ECONNREFUSED". */
const label = (method, r) => `${method} ${r.status === 0 ? `network:${r.error}` : r.status}`;

class Tally {
  constructor() {
    this.byStatus = {};
    this.missingRetryAfter = 0;
    this.samples = {};
    this.reasons503 = {};
    this.timeline = [];
  }
  add(method, route, r) {
    const key = label(method, r);
    this.byStatus[key] = (this.byStatus[key] ?? 0) + 1;
    if (r.status === 503 && !r.retryAfter) this.missingRetryAfter++;
    if (r.status === 503) {
      const why = String(r.json?.detail ?? r.text ?? '').slice(0, 160);
      this.reasons503[why] = (this.reasons503[why] ?? 0) + 1;
    }
    // Every answer that was not a success, for the failovers' timelines in the report.
    if ((r.status === 0 || r.status >= 300) && this.timeline.length < 20_000) {
      this.timeline.push({ t: r.at, what: `${key}${r.json?.detail ? `: ${String(r.json.detail).slice(0, 120)}` : r.message ? `: ${r.message.slice(0, 120)}` : ''}` });
    }
    // The first few bodies of every answer that is not a success, for the report.
    if (r.status === 0 || r.status >= 300) {
      const list = (this.samples[key] ??= []);
      if (list.length < 3) list.push({ at: new Date(r.at).toISOString(), route, body: r.json ?? r.text?.slice(0, 400) ?? r.message, retry_after: r.retryAfter ?? undefined });
    }
  }
}

async function waitReady() {
  const timeoutS = Number(env.FO_READY_TIMEOUT_S ?? 60);
  const start = Date.now();
  const pending = new Set(URLS);
  const last = {};
  const notReady = {};
  while (pending.size && Date.now() - start < timeoutS * 1000) {
    await Promise.all(
      [...pending].map(async (base) => {
        const r = await call(base, 'GET', '/readyz', { timeoutMs: 3000 });
        last[base] = r.status ? `${r.status} ${r.text?.slice(0, 300)}` : `no answer (${r.error})`;
        if (r.status === 200) pending.delete(base);
        else {
          const what = r.status ? `${r.status}: ${String(r.json?.detail ?? r.text).slice(0, 120)}` : `no answer: ${r.error}`;
          notReady[what] = (notReady[what] ?? 0) + 1;
        }
      }),
    );
    if (pending.size) await sleep(250);
  }
  const ms = Date.now() - start;
  if (pending.size) {
    for (const base of pending) log(`${base}/readyz still not 200 after ${ms} ms: ${last[base]}`);
    process.exitCode = 1;
  }
  // For the report: how long /readyz took to answer 200 on every instance, and what it said before.
  fs.appendFileSync(file('readyz.jsonl'), `${JSON.stringify({ label: env.FO_READY_LABEL ?? '', started: start, ms, ok: pending.size === 0, not_ready: notReady })}\n`);
  process.stdout.write(`${ms}\n`);
}

async function load() {
  const startedAt = Date.now();
  const orders = [];
  const successes = [];
  const tally = new Tally();
  let next = 0;
  let lastWriteOk = 0;
  const stopFile = file('stop');
  const stopped = () => fs.existsSync(stopFile) || Date.now() - startedAt > MAX_LOAD_S * 1000;
  const counts = () => {
    const c = { orders: orders.length, acknowledged: 0, unknown: 0, failed: 0, rejected: 0, in_flight: 0 };
    for (const o of orders) c[o.outcome ?? 'in_flight']++;
    return c;
  };
  const wrote = (r) => {
    successes.push(r.at);
    lastWriteOk = r.at;
  };

  const worker = async (w) => {
    while (!stopped()) {
      const sku = SKUS[Math.floor(Math.random() * SKUS.length)];
      const order = { key: randomUUID(), sku, worker: w, instance: next++ % URLS.length };
      orders.push(order);
      const r = await call(URLS[order.instance], 'POST', '/orders', { body: { items: [{ sku, quantity: 1 }] }, key: order.key });
      tally.add('POST', '/orders', r);
      order.sent_at = r.started;
      order.answered_at = r.at;
      order.status = r.status || r.error;
      order.outcome = classify('POST', r);
      if (order.outcome !== 'acknowledged') order.detail = String(r.json?.detail ?? r.message ?? r.text ?? '').slice(0, 160);
      if (order.outcome === 'acknowledged') {
        order.order_id = r.json.order_id;
        wrote(r);
        const dice = Math.random();
        const action = dice < 0.4 ? 'pay' : dice < 0.7 ? 'cancel' : undefined;
        if (action) {
          const instance = next++ % URLS.length;
          const [method, route] = action === 'pay' ? ['PATCH', `/orders/${order.order_id}/payment`] : ['DELETE', `/orders/${order.order_id}`];
          const a = await call(URLS[instance], method, route, { body: {} });
          tally.add(method, action === 'pay' ? '/orders/{id}/payment' : '/orders/{id}', a);
          order.action = action;
          order.action_status = a.status || a.error;
          order.action_outcome = classify(method, a);
          if (order.action_outcome === 'acknowledged') wrote(a);
        }
      }
      // After an answer that is no answer (a 503, a timeout), a short pause: the client does
      // not wait out Retry-After (5 s), so that the write gap measured is the database's.
      const pause = order.outcome === 'acknowledged' || order.outcome === 'rejected' ? THINK_MS * (0.5 + Math.random()) : 250;
      if (pause > 0) await sleep(pause);
    }
  };

  // A load balancer's view: GET /readyz on each instance twice a second.
  const readyOk = [];
  const prober = async () => {
    while (!stopped()) {
      await Promise.all(
        URLS.map(async (base, instance) => {
          const r = await call(base, 'GET', '/readyz', { timeoutMs: 3000 });
          tally.add('GET', '/readyz', r);
          if (r.status === 200) readyOk.push(r.at);
        }),
      );
      await sleep(500);
    }
  };

  const progress = setInterval(() => writeJson('progress.json', { t: Date.now(), last_write_ok: lastWriteOk, ...counts() }), 250);
  log(`load: ${WORKERS} workers over ${URLS.join(' and ')}, SKUs ${SKUS.join(',')}, think ${THINK_MS} ms, timeout ${TIMEOUT_MS} ms`);
  await Promise.all([prober(), ...Array.from({ length: WORKERS }, (_, w) => worker(w))]);
  clearInterval(progress);
  const endedAt = Date.now();
  writeJson('progress.json', { t: endedAt, last_write_ok: lastWriteOk, ...counts(), done: true });
  writeJson('load.json', { started_at: startedAt, ended_at: endedAt, orders, successes, by_status: tally.byStatus, missing_retry_after: tally.missingRetryAfter, reasons_503: tally.reasons503, samples: tally.samples, timeline: tally.timeline, readyz_ok: readyOk });
  log(`load: done, ${JSON.stringify(counts())}`);
}

/** Retry one request until it gets an answer that is not "unknown", or the time is up. */
async function untilAnswered(method, route, opts, tally, tries) {
  const deadline = Date.now() + RESOLVE_S * 1000;
  let r;
  for (let attempt = 0; ; attempt++) {
    r = await call(URLS[attempt % URLS.length], method, route, { ...opts, timeoutMs: Math.min(TIMEOUT_MS, Math.max(1000, deadline - Date.now())) });
    tally.add(method, route, r);
    tries.n++;
    if (r.status !== 0 && r.status < 500) return r;
    if (Date.now() + 1000 > deadline) return r;
    await sleep(1000);
  }
}

async function resolve() {
  const loaded = readJson('load.json');
  if (!loaded) throw new Error('no load.json');
  const tally = new Tally();
  const tries = { n: 0 };
  const jobs = [];
  for (const o of loaded.orders) {
    if (o.outcome === 'unknown' || o.outcome === 'failed' || o.outcome === undefined) jobs.push({ kind: 'order', o });
    else if (o.action && o.action_outcome !== 'acknowledged' && o.action_outcome !== 'rejected') jobs.push({ kind: 'action', o });
  }
  log(`resolve: ${jobs.length} requests to answer (${jobs.filter((j) => j.kind === 'order').length} orders), up to ${RESOLVE_S} s each`);
  const results = [];
  let index = 0;
  const worker = async () => {
    while (index < jobs.length) {
      const { kind, o } = jobs[index++];
      const started = Date.now();
      if (kind === 'order') {
        const r = await untilAnswered('POST', '/orders', { body: { items: [{ sku: o.sku, quantity: 1 }] }, key: o.key }, tally, tries);
        results.push({
          kind,
          key: o.key,
          status: r.status || r.error,
          order_id: r.json?.order_id,
          replay: r.json?.replay,
          code: r.json?.code,
          resolved: (r.status === 201 || r.status === 200) && Boolean(r.json?.order_id),
          ms: Date.now() - started,
        });
      } else {
        const [method, route] = o.action === 'pay' ? ['PATCH', `/orders/${o.order_id}/payment`] : ['DELETE', `/orders/${o.order_id}`];
        const r = await untilAnswered(method, route, { body: {} }, tally, tries);
        results.push({ kind, action: o.action, key: o.key, status: r.status || r.error, code: r.json?.code, resolved: r.status === 200, ms: Date.now() - started });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(4, jobs.length) }, worker));
  writeJson('resolve.json', { results, requests: tries.n, by_status: tally.byStatus, missing_retry_after: tally.missingRetryAfter, reasons_503: tally.reasons503, samples: tally.samples });
  log(`resolve: done, ${results.filter((r) => r.resolved).length} of ${results.length} answered, ${tries.n} requests`);
}

/** The longest stretch without a successful write, and the gaps over a second. */
function writeGaps(successes, from, to) {
  const times = [from, ...successes.filter((t) => t >= from && t <= to).sort((a, b) => a - b), to];
  let longest = { ms: 0, from, to: from };
  const gaps = [];
  for (let i = 1; i < times.length; i++) {
    const ms = times[i] - times[i - 1];
    if (ms > longest.ms) longest = { ms, from: times[i - 1], to: times[i] };
    if (ms >= 1000) gaps.push({ from: times[i - 1], to: times[i], ms });
  }
  return { longest, gaps };
}

/** The serves' own request logs (one JSON line per request): answers by status, and internal errors. */
function serveLogs(names) {
  const out = {};
  for (const name of names) {
    const summary = { by_status: {}, internal_errors: {}, other_errors: {}, lines: 0, last_other_lines: [] };
    let text = '';
    try {
      text = fs.readFileSync(file(`${name}.stderr.log`), 'utf8');
    } catch {
      out[name] = summary;
      continue;
    }
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      summary.lines++;
      let entry;
      try {
        entry = JSON.parse(line);
      } catch {
        const k = line.slice(0, 200);
        summary.other_errors[k] = (summary.other_errors[k] ?? 0) + 1;
        summary.last_other_lines = [...summary.last_other_lines.slice(-7), line.slice(0, 400)];
        continue;
      }
      if (entry.msg === 'request' && entry.status) {
        const k = `${entry.method} ${entry.status}`;
        summary.by_status[k] = (summary.by_status[k] ?? 0) + 1;
        continue;
      }
      // The last lines that are not a request's (start, stop, errors): why a serve died.
      summary.last_other_lines = [...summary.last_other_lines.slice(-7), line.slice(0, 400)];
      if (entry.level >= 50) {
        const k = `${entry.msg}: ${entry.err?.message ?? ''}${entry.err?.sqlstate ? ` (SQLSTATE ${entry.err.sqlstate})` : ''}`.slice(0, 300);
        summary.internal_errors[k] = (summary.internal_errors[k] ?? 0) + 1;
      }
    }
    out[name] = summary;
  }
  return out;
}

async function report() {
  const loaded = readJson('load.json', { orders: [], successes: [], by_status: {}, samples: {} });
  const resolved = readJson('resolve.json', { results: [], by_status: {}, samples: {} });
  const serves = readJson('serves.json', []);
  const verify = readJson('verify.json', {});
  const monitorEvents = readJson('monitor-events.json', []);
  const readyzRuns = fs.existsSync(file('readyz.jsonl'))
    ? fs.readFileSync(file('readyz.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
    : [];
  const events = fs.existsSync(file('events.jsonl'))
    ? fs.readFileSync(file('events.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
    : [];
  const failures = [];

  // The database, on the current primary.
  let db = { rows: new Map(), total: 0, error: undefined };
  try {
    const { default: postgres } = await import('postgres');
    const sql = postgres(env.FO_PRIMARY_URL, { max: 1, connect_timeout: 10, onnotice: () => {} });
    try {
      const [{ recovery }] = await sql`select pg_is_in_recovery() as recovery`;
      if (recovery) throw new Error(`${env.FO_PRIMARY_URL} is a standby`);
      const rows = await sql`select ref, count(*)::int as n, min(status) as status from orders group by ref`;
      for (const r of rows) db.rows.set(r.ref, r);
      db.total = rows.reduce((s, r) => s + r.n, 0);
    } finally {
      await sql.end({ timeout: 5 });
    }
  } catch (err) {
    db.error = String(err?.message ?? err);
    failures.push(`could not read the orders on the primary: ${db.error}`);
  }

  const byKey = new Map(loaded.orders.map((o) => [o.key, o]));
  const acked = loaded.orders.filter((o) => o.outcome === 'acknowledged');
  const unknown = loaded.orders.filter((o) => o.outcome !== 'acknowledged' && o.outcome !== 'rejected');
  const rejected = loaded.orders.filter((o) => o.outcome === 'rejected');
  const resolvedOrders = new Map(resolved.results.filter((r) => r.kind === 'order').map((r) => [r.key, r]));
  const count = (key) => db.rows.get(key)?.n ?? 0;

  const ackMissing = acked.filter((o) => count(o.key) !== 1);
  const unknownResolved = unknown.filter((o) => resolvedOrders.get(o.key)?.resolved && count(o.key) === 1);
  const unknownUnresolved = unknown.filter((o) => !unknownResolved.includes(o));
  const rejectedPresent = rejected.filter((o) => count(o.key) > 0);
  const strangers = [...db.rows.keys()].filter((k) => !byKey.has(k));
  const pays = acked.filter((o) => o.action === 'pay');
  const cancels = acked.filter((o) => o.action === 'cancel');
  const actionDone = (o) => o.action_outcome === 'acknowledged' || resolved.results.some((r) => r.kind === 'action' && r.key === o.key && r.resolved);
  const payAckNotPaid = pays.filter((o) => actionDone(o) && db.rows.get(o.key)?.status !== 'paid');
  const cancelAckNotCancelled = cancels.filter((o) => actionDone(o) && db.rows.get(o.key)?.status !== 'cancelled');
  const actionsUnknown = [...pays, ...cancels].filter((o) => o.action_outcome !== 'acknowledged' && o.action_outcome !== 'rejected');
  const actionsUnresolved = actionsUnknown.filter((o) => !actionDone(o));

  // HTTP answers, during the load and while resolving.
  const merged = {};
  for (const tally of [loaded.by_status, resolved.by_status]) for (const [k, v] of Object.entries(tally ?? {})) merged[k] = (merged[k] ?? 0) + v;
  const http500 = Object.entries(merged).filter(([k]) => / 5\d\d$/.test(k) && !k.endsWith(' 503')).reduce((s, [, v]) => s + v, 0);
  const missingRetryAfter = (loaded.missing_retry_after ?? 0) + (resolved.missing_retry_after ?? 0);

  // Failovers: when each was set off, when the monitor had a new primary, when writes came back.
  const { longest, gaps } = writeGaps(loaded.successes ?? [], loaded.started_at ?? 0, loaded.ended_at ?? 0);
  const failovers = [];
  const starts = events.filter((e) => e.event === 'failover_started');
  for (const [i, start] of starts.entries()) {
    const of = (name) => events.find((e) => e.event === name && e.kind === start.kind);
    const up = of('primary_up');
    const ready = of('readyz_ok');
    const readyz = readyzRuns.find((r) => r.label === start.kind);
    const confirmed = of('write_confirmed');
    // The longest stretch without a successful write that overlaps the failover, from its
    // start to the moment run.sh saw a write succeed on the new primary.
    const window = [start.t, confirmed?.t ?? up?.t ?? start.t];
    const gap = gaps.filter((g) => g.to >= window[0] && g.from <= window[1]).reduce((m, g) => (g.ms > (m?.ms ?? 0) ? g : m), undefined);
    // What the client was answered meanwhile, until the next failover (or the end).
    const until = starts[i + 1]?.t ?? loaded.ended_at ?? Infinity;
    const answers = {};
    for (const a of loaded.timeline ?? []) {
      if (a.t < start.t || a.t >= until) continue;
      const entry = (answers[a.what] ??= { n: 0, first_ms: a.t - start.t, last_ms: 0 });
      entry.n++;
      entry.last_ms = a.t - start.t;
    }
    // The monitor's record: when the new primary reported wait_primary (writable) or primary.
    const promoted = monitorEvents.find((m) => m.t >= start.t && m.nodename === up?.node && ['wait_primary', 'primary'].includes(m.reportedstate));
    failovers.push({
      kind: start.kind,
      from: start.node,
      to: up?.node ?? null,
      at: new Date(start.t).toISOString(),
      new_primary_after_ms: promoted ? promoted.t - start.t : null,
      new_primary_seen_by_run_sh_after_ms: up ? up.t - start.t : null,
      writes_resumed_after_ms: gap ? Math.max(0, gap.to - start.t) : 0,
      client_write_gap_ms: gap?.ms ?? 0,
      readyz_ok_after_ms: ready ? ready.t - start.t : null,
      readyz_not_ready_answers: readyz?.not_ready ?? null,
      // /readyz said 200 while no write succeeded: it checks a read, not that writes work.
      readyz_200_during_write_gap: gap ? (loaded.readyz_ok ?? []).filter((t) => t > gap.from && t < gap.to).length : 0,
      write_confirmed_by_run_sh_after_ms: confirmed ? confirmed.t - start.t : null,
      answers_not_ok: answers,
      ...(start.detail ? { detail: start.detail } : {}),
    });
  }
  const completed = failovers.filter((f) => f.to && f.to !== f.from).length;
  // Every change of primary the monitor recorded (more than the two set off: a spurious one).
  const primaryChanges = [];
  for (const m of monitorEvents) {
    if (!['wait_primary', 'primary', 'single'].includes(m.reportedstate)) continue;
    if (primaryChanges.at(-1)?.node !== m.nodename) primaryChanges.push({ node: m.nodename, at: new Date(m.t).toISOString(), state: m.reportedstate });
  }

  const serveExits = serves.filter((s) => !s.alive);
  const readyzFailures = events.filter((e) => e.event === 'readyz_failed');

  // Without the orders read from the primary, the checks below would only repeat that.
  if (!db.error) {
    if (ackMissing.length) failures.push(`${ackMissing.length} acknowledged orders are missing (or not exactly one) on the primary`);
    if (unknownUnresolved.length) failures.push(`${unknownUnresolved.length} of ${unknown.length} unknown orders did not end as exactly one order`);
    if (rejectedPresent.length) failures.push(`${rejectedPresent.length} orders answered with a refusal exist anyway`);
    if (strangers.length) failures.push(`${strangers.length} orders on the primary were never sent by the client`);
    if (payAckNotPaid.length) failures.push(`${payAckNotPaid.length} acknowledged payments are not paid on the primary`);
    if (cancelAckNotCancelled.length) failures.push(`${cancelAckNotCancelled.length} acknowledged cancellations are not cancelled on the primary`);
  }
  if (actionsUnresolved.length) failures.push(`${actionsUnresolved.length} unknown payments/cancellations never got an answer`);
  if (http500) failures.push(`${http500} answers were 5xx other than 503 (internal errors)`);
  if (missingRetryAfter) failures.push(`${missingRetryAfter} answers were 503 without Retry-After`);
  if (verify.exit_code !== 0) failures.push(`stockctl verify exited ${verify.exit_code}`);
  if (serveExits.length) failures.push(`serve exited: ${serveExits.map((s) => `${s.name} (${s.exit ?? 'gone'})`).join(', ')}`);
  if (completed < 2) failures.push(`${completed} of 2 failovers completed`);
  if (readyzFailures.length) failures.push(`/readyz did not recover: ${readyzFailures.map((e) => e.kind).join(', ')}`);
  for (const e of events.filter((e) => e.event === 'failure')) failures.push(e.detail);

  const doc = {
    ok: failures.length === 0,
    failures,
    acknowledged: acked.length,
    acknowledged_missing: ackMissing.length,
    unknown: unknown.length,
    unknown_resolved: unknownResolved.length,
    unknown_resolution: {
      created_on_retry: unknownResolved.filter((o) => resolvedOrders.get(o.key)?.status === 201).length,
      replayed_existing: unknownResolved.filter((o) => resolvedOrders.get(o.key)?.status === 200).length,
      // Unknown orders that had been made after all: what the client was first answered.
      replayed_first_answers: unknownResolved
        .filter((o) => resolvedOrders.get(o.key)?.status === 200)
        .slice(0, 10)
        .map((o) => ({ key: o.key, first_status: o.status, detail: o.detail, at: new Date(o.answered_at).toISOString() })),
      longest_ms: Math.max(0, ...resolved.results.filter((r) => r.kind === 'order').map((r) => r.ms)),
      unresolved_keys: unknownUnresolved.slice(0, 10).map((o) => ({ key: o.key, first_status: o.status, retry: resolvedOrders.get(o.key) ?? null, in_db: count(o.key) })),
    },
    rejected: rejected.length,
    failovers: completed,
    failover_details: failovers,
    monitor_primaries: primaryChanges,
    longest_write_gap_ms: longest.ms,
    longest_write_gap: { from: new Date(longest.from).toISOString(), to: new Date(longest.to).toISOString() },
    write_gaps_over_1s: gaps.map((g) => ({ from: new Date(g.from).toISOString(), ms: g.ms })),
    payments: { sent: pays.length, acknowledged_not_paid: payAckNotPaid.length, unknown: actionsUnknown.filter((o) => o.action === 'pay').length },
    cancellations: { sent: cancels.length, acknowledged_not_cancelled: cancelAckNotCancelled.length, unknown: actionsUnknown.filter((o) => o.action === 'cancel').length },
    actions_unresolved: actionsUnresolved.length,
    orders_in_db: db.total,
    orders_in_db_not_sent: strangers.length,
    http_500s: http500,
    http_503_without_retry_after: missingRetryAfter,
    answers_during_load: loaded.by_status,
    answers_while_resolving: resolved.by_status,
    reasons_503: { load: loaded.reasons_503 ?? {}, resolve: resolved.reasons_503 ?? {} },
    resolve_requests: resolved.requests ?? 0,
    error_samples: { load: loaded.samples, resolve: resolved.samples },
    verify: { exit_code: verify.exit_code ?? null, output: verify.output ?? null },
    serves,
    serve_exits: serveExits.length,
    serve_logs: serveLogs(serves.map((s) => s.name)),
    run_seconds: env.FO_RUN_STARTED_MS ? Math.round((Date.now() - Number(env.FO_RUN_STARTED_MS)) / 1000) : null,
    stockctl: { version: env.FO_STOCKCTL_VERSION ?? null, dist_built: env.FO_DIST_BUILT ?? null, git_head: env.FO_GIT_HEAD ?? null, target_session_attrs: env.FO_TSA ?? null },
    machine: { cpus: os.cpus().length, load_average: os.loadavg().map((l) => Math.round(l * 100) / 100) },
    load_seconds: Math.round(((loaded.ended_at ?? 0) - (loaded.started_at ?? 0)) / 100) / 10,
    events: events.map((e) => ({ ...e, t: new Date(e.t).toISOString() })),
  };
  process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
  process.exitCode = doc.ok ? 0 : 1;
}

const commands = { 'wait-ready': waitReady, load, resolve, report };
const command = commands[process.argv[2]];
if (!command) {
  process.stderr.write(`usage: client.mjs ${Object.keys(commands).join('|')}\n`);
  process.exit(2);
}
await command();
