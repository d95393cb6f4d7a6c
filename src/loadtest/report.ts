/**
 * What a load test reports: the figures per strategy and for the bare UPDATE, the proof
 * behind "no oversell", the environment they were measured in. The run (run.ts) fills it
 * in; the terminal (format.ts), the HTML page (html-report.ts), --compare and --json read it.
 */
import type { Strategy } from '../engine/orders.js';
import type { Violation } from '../engine/verify.js';
import type { FaultFigures } from './chaos.js';

/** Completions per time slice, from the start of a strategy's run. */
export interface Timeline {
  slice_ms: number;
  counts: number[];
}

/** Latency histogram: how many calls took at most `le_ms` (and more than the bucket before). Ten buckets a decade. */
export interface LatencyBucket {
  le_ms: number;
  count: number;
}

export interface LatencySummary {
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export interface StrategyReport {
  strategy: Strategy;
  buyers: number;
  successes: number;
  /** Refused because stock really ran out. */
  rejections: number;
  /** Refused although stock remained (optimistic retries ran out). */
  false_rejections: number;
  errors: number;
  retries: number;
  units_reserved: number;
  expected_successes: number | null;
  duration_ms: number;
  throughput_rps: number;
  /** Throughput as a fraction of the bare guarded UPDATE on the same server. */
  ratio_to_bare_update: number | null;
  latency_ms: LatencySummary;
  /** Completions per time slice, and the latency histogram: what `--report` draws. */
  timeline?: Timeline;
  histogram?: LatencyBucket[];
  violations: Violation[];
  first_error?: string;
  /**
   * With --mix: the fate of every winner, from the orders' final state, so that
   * successes == paid + cancelled + expired_by_sweep + still_pending (with --chaos, plus
   * the reserves that failed by a fault yet committed: faults.committed_unacknowledged).
   */
  mix?: MixFates;
  /** The numbers behind "no oversell" for this strategy's SKUs (summed over --repeat's runs). */
  proof?: Proof;
  /**
   * Operations the database turned away or lost (a full server, a dropped connection),
   * outside --chaos: the machine's trouble, not a broken invariant; the run then has no
   * verdict and exits 7.
   */
  unavailable?: number;
  /** With --repeat: each run's own figures, in the order they ran, and their spread. */
  repeats?: RunFigures[];
  spread?: Spread;
  /** With --chaos: backends terminated while this strategy ran. */
  faults_injected?: number;
  /** With --chaos: operations (reserves, pays, cancels, sweeps) that failed with a killed connection. */
  failed_by_faults?: number;
  faults?: FaultFigures;
}

/**
 * What the database holds for a strategy's SKUs at the end: sold + reserved never above the
 * stock, the counters equal to the ledger and to the active reservations, and what
 * `verify` finds on them.
 */
/** Units put on sale, sold and held, by the counters, the ledger and the reservations. */
interface ProofFigures {
  /** Units put on sale (stock × SKUs, or a location's share). */
  stock: number;
  /** Units sold: how far on-hand fell (at a location: the units of its paid reservations). */
  sold: number;
  /** The counters: reserved_stock and stock_quantity, summed. */
  reserved: number;
  on_hand: number;
  /** The ledger: its reserved and on-hand deltas, summed. */
  ledger_reserved: number;
  ledger_on_hand: number;
  /** Units held by active reservations. */
  active_reservations: number;
}

export interface Proof extends ProofFigures {
  /** What `verify` finds wrong on these SKUs (0 when every invariant holds). */
  verify_problems: number;
  /** With --locations above 1: the same figures at each location, summed over the SKUs' levels there. */
  locations?: LocationProof[];
}

/**
 * A location's part of the proof, over the levels of a strategy's SKUs there. Checked at
 * every level: 0 ≤ reserved ≤ on hand, the ledger equal to the counters, the active
 * reservations equal to reserved, sold + on hand = stock, sold + reserved ≤ stock.
 */
export interface LocationProof extends ProofFigures {
  location: string;
  /** Higher is tried first; the remainder of each SKU's stock went to the highest. */
  priority: number;
  /** The strategy's levels there (one per SKU). */
  levels: number;
  /** Levels there where a check failed (0 when all hold). */
  bad_levels: number;
}

/** One run's own figures, under --repeat. */
export interface RunFigures {
  throughput_rps: number;
  /** Against the bare UPDATE of the same round (null for the bare UPDATE itself). */
  ratio_to_bare_update: number | null;
  duration_ms: number;
  latency_ms: LatencySummary;
}

/** How far a figure moved between --repeat's runs: the range, and the range over the median. */
export interface FigureSpread {
  min: number;
  max: number;
  /** (max − min) / median: 0.08 is a spread of 8 %. */
  relative: number;
}

export type SpreadFigure = 'throughput_rps' | 'ratio_to_bare_update' | 'p50_ms' | 'p95_ms' | 'p99_ms';
export type Spread = Partial<Record<SpreadFigure, FigureSpread>>;

export interface MixFates {
  paid: number;
  cancelled: number;
  expired_by_sweep: number;
  /** Still pending when the run ended (only when it was interrupted, normally 0). */
  still_pending: number;
  units_sold: number;
  /** Pays refused because the window had passed; those orders then expired (counted there). */
  late_pays_refused: number;
}

/**
 * The database's own limit: the same guarded UPDATE per buyer on a scratch row. It sells
 * nothing, so it has no winners, rejections or checks: only its rate and latency count.
 */
export interface BaselineReport {
  strategy: 'bare_update';
  /** Statements fired (one per buyer). */
  buyers: number;
  errors: number;
  duration_ms: number;
  throughput_rps: number;
  latency_ms: LatencySummary;
  timeline?: Timeline;
  histogram?: LatencyBucket[];
  first_error?: string;
  repeats?: RunFigures[];
  spread?: Spread;
}

/** What the figures depend on, recorded with them. */
export interface Environment {
  /** This machine's: the loadtest's own (and the server's too when it is local). */
  cores: number;
  /** This machine's load average over 1, 5 and 15 minutes, when the run started. */
  load_average: [number, number, number];
  server_version: string;
  /** embedded: stockctl's own server; local: on this machine (loopback or a Unix socket); remote: elsewhere. */
  server_location: 'embedded' | 'local' | 'remote';
  synchronous_commit: string;
  max_connections: number;
  /** Client sessions on the server when the run started. */
  connections_in_use: number;
  /** Reached through a pooler (PgBouncer). */
  pooled: boolean;
}

export interface LoadtestReport {
  run_id: string;
  /** ISO 8601, UTC. */
  started_at: string;
  finished_at: string;
  stockctl_version: string;
  server_version: string;
  environment?: Environment;
  config: {
    buyers: number;
    stock: number;
    quantity: number;
    /** As asked (--concurrency). */
    concurrency: number;
    /** Actually used: no more connections than buyers. */
    connections: number;
    skus: number;
    strategies: Strategy[];
    mix: boolean;
    /** --url: buyers went through this server's POST /orders. */
    url?: string;
    max_retries: number;
    retry_backoff_ms: number;
    /** --repeat: how many times the workload ran (strategies interleaved); figures are then medians. */
    repeat?: number;
    /** --locations above 1: each SKU's stock was spread over this many locations of the run's own. */
    locations?: number;
    /**
     * --chaos: the mean time between kills, and whose backends were killed: `workers`, the
     * run's own pool (application_name `stockctl-loadtest-<run_id>`), and with --url `server`
     * (`stockctl-serve`).
     */
    chaos?: { interval_ms: number; targets: ('workers' | 'server')[] };
  };
  baseline: BaselineReport;
  strategies: StrategyReport[];
  /** With --chaos: totals over the strategies. */
  faults_injected?: number;
  failed_by_faults?: number;
  /** Operations the database turned away or lost, over the strategies: no verdict, exit 7. */
  unavailable?: number;
  /** False when a check failed, when the database turned operations away, and always when the run was interrupted: no verdict then. */
  ok: boolean;
  interrupted: boolean;
}
