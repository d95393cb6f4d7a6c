/**
 * How a loadtest's figures are written, the same in the terminal table, the `--compare`
 * table and the `--report` page. Cheap to load on purpose: type imports only.
 */
import type { MixFates, StrategyReport } from './report.js';

/** A figure that does not apply (or a side where a strategy did not run). */
export const NONE = '—';

/** The name of the bare guarded UPDATE baseline, wherever it is shown beside the strategies. */
export const BARE_UPDATE_LABEL = 'bare UPDATE (limit)';

/** `n` with thousands separators and exactly `digits` decimals; NONE when missing. */
export const number = (n: number | null | undefined, digits = 0) =>
  n === null || n === undefined ? NONE : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

// One way to write numbers: counts and rates with thousands separators, ms with one
// decimal, ratios with two.
export const count = (n: number) => number(n, 0);
export const ms = (n: number) => number(n, 1);

/** "3 orders": a count and its noun, singular for one. */
export const plural = (n: number, one: string, many = `${one}s`) => `${count(n)} ${n === 1 ? one : many}`;

/**
 * With --mix, the fate of a strategy's winners: "of 1,000 won, 500 paid (…) …". With
 * --chaos, reserves that failed by a fault yet committed have a fate too: `committed`.
 */
export const mixSentence = (successes: number, m: MixFates, committed = 0) =>
  `of ${count(successes)} won${committed > 0 ? ` (and ${plural(committed, 'failed reserve')} that committed all the same)` : ''}, ` +
  `${count(m.paid)} paid (${count(m.units_sold)} units sold), ${count(m.cancelled)} cancelled, ` +
  `${count(m.expired_by_sweep)} expired by the sweep (${count(m.late_pays_refused)} after a late pay was refused)` +
  (m.still_pending > 0 ? `, ${count(m.still_pending)} still pending` : '');

/**
 * With --chaos, what the kills did to a strategy: "14 backends killed (9 busy), 11
 * operations failed by them (reserve 8, pay 3; 57P01 9, CONNECTION_CLOSED 2); …".
 */
export function faultSentence(s: Pick<StrategyReport, 'faults_injected' | 'failed_by_faults' | 'faults'>): string {
  const f = s.faults;
  if (!f) return '';
  const listed = (counts: Record<string, number>, name = (what: string, n: number) => `${what} ${count(n)}`) =>
    Object.entries(counts)
      .filter(([, n]) => n > 0)
      .sort(([a, x], [b, y]) => y - x || (a < b ? -1 : 1))
      .map(([what, n]) => name(what, n))
      .join(', ');
  const failedBy = s.failed_by_faults ?? 0;
  const c = f.committed_unacknowledged;
  const committed = c.reserves + c.pays + c.cancels;
  return (
    `chaos: ${plural(s.faults_injected ?? 0, 'backend')} killed (${count(f.killed_busy)} busy), ` +
    `${plural(failedBy, 'operation')} failed by them` +
    (failedBy > 0 ? ` (${listed(f.by_operation)}; ${listed(f.by_code)})` : '') +
    (committed > 0
      ? `; ${count(committed)} of those had committed all the same (${listed({ reserve: c.reserves, pay: c.pays, cancel: c.cancels }, (what, n) => plural(n, what))}), and are whole`
      : '')
  );
}

/** A strategy's checks: a violation fails it; fewer buyers than asked (a stopped run) is partial. */
export const checkState = (s: Pick<StrategyReport, 'violations' | 'buyers'>, buyers: number): 'fail' | 'partial' | 'ok' =>
  s.violations.length > 0 ? 'fail' : s.buyers < buyers ? 'partial' : 'ok';
