/**
 * `loadtest --report run.html`: one self-contained HTML file (inline CSS and SVG, no script,
 * nothing fetched) that tells a run's story: who wins and how each strategy reserves, the
 * rates against the bare UPDATE, the proof of no oversell per strategy, throughput over time,
 * latency on one scale, and what the figures depend on (environment, configuration).
 *
 * Axes are d3-scale's: "nice" domains and round ticks, a log scale where the figures differ
 * by a decade or more.
 */
import { scaleLinear, scaleLog, type ContinuousScale } from 'd3-scale';
import type { BaselineReport, Environment, FigureSpread, LatencyBucket, LoadtestReport, LocationProof, Proof, StrategyReport, Timeline } from './report.js';
import { BARE_UPDATE_LABEL, checkState, faultSentence, mixSentence, number } from './format.js';

const COLOURS = ['#555555', '#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

/** How each series reserves: the "why" beside its figures. */
const HOW: Record<string, string> = {
  [BARE_UPDATE_LABEL]: 'one guarded UPDATE per buyer on a scratch row, no order: the database’s own limit',
  guarded: 'one guarded UPDATE per line inside the order’s transaction: never a retry, but one commit per buyer on a hot row',
  optimistic: 'reads the row’s version, then updates if it is unchanged; a conflict is retried, then refused (false rejections)',
  locking: 'SELECT … FOR UPDATE, then the UPDATE: the row is held for two statements',
  batched: 'buyers that arrive while a statement runs share the next one: many orders per commit on a hot row',
};

const escape = (text: unknown) =>
  String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const px = (n: number) => n.toFixed(1);

interface Series {
  name: string;
  colour: string;
  duration_ms: number;
  throughput_rps: number;
  ratio: number | null;
  latency: { p50: number; p95: number; p99: number };
  spread?: FigureSpread;
  timeline?: Timeline;
  histogram?: LatencyBucket[];
}

/** A tick's label: thousands separators, and no more decimals than a round tick has. */
const tickText = (t: number) => (Math.abs(t) >= 1 || t === 0 ? number(t, Number.isInteger(t) ? 0 : 1) : String(Number(t.toPrecision(2))));

/**
 * The ticks of a log scale to label: d3's, at 1, 2 and 5 times a power of ten, or at the
 * powers alone when those would be more than `most`.
 */
function logTicks(scale: ContinuousScale, most: number): number[] {
  const lead = (t: number) => Math.round(t / Math.pow(10, Math.floor(Math.log10(t))));
  const ticks = scale.ticks();
  const some = ticks.filter((t) => [1, 2, 5].includes(lead(t)));
  return some.length <= most ? some : ticks.filter((t) => lead(t) === 1);
}

/**
 * A value axis over `values` (positive ones, for a log scale): log when they differ by a
 * decade or more, else linear from 0; a nice domain and round ticks either way.
 */
function valueScale(values: number[], range: [number, number], most = 8): { scale: ContinuousScale; ticks: number[]; log: boolean; floor: number } {
  const positive = values.filter((v) => v > 0);
  const high = Math.max(1, ...positive);
  const low = Math.min(high, ...positive);
  if (high / low >= 10) {
    const floor = Math.pow(10, Math.floor(Math.log10(low)));
    const scale = scaleLog().domain([floor, high * 1.15]).range(range).clamp(true);
    return { scale, ticks: logTicks(scale, most), log: true, floor };
  }
  const scale = scaleLinear().domain([0, high]).nice(Math.min(5, most)).range(range);
  return { scale, ticks: scale.ticks(Math.min(5, most)), log: false, floor: 0 };
}

/** Horizontal grid lines and labels of a y axis at `ticks`. */
function yAxis(scale: ContinuousScale, ticks: number[], x0: number, x1: number, label?: (t: number) => string): string {
  return ticks
    .map(
      (t) =>
        `<line class="grid" x1="${x0}" x2="${x1}" y1="${px(scale(t))}" y2="${px(scale(t))}"/>` +
        `<text class="tick y-tick" x="${x0 - 6}" y="${px(scale(t) + 4)}" text-anchor="end">${escape((label ?? tickText)(t))}</text>`,
    )
    .join('');
}

/** Vertical grid lines and labels of an x axis at `ticks`, labels at `labelY`. */
function xAxis(scale: ContinuousScale, ticks: number[], y0: number, y1: number, labelY: number, label?: (t: number) => string): string {
  return ticks
    .map(
      (t) =>
        `<line class="grid" x1="${px(scale(t))}" x2="${px(scale(t))}" y1="${y0}" y2="${y1}"/>` +
        `<text class="tick x-tick" x="${px(scale(t))}" y="${labelY}" text-anchor="middle">${escape((label ?? tickText)(t))}</text>`,
    )
    .join('');
}

const axisLabel = (x: number, y: number, text: string, rotate = false) =>
  `<text class="axis-label" x="${x}" y="${y}" text-anchor="middle"${rotate ? ` transform="rotate(-90 ${x} ${y})"` : ''}>${escape(text)}</text>`;

/** Reserve/s per series as bars, the bare UPDATE first: who wins, at a glance. With --repeat, the runs' range as a whisker. */
function ratesChart(series: Series[]): string {
  const width = 820;
  const rowH = 26;
  const pad = { left: 150, right: 90, top: 8, bottom: 44 };
  const height = pad.top + rowH * series.length + pad.bottom;
  const values = series.flatMap((s) => [s.throughput_rps, s.spread?.max ?? 0]);
  const { scale, ticks, log, floor } = valueScale(values, [pad.left, width - pad.right]);
  const base = log ? scale(floor) : scale(0);
  const bars = series
    .map((s, i) => {
      const y = pad.top + i * rowH;
      const end = Math.max(base + 1, scale(Math.max(s.throughput_rps, log ? floor : 0)));
      const whisker = s.spread
        ? `<line class="whisker" x1="${px(scale(s.spread.min))}" x2="${px(scale(s.spread.max))}" y1="${y + rowH / 2}" y2="${y + rowH / 2}"/>`
        : '';
      return (
        `<g class="rate" data-series="${escape(s.name)}"><text x="${pad.left - 8}" y="${y + rowH / 2 + 4}" text-anchor="end">${escape(s.name)}</text>` +
        `<rect class="bar" x="${px(base)}" y="${y + 4}" width="${px(end - base)}" height="${rowH - 8}" fill="${s.colour}"><title>${escape(s.name)}: ${number(s.throughput_rps)} reservations/s</title></rect>${whisker}` +
        `<text class="value" x="${px(Math.max(end, s.spread ? scale(s.spread.max) : 0) + 6)}" y="${y + rowH / 2 + 4}">${number(s.throughput_rps)}/s${s.ratio === null ? '' : ` (${number(s.ratio, 2)}×)`}</text></g>`
      );
    })
    .join('\n  ');
  const bottom = height - pad.bottom;
  return `<figure id="rates"><svg class="chart" role="img" aria-label="Reservations per second by strategy" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}">
  ${xAxis(scale, ticks, pad.top, bottom, bottom + 16)}
  ${bars}
  ${axisLabel((pad.left + width - pad.right) / 2, height - 8, `reservations per second${log ? ' (log scale)' : ''}`)}
</svg><figcaption>Each bar is a series’ reservations per second; beside it, its ratio to the bare UPDATE (the database’s limit for the same work without orders).${series.some((s) => s.spread) ? ' The whisker is the range over the repeated runs.' : ''}</figcaption></figure>`;
}

/**
 * Reservations per second in each slice, as steps from the strategy's start: a slice's rate
 * holds over the whole slice, and a run of one slice is still a visible line. The last slice
 * is cut short by the end of the run: its rate is over its real length, and when that is
 * under half a slice it is merged into the slice before (a few calls in a millisecond would
 * draw a spike that no buyer saw).
 */
function ratePoints(s: Series): [number, number][] {
  const { slice_ms: slice, counts } = s.timeline!;
  const end = Math.max(s.duration_ms, (counts.length - 1) * slice + 1);
  const steps = counts.map((count, i) => ({ from: i * slice, to: Math.min((i + 1) * slice, end), count }));
  const last = steps[steps.length - 1];
  if (steps.length > 1 && last.to - last.from < slice / 2) {
    steps.pop();
    steps[steps.length - 1] = { ...steps[steps.length - 1], to: last.to, count: steps[steps.length - 1].count + last.count };
  }
  return steps.flatMap(({ from, to, count }): [number, number][] => {
    const rate = (count * 1000) / (to - from);
    return [
      [from / 1000, rate],
      [to / 1000, rate],
    ];
  });
}

/**
 * Throughput over time as small multiples: a panel per series on its own time axis, all on
 * one rate axis. A strategy done in 0.4 s fills its panel as one done in 6 s fills its own,
 * so every shape can be read, and their heights still compare.
 */
function throughputChart(series: Series[]): string {
  const drawn = series.filter((s) => s.timeline && s.timeline.counts.length > 0).map((s) => ({ ...s, points: ratePoints(s) }));
  if (drawn.length === 0) return '<p>No timeline was recorded.</p>';
  const width = 820;
  const panelH = 120;
  const pad = { left: 70, right: 16, top: 14, bottom: 30 };
  const plotTop = (i: number) => pad.top + i * (panelH + pad.bottom + pad.top);
  const height = plotTop(drawn.length) + 20;
  const rates = drawn.flatMap((s) => s.points.map((p) => p[1]));
  const panels = drawn
    .map((s, i) => {
      const top = plotTop(i);
      const bottom = top + panelH;
      const y = valueScale(rates, [bottom, top], 4);
      const x = scaleLinear()
        .domain([0, Math.max(0.001, ...s.points.map((p) => p[0]))])
        .nice(6)
        .range([pad.left, width - pad.right]);
      const xTicks = x.ticks(6);
      const xFormat = x.tickFormat(6);
      const points = s.points.map(([t, r]) => `${px(x(t))},${px(y.scale(y.log ? Math.max(r, y.floor) : r))}`).join(' ');
      return `<g class="panel" data-series="${escape(s.name)}">
  <text class="panel-title" x="${pad.left}" y="${top - 3}">${escape(s.name)}: ${number(s.duration_ms / 1000, 2)} s</text>
  ${yAxis(y.scale, y.ticks, pad.left, width - pad.right)}
  ${xAxis(x, xTicks, top, bottom, bottom + 14, (t) => xFormat(t))}
  <polyline class="series" data-series="${escape(s.name)}" fill="none" stroke="${s.colour}" stroke-width="2" points="${points}"><title>${escape(s.name)}</title></polyline>
  ${axisLabel(width - pad.right - 60, bottom + 27, 'seconds since it started')}
</g>`;
    })
    .join('\n');
  const log = valueScale(rates, [1, 0]).log;
  return `<figure id="throughput"><svg class="chart" role="img" aria-label="Throughput over time, a panel per series" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}">
${axisLabel(16, height / 2, `reservations per second${log ? ' (log scale)' : ''}`, true)}
${panels}
</svg><figcaption>A panel per series, each on its own time axis (a run of 0.4 s and one of 6 s are both readable) and all on one rate axis${log ? ', log, since the rates differ by a decade or more' : ''}, so their heights compare. Each step is the rate in one slice of the run.</figcaption></figure>`;
}

/** The lower edge of a shared histogram bucket (ten a decade): one tenth of a decade below its upper one. */
const lowerEdge = (le: number) => Math.pow(10, Math.round(10 * Math.log10(le)) / 10 - 0.1);

/**
 * Latency of every series on one log time axis, a row each: the histogram of its calls (on
 * one count axis, every series making the same number of calls) and its p50, p95 and p99.
 */
function latencyChart(series: Series[]): string {
  const width = 820;
  const rowH = 96;
  const pad = { left: 180, right: 16, top: 10, bottom: 44 };
  const height = pad.top + rowH * series.length + pad.bottom;
  const buckets = series.flatMap((s) => s.histogram ?? []);
  if (buckets.length === 0) return '<p>No latencies were recorded.</p>';
  const lows = buckets.map((b) => lowerEdge(b.le_ms));
  const marks = series.flatMap((s) => [s.latency.p50, s.latency.p95, s.latency.p99]).filter((v) => v > 0);
  // From the power of ten below the fastest call to just past the slowest.
  const x = scaleLog()
    .domain([Math.pow(10, Math.floor(Math.log10(Math.min(...lows, ...marks)))), 1.1 * Math.max(...buckets.map((b) => b.le_ms), ...marks)])
    .range([pad.left, width - pad.right]);
  const xTicks = logTicks(x, 10);
  const count = scaleLinear()
    .domain([0, Math.max(1, ...buckets.map((b) => b.count))])
    .nice(2);
  const bottom = height - pad.bottom;
  const rows = series
    .map((s, i) => {
      const top = pad.top + i * rowH + 30;
      const base = pad.top + (i + 1) * rowH - 8;
      const y = count.copy().range([base, top]);
      const yTicks = y.ticks(2);
      const bars = (s.histogram ?? [])
        .filter((b) => b.count > 0)
        .map((b) => {
          const [x0, x1] = [x(lowerEdge(b.le_ms)), x(b.le_ms)];
          return `<rect class="bar" x="${px(x0)}" y="${px(y(b.count))}" width="${px(Math.max(1, x1 - x0 - 0.5))}" height="${px(base - y(b.count))}" fill="${s.colour}"><title>≤ ${number(b.le_ms, b.le_ms < 10 ? 2 : 0)} ms: ${number(b.count)}</title></rect>`;
        })
        .join('');
      const markLines = (['p50', 'p95', 'p99'] as const)
        .map(
          (p, k) =>
            `<line class="mark" data-mark="${p}" x1="${px(x(s.latency[p]))}" x2="${px(x(s.latency[p]))}" y1="${top - 26 + k * 9}" y2="${base}"/>` +
            `<text class="mark-label" data-mark="${p}" x="${px(x(s.latency[p]) + 3)}" y="${top - 18 + k * 9}">${p} ${number(s.latency[p], 1)}</text>`,
        )
        .join('');
      return `<g class="histogram" data-series="${escape(s.name)}">
  <text class="series-name" x="30" y="${(top + base) / 2 + 4}">${escape(s.name)}</text>
  ${yAxis(y, yTicks, pad.left, width - pad.right)}
  ${bars}${markLines}
</g>`;
    })
    .join('\n');
  return `<figure id="latency"><svg class="chart" role="img" aria-label="Latency of every series on one scale" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}">
${xAxis(x, xTicks, pad.top, bottom, bottom + 16, (t) => (t >= 1 ? number(t) : String(t)))}
${rows}
${axisLabel((pad.left + width - pad.right) / 2, height - 8, 'latency of a reserve, ms (log scale)')}
${axisLabel(14, (pad.top + bottom) / 2, 'calls', true)}
</svg><figcaption>Every series on one time axis; the bars count the calls in each tenth of a decade, on one count axis; the lines mark the median (p50), p95 and p99.</figcaption></figure>`;
}

/**
 * With several locations, the proof at each: every check of the strategy's levels there, as
 * the equations of their sums, and how many levels failed one (none, when all hold).
 */
function locationProofTable(strategies: StrategyReport[]): string {
  const rows = strategies.flatMap((s) =>
    (s.proof?.locations ?? []).map((l) => {
      const n = (figure: Exclude<keyof LocationProof, 'location'>) => `<span data-figure="${figure}">${number(l[figure])}</span>`;
      const check = (ok: boolean, text: string) => `<td class="${ok ? 'ok' : 'fail'}" data-holds="${ok}">${text} ${ok ? '✓' : '✗'}</td>`;
      return (
        `<tr data-strategy="${escape(s.strategy)}" data-location="${escape(l.location)}"><td>${escape(s.strategy)}</td><td>${escape(l.location)}</td><td>${n('priority')}</td>` +
        check(l.sold + l.on_hand === l.stock, `${n('sold')} + ${n('on_hand')} = ${n('stock')}`) +
        check(l.sold + l.reserved <= l.stock && l.reserved <= l.on_hand, `${number(l.sold)} + ${n('reserved')} ≤ ${number(l.stock)}`) +
        check(l.ledger_on_hand === l.on_hand, `${n('ledger_on_hand')} = ${number(l.on_hand)}`) +
        check(l.ledger_reserved === l.reserved, `${n('ledger_reserved')} = ${number(l.reserved)}`) +
        check(l.active_reservations === l.reserved, `${n('active_reservations')} = ${number(l.reserved)}`) +
        check(l.bad_levels === 0, `${n('bad_levels')} of ${n('levels')}`) +
        '</tr>'
      );
    }),
  );
  if (rows.length === 0) return '';
  return `<p>At each location, over the strategy’s levels there (one per SKU); every check also holds level by level, or the last column counts the levels where one fails.</p>
<table id="proof-locations"><thead><tr><th>Strategy</th><th>Location</th><th>Priority</th><th>Sold + on hand = stock</th><th>No oversell: sold + reserved ≤ stock</th><th>Ledger = counter: on hand</th><th>Ledger = counter: reserved</th><th>Active reservations = reserved</th><th>Levels failing a check</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody></table>`;
}

/** The numbers behind "no oversell", per strategy: each check as the equation it is, with its figures. */
function proofTable(strategies: StrategyReport[]): string {
  const rows = strategies
    .filter((s): s is StrategyReport & { proof: Proof } => s.proof !== undefined)
    .map((s) => {
      const p = s.proof;
      const n = (figure: Exclude<keyof Proof, 'locations'>) => `<span data-figure="${figure}">${number(p[figure])}</span>`;
      const check = (ok: boolean, text: string) => `<td class="${ok ? 'ok' : 'fail'}" data-holds="${ok}">${text} ${ok ? '✓' : '✗'}</td>`;
      return (
        `<tr data-strategy="${escape(s.strategy)}"><td>${escape(s.strategy)}</td>` +
        check(p.sold + p.reserved <= p.stock, `${n('sold')} + ${n('reserved')} ≤ ${n('stock')}`) +
        check(p.ledger_on_hand === p.on_hand, `${n('ledger_on_hand')} = ${n('on_hand')}`) +
        check(p.ledger_reserved === p.reserved, `${n('ledger_reserved')} = ${number(p.reserved)}`) +
        check(p.active_reservations === p.reserved, `${n('active_reservations')} = ${number(p.reserved)}`) +
        check(p.verify_problems === 0, `${n('verify_problems')} problem${p.verify_problems === 1 ? '' : 's'}`) +
        '</tr>'
      );
    })
    .join('\n');
  return `<table id="proof"><thead><tr><th>Strategy</th><th>No oversell: sold + reserved ≤ stock</th><th>Ledger = counter: on hand</th><th>Ledger = counter: reserved</th><th>Active reservations = reserved</th><th>stockctl verify</th></tr></thead>
<tbody>
${rows}
</tbody></table>`;
}

const LOCATIONS: Record<Environment['server_location'], string> = {
  embedded: 'embedded (stockctl’s own server, on this machine)',
  local: 'local (this machine: loopback or a Unix socket)',
  remote: 'remote (another machine: the network is in every figure)',
};

function environmentTable(report: LoadtestReport): string {
  const e = report.environment;
  const rows: [string, string][] = e
    ? [
        ['Cores (this machine)', number(e.cores)],
        ['Load average at the start (1, 5, 15 min)', e.load_average.map((l) => number(l, 2)).join(', ')],
        ['PostgreSQL', e.server_version],
        ['Server', LOCATIONS[e.server_location] + (e.pooled ? ', through a pooler (PgBouncer)' : '')],
        ['synchronous_commit', e.synchronous_commit],
        ['max_connections', `${number(e.max_connections)} (${number(e.connections_in_use)} in use at the start)`],
        ['stockctl', report.stockctl_version],
      ]
    : [
        ['PostgreSQL', report.server_version],
        ['stockctl', report.stockctl_version],
      ];
  return `<table id="environment">${rows.map(([k, v]) => `<tr><th>${escape(k)}</th><td>${escape(v)}</td></tr>`).join('')}</table>`;
}

/** The configuration in words: a label per setting, its value in units. */
function configRows(config: LoadtestReport['config']): [string, string][] {
  const yesNo = (b: boolean) => (b ? 'yes' : 'no');
  const labels: Record<string, [string, (v: never) => string]> = {
    buyers: ['Buyers per strategy and run (one reservation attempt each)', (v: number) => number(v)],
    stock: ['Units in stock on each SKU', (v: number) => number(v)],
    quantity: ['Units each buyer wants', (v: number) => number(v)],
    skus: ['SKUs the buyers spread over', (v: number) => number(v)],
    concurrency: ['Connections asked for (--concurrency)', (v: number) => number(v)],
    connections: ['Connections used', (v: number) => number(v)],
    strategies: ['Strategies', (v: string[]) => v.join(', ')],
    mix: ['Pays, cancels and a sweep mixed in (--mix)', yesNo],
    url: ['Buyers sent to a server (--url)', (v: string) => v],
    max_retries: ['Optimistic attempts (MAX_STOCK_RETRY_ATTEMPTS)', (v: number) => number(v)],
    retry_backoff_ms: ['Optimistic retry backoff (STOCK_RETRY_BACKOFF_MS)', (v: number) => `${number(v)} ms`],
    repeat: ['Runs of the workload, strategies interleaved (--repeat)', (v: number) => number(v)],
    locations: ['Locations each SKU’s stock is spread over (--locations)', (v: number) => number(v)],
    chaos: [
      'Backends killed at random (--chaos)',
      (v: { interval_ms: number; targets: string[] }) => `about one every ${number(v.interval_ms)} ms, of the ${v.targets.join(' and ')}`,
    ],
  };
  return Object.entries(config)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]): [string, string] => {
      const known = labels[k];
      return known ? [known[0], known[1](v as never)] : [k, typeof v === 'object' ? JSON.stringify(v) : String(v)];
    });
}

