/**
 * `loadtest --report run.html`: one self-contained HTML file (inline CSS and SVG, no script,
 * nothing fetched) with the verdict, the configuration, the server, the figures per strategy,
 * throughput over time and a latency histogram per strategy, beside the bare-UPDATE baseline.
 */
import type { LoadtestReport } from './run.js';
import { BARE_UPDATE_LABEL, checkState, faultSentence, mixSentence, number } from './format.js';

/** Completions per time slice, from the start of a strategy's run. */
export interface Timeline {
  slice_ms: number;
  counts: number[];
}

/** Latency histogram: how many calls took at most `le_ms` (and more than the bucket before). */
export interface LatencyBucket {
  le_ms: number;
  count: number;
}

const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

const escape = (text: unknown) =>
  String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

interface Series {
  name: string;
  colour: string;
  duration_ms: number;
  timeline?: Timeline;
  histogram?: LatencyBucket[];
}

/**
 * Reservations per second in each slice, drawn as steps from the strategy's start: a slice's
 * rate holds over the whole slice, and a run of one slice is still a visible line. The last
 * slice is cut short by the end of the run: its rate is over its real length, and when that
 * is under half a slice it is merged into the slice before (a few calls in a millisecond
 * would draw a spike that no buyer saw).
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

function throughputChart(series: Series[]): string {
  const width = 720;
  const height = 260;
  const pad = { left: 60, right: 16, top: 16, bottom: 36 };
  const lines = series.filter((s) => s.timeline && s.timeline.counts.length > 0).map((s) => ({ ...s, points: ratePoints(s) }));
  if (lines.length === 0) return '<p>No timeline was recorded.</p>';
  const maxX = Math.max(0.001, ...lines.flatMap((l) => l.points.map((p) => p[0])));
  const maxY = Math.max(1, ...lines.flatMap((l) => l.points.map((p) => p[1])));
  const x = (v: number) => pad.left + (v / maxX) * (width - pad.left - pad.right);
  const y = (v: number) => height - pad.bottom - (v / maxY) * (height - pad.top - pad.bottom);
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => f * maxY);
  return `<figure id="throughput"><svg class="chart" role="img" aria-label="Throughput over time" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}">
  ${ticks.map((t) => `<line x1="${pad.left}" x2="${width - pad.right}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" class="grid"/><text x="${pad.left - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end">${number(t)}</text>`).join('\n  ')}
  <text x="${(width + pad.left) / 2}" y="${height - 6}" text-anchor="middle">seconds since the strategy started (reservations/s in each slice)</text>
  <text x="${pad.left}" y="${height - 20}" text-anchor="middle">0</text><text x="${width - pad.right}" y="${height - 20}" text-anchor="end">${number(maxX, 1)}</text>
  ${lines
    .map((l) => `<polyline class="series" data-series="${escape(l.name)}" fill="none" stroke="${l.colour}" stroke-width="2" points="${l.points.map(([px, py]) => `${x(px).toFixed(1)},${y(py).toFixed(1)}`).join(' ')}"><title>${escape(l.name)}</title></polyline>`)
    .join('\n  ')}
</svg>
<ul class="legend">${lines.map((l) => `<li><span style="background:${l.colour}"></span>${escape(l.name)}</li>`).join('')}</ul></figure>`;
}

function histogramChart(s: Series): string {
  const buckets = s.histogram ?? [];
  const width = 340;
  const height = 180;
  const pad = { left: 44, right: 8, top: 20, bottom: 40 };
  const title = `<text x="${pad.left}" y="14">${escape(s.name)}</text>`;
  const figure = (body: string) =>
    `<figure class="histogram" data-series="${escape(s.name)}"><svg class="chart" role="img" aria-label="Latency histogram of ${escape(s.name)}" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}">
  ${title}${body}
</svg></figure>`;
  if (buckets.length === 0) return figure(`<text x="${width / 2}" y="${height / 2}" text-anchor="middle">no calls were measured</text>`);
  const maxCount = Math.max(1, ...buckets.map((b) => b.count));
  const w = (width - pad.left - pad.right) / buckets.length;
  const bars = buckets
    .map((b, i) => {
      const h = (b.count / maxCount) * (height - pad.top - pad.bottom);
      return `<rect class="bar" x="${(pad.left + i * w + 1).toFixed(1)}" y="${(height - pad.bottom - h).toFixed(1)}" width="${Math.max(1, w - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${s.colour}"><title>≤ ${number(b.le_ms, 1)} ms: ${number(b.count)}</title></rect>`;
    })
    .join('');
  // Each label stands at the right edge of its bucket: the bucket's upper bound.
  const every = Math.ceil(buckets.length / 6);
  const labels = buckets
    .map((b, i) => ((i + 1) % every === 0 ? `<text x="${(pad.left + (i + 1) * w).toFixed(1)}" y="${height - pad.bottom + 14}" text-anchor="${i === buckets.length - 1 ? 'end' : 'middle'}">${number(b.le_ms, b.le_ms < 10 ? 1 : 0)}</text>` : ''))
    .join('');
  return figure(`<line x1="${pad.left}" x2="${width - pad.right}" y1="${height - pad.bottom}" y2="${height - pad.bottom}" class="axis"/>${bars}${labels}
  <text x="${(width + pad.left) / 2}" y="${height - 8}" text-anchor="middle">latency, ms (log scale)</text>
  <text x="${pad.left - 6}" y="${pad.top + 8}" text-anchor="end">${number(maxCount)}</text>`);
}

/** A verdict in one sentence, as the terminal gives it. */
function verdictOf(report: LoadtestReport): { cls: string; text: string } {
  if (report.interrupted) return { cls: 'warn', text: 'Interrupted: these figures cover only the buyers fired before the stop; no verdict on this run.' };
  if (report.ok) return { cls: 'ok', text: 'No oversell, no false rejection where none is allowed, every invariant holds.' };
  const failed = report.strategies.filter((s) => s.violations.length > 0).map((s) => s.strategy);
  return { cls: 'fail', text: `A check failed (${failed.join(', ')}): see the violations below.` };
}

