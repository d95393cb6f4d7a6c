/**
 * How a loadtest's figures are written, the same in the terminal table, the `--compare`
 * table and the `--report` page. Cheap to load on purpose: type imports only.
 */
import type { MixFates, StrategyReport } from './run.js';

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

/** With --mix, the fate of a strategy's winners: "of 1,000 won, 500 paid (…) …". */
export const mixSentence = (successes: number, m: MixFates) =>
  `of ${count(successes)} won, ${count(m.paid)} paid (${count(m.units_sold)} units sold), ${count(m.cancelled)} cancelled, ` +
  `${count(m.expired_by_sweep)} expired by the sweep (${count(m.late_pays_refused)} after a late pay was refused)` +
  (m.still_pending > 0 ? `, ${count(m.still_pending)} still pending` : '');

/** A strategy's checks: a violation fails it; fewer buyers than asked (a stopped run) is partial. */
export const checkState = (s: Pick<StrategyReport, 'violations' | 'buyers'>, buyers: number): 'fail' | 'partial' | 'ok' =>
  s.violations.length > 0 ? 'fail' : s.buyers < buyers ? 'partial' : 'ok';