/** A verdict in one sentence, as the terminal gives it. */
function verdictOf(report: LoadtestReport): { cls: string; text: string } {
  if (report.interrupted) return { cls: 'warn', text: 'Interrupted: these figures cover only the buyers fired before the stop; no verdict on this run.' };
  const failed = report.strategies.filter((s) => s.violations.length > 0).map((s) => s.strategy);
  if (failed.length > 0) return { cls: 'fail', text: `A check failed (${failed.join(', ')}): see the violations below.` };
  if (report.unavailable) return { cls: 'warn', text: `No verdict: the database turned away or lost ${number(report.unavailable)} operation(s); that is the server, not a broken invariant.` };
  return { cls: 'ok', text: 'No oversell, no false rejection where none is allowed, every invariant holds.' };
}

/** Who wins, and why, in two sentences. */
function headline(report: LoadtestReport, b: BaselineReport): string {
  const ranked = [...report.strategies].sort((x, y) => y.throughput_rps - x.throughput_rps);
  if (ranked.length === 0) return '';
  const said = (s: StrategyReport) =>
    `<strong>${escape(s.strategy)}</strong>, ${number(s.throughput_rps)} reservations/s${s.ratio_to_bare_update === null ? '' : ` (${number(s.ratio_to_bare_update, 2)}× the bare UPDATE’s ${number(b.throughput_rps)}/s)`}: ${escape(HOW[s.strategy] ?? '')}`;
  const [first, last] = [ranked[0], ranked[ranked.length - 1]];
  return `<p id="headline">Fastest: ${said(first)}.${ranked.length > 1 ? ` Slowest: ${said(last)}.` : ''}</p>`;
}