const configValue = (v: unknown) => (Array.isArray(v) ? v.join(', ') : typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v));

export function renderHtmlReport(report: LoadtestReport): string {
  const series: Series[] = [
    { name: BARE_UPDATE_LABEL, duration_ms: report.baseline.duration_ms, timeline: report.baseline.timeline, histogram: report.baseline.histogram },
    ...report.strategies.map((s) => ({ name: s.strategy, duration_ms: s.duration_ms, timeline: s.timeline, histogram: s.histogram })),
  ].map((s, i) => ({ ...s, colour: COLOURS[i % COLOURS.length] }));
  const verdict = verdictOf(report);
  const b = report.baseline;
  const rows = [
    `<tr><td>${BARE_UPDATE_LABEL}</td><td>${number(b.buyers)}</td><td>—</td><td>—</td><td>—</td><td>—</td><td>${number(b.errors)}</td><td>${number(b.throughput_rps)}</td><td>1.00</td><td>${number(b.latency_ms.p50, 1)}</td><td>${number(b.latency_ms.p95, 1)}</td><td>${number(b.latency_ms.p99, 1)}</td><td>—</td></tr>`,
    ...report.strategies.map((s) => {
      const state = checkState(s, report.config.buyers);
      const checks = state === 'fail' ? ['fail', `${s.violations.length} violation(s)`] : state === 'partial' ? ['warn', 'partial'] : ['ok', 'ok'];
      return `<tr><td>${escape(s.strategy)}</td><td>${number(s.buyers)}</td><td>${number(s.successes)}</td><td>${number(s.rejections)}</td><td>${number(s.false_rejections)}</td><td>${number(s.retries)}</td><td>${number(s.errors)}</td><td>${number(s.throughput_rps)}</td><td>${number(s.ratio_to_bare_update, 2)}</td><td>${number(s.latency_ms.p50, 1)}</td><td>${number(s.latency_ms.p95, 1)}</td><td>${number(s.latency_ms.p99, 1)}</td><td class="${checks[0]}">${checks[1]}</td></tr>`;
    }),
  ].join('\n');
  const notes = [
    ...(b.errors > 0 ? [`<li class="fail">bare UPDATE: ${number(b.errors)} statement(s) failed: ${escape(b.first_error ?? '')}</li>`] : []),
    ...report.strategies.flatMap((s) => (s.mix ? [`<li>${escape(s.strategy)}: ${mixSentence(s.successes, s.mix, s.faults?.committed_unacknowledged.reserves)}</li>`] : [])),
    ...report.strategies.flatMap((s) => (s.faults ? [`<li>${escape(s.strategy)}: ${escape(faultSentence(s))}</li>`] : [])),
  ];
  const violations = report.strategies.flatMap((s) => s.violations.map((v) => `<li>${escape(s.strategy)}: ${escape(v.message)} <small>(${escape(v.kind)})</small></li>`));
  const config = Object.entries(report.config)
    .map(([k, v]) => `<tr><th>${escape(k)}</th><td>${escape(configValue(v))}</td></tr>`)
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>stockctl loadtest ${escape(report.run_id)}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:800px;padding:0 1em;color:#222;background:#fff}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right}
th{text-align:left;background:#f4f4f4}td:first-child{text-align:left;white-space:nowrap}#results{font-size:13px}
.ok{color:#17692c}.fail{color:#b00020}.warn{color:#8a5a00}.verdict{font-weight:600;padding:.6em;border:1px solid currentColor}
.chart text{font-size:11px;fill:#444}.grid{stroke:#e3e3e3}.axis{stroke:#999}.legend{list-style:none;padding:0;margin:0}
.legend li{display:inline-block;margin-right:1.2em}.legend span{display:inline-block;width:12px;height:12px;margin-right:.4em;vertical-align:middle}
figure{display:inline-block;margin:0 .5em 1em 0}
</style></head><body>
<h1>stockctl loadtest <code>${escape(report.run_id)}</code></h1>
<p class="verdict ${verdict.cls}" id="verdict">${escape(verdict.text)}</p>
<p>From ${escape(report.started_at)} to ${escape(report.finished_at)} · stockctl ${escape(report.stockctl_version)} · PostgreSQL ${escape(report.server_version)}</p>
<h2>Results</h2>
<table id="results"><tr><th>Strategy</th><th>Buyers</th><th>Won</th><th>Sold out</th><th>False rejects</th><th>Retries</th><th>Errors</th><th>Reserve/s</th><th>vs bare</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>Checks</th></tr>
${rows}
</table>
${notes.length ? `<ul id="notes">${notes.join('')}</ul>` : ''}
${violations.length ? `<h2>Violations</h2><ul id="violations" class="fail">${violations.join('')}</ul>` : ''}
<h2>Throughput over time</h2>
${throughputChart(series)}
<h2>Latency</h2>
${series.map(histogramChart).join('\n')}
<h2>Configuration</h2>
<table id="config">${config}</table>
</body></html>
`;
}