export function renderHtmlReport(report: LoadtestReport): string {
  const b = report.baseline;
  const buyersEach = report.config.buyers * (report.config.repeat ?? 1);
  const series: Series[] = [
    { name: BARE_UPDATE_LABEL, report: b, ratio: 1 },
    ...report.strategies.map((s) => ({ name: s.strategy, report: s as BaselineReport | StrategyReport, ratio: s.ratio_to_bare_update })),
  ].map(({ name, report: r, ratio }, i) => ({
    name,
    colour: COLOURS[i % COLOURS.length],
    duration_ms: r.duration_ms,
    throughput_rps: r.throughput_rps,
    ratio,
    latency: r.latency_ms,
    spread: r.spread?.throughput_rps,
    timeline: r.timeline,
    histogram: r.histogram,
  }));
  const verdict = verdictOf(report);
  const spreadCell = (s: { spread?: { throughput_rps?: FigureSpread } }) =>
    report.config.repeat ? `<td>${s.spread?.throughput_rps ? `${number(s.spread.throughput_rps.relative * 100, 1)}%` : '—'}</td>` : '';
  const rows = [
    `<tr><td>${BARE_UPDATE_LABEL}</td><td>${number(b.buyers)}</td><td>—</td><td>—</td><td>—</td><td>—</td><td>${number(b.errors)}</td><td>${number(b.throughput_rps)}</td>${spreadCell(b)}<td>1.00</td><td>${number(b.latency_ms.p50, 1)}</td><td>${number(b.latency_ms.p95, 1)}</td><td>${number(b.latency_ms.p99, 1)}</td><td>—</td></tr>`,
    ...report.strategies.map((s) => {
      const state = checkState(s, buyersEach);
      const checks = state === 'fail' ? ['fail', `${s.violations.length} violation(s)`] : state === 'partial' ? ['warn', 'partial'] : ['ok', 'ok'];
      return `<tr><td>${escape(s.strategy)}</td><td>${number(s.buyers)}</td><td>${number(s.successes)}</td><td>${number(s.rejections)}</td><td>${number(s.false_rejections)}</td><td>${number(s.retries)}</td><td>${number(s.errors)}</td><td>${number(s.throughput_rps)}</td>${spreadCell(s)}<td>${number(s.ratio_to_bare_update, 2)}</td><td>${number(s.latency_ms.p50, 1)}</td><td>${number(s.latency_ms.p95, 1)}</td><td>${number(s.latency_ms.p99, 1)}</td><td class="${checks[0]}">${checks[1]}</td></tr>`;
    }),
  ].join('\n');
  const notes = [
    ...(b.errors > 0 ? [`<li class="fail">bare UPDATE: ${number(b.errors)} statement(s) failed: ${escape(b.first_error ?? '')}</li>`] : []),
    ...report.strategies.flatMap((s) => (s.mix ? [`<li>${escape(s.strategy)}: ${mixSentence(s.successes, s.mix, s.faults?.committed_unacknowledged.reserves)}</li>`] : [])),
    ...report.strategies.flatMap((s) => (s.faults ? [`<li>${escape(s.strategy)}: ${escape(faultSentence(s))}</li>`] : [])),
  ];
  const violations = report.strategies.flatMap((s) => s.violations.map((v) => `<li>${escape(s.strategy)}: ${escape(v.message)} <small>(${escape(v.kind)})</small></li>`));
  const config = configRows(report.config)
    .map(([k, v]) => `<tr><th>${escape(k)}</th><td>${escape(v)}</td></tr>`)
    .join('');
  const repeated = report.config.repeat
    ? `<p>Medians of ${number(report.config.repeat)} runs of the whole workload, strategies interleaved; the spread is the range over the runs, over the median. Counts and the proof add the runs up; the time panels show the run whose rate is the median.</p>`
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>stockctl loadtest ${escape(report.run_id)}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:860px;padding:0 1em;color:#222;background:#fff}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right}
th{text-align:left;background:#f4f4f4}td:first-child{text-align:left;white-space:nowrap}#results,#proof,#proof-locations{font-size:12px}#results td,#results th{padding:.2em .35em}
#environment td,#config td{text-align:left}#proof td,#proof-locations td{white-space:nowrap}
.ok{color:#17692c}.fail{color:#b00020}.warn{color:#8a5a00}.verdict{font-weight:600;padding:.6em;border:1px solid currentColor}
.chart text{font-size:11px;fill:#333}.chart .axis-label{font-size:12px;fill:#111}.chart .panel-title{font-weight:600}
.grid{stroke:#e6e6e6}.mark{stroke:#111;stroke-dasharray:3 2}.mark-label{font-size:10px}.whisker{stroke:#111;stroke-width:2}
figure{margin:0 0 1em 0}figcaption{color:#555;font-size:12px;max-width:820px}
</style></head><body>
<h1>stockctl loadtest <code>${escape(report.run_id)}</code></h1>
<p class="verdict ${verdict.cls}" id="verdict">${escape(verdict.text)}</p>
${headline(report, b)}
<p>From ${escape(report.started_at)} to ${escape(report.finished_at)} · stockctl ${escape(report.stockctl_version)} · PostgreSQL ${escape(report.server_version)}</p>
<h2>Reservations per second</h2>
${ratesChart(series)}
<h2>Results</h2>
${repeated}
<table id="results"><tr><th>Strategy</th><th>Buyers</th><th>Won</th><th>Sold out</th><th>False rejects</th><th>Retries</th><th>Errors</th><th>Reserve/s</th>${report.config.repeat ? '<th>Spread</th>' : ''}<th>vs bare</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>Checks</th></tr>
${rows}
</table>
<ul id="how">${series.map((s) => `<li><strong>${escape(s.name)}</strong>: ${escape(HOW[s.name] ?? '')}</li>`).join('')}</ul>
${notes.length ? `<ul id="notes">${notes.join('')}</ul>` : ''}
${violations.length ? `<h2>Violations</h2><ul id="violations" class="fail">${violations.join('')}</ul>` : ''}
<h2>Proof of no oversell</h2>
<p>For each strategy’s SKUs at the end of the run: units sold and still reserved against the stock, the ledger’s totals against the counters, the active reservations against the reserved units, and what <code>stockctl verify</code> finds.</p>
${proofTable(report.strategies)}
${locationProofTable(report.strategies)}
<h2>Throughput over time</h2>
${throughputChart(series)}
<h2>Latency</h2>
${latencyChart(series)}
<h2>Environment</h2>
${environmentTable(report)}
<h2>Configuration</h2>
<table id="config">${config}</table>
</body></html>
`;
}
