/**
 * The environment variables stockctl reads (src/cli/config.ts reads and checks them), as
 * `--help` lists them. Apart from config.ts so that `--help` loads nothing else.
 */
import { DEFAULT_METRICS_MAX_SKUS, DEFAULT_SETTINGS, DEFAULT_STATEMENT_TIMEOUT_S, DEFAULT_THRESHOLDS } from '../engine/settings.js';

export const DEFAULT_CLEANUP_INTERVAL_MINUTES = 5;

/** The environment variables, as `--help` and the README list them. */
export const ENVIRONMENT: [name: string, what: string][] = [
  ['DATABASE_URL', 'PostgreSQL server to use (else the embedded one under STOCKCTL_HOME); --database-url overrides it'],
  ['STOCKCTL_HOME', 'embedded database home (default ~/.local/share/stockctl)'],
  ['STOCKCTL_EMBEDDED_PORT', "embedded server's port (default: the first free one from 54329)"],
  ['STOCKCTL_ACTOR', 'who is recorded with every change (default: the OS user); --actor overrides it'],
  ['STOCKCTL_STATEMENT_TIMEOUT', `longest a statement may run or a transaction sit idle (default ${DEFAULT_STATEMENT_TIMEOUT_S}s)`],
  ['STOCKCTL_PREPARE', '0: no named prepared statements (PgBouncer in transaction mode)'],
  ['STOCKCTL_LISTEN_URL', 'serve and stock --watch: PostgreSQL itself (or a session-mode pool) for live stock, when DATABASE_URL is PgBouncer in transaction mode'],
  ['STOCKCTL_TOKEN', 'loadtest --url: the API token (role shop or above) when --token is not given'],
  ['CLEANUP_INTERVAL_MINUTES', `how often \`sweep --every\` sweeps when given no interval (default ${DEFAULT_CLEANUP_INTERVAL_MINUTES})`],
  ['PAYMENT_TIMEOUT_MINUTES', `reservation window for new orders (default ${DEFAULT_SETTINGS.paymentTimeoutMinutes}) unless PAYMENT_TIMEOUTS sets one; --ttl overrides it`],
  ['PAYMENT_TIMEOUTS', 'window per payment method, e.g. "card=15m,bank_transfer=3d,default=15m" (reserve --payment-method)'],
  ['PRIORITY_WINDOWS', 'extra time per customer tier, added to the window, e.g. "vip=45m" (reserve --priority)'],
  ['SPLIT_POLICY', 'where reserve may take an order when no one location covers it: units (default), lines or never'],
  ['MAX_STOCK_RETRY_ATTEMPTS', `optimistic strategy attempts (default ${DEFAULT_SETTINGS.maxStockRetryAttempts}); --max-retries`],
  ['STOCK_RETRY_BACKOFF_MS', `optimistic strategy backoff (default ${DEFAULT_SETTINGS.stockRetryBackoffMs}); --retry-backoff`],
  ['CHECK_MAX_EXPIRED_PER_HOUR', `check: expired reservations per hour (default ${DEFAULT_THRESHOLDS.maxExpiredPerHour})`],
  ['CHECK_MAX_CONFLICT_RATE', `check: share of orders that needed a retry (default ${DEFAULT_THRESHOLDS.maxConflictRate})`],
  ['CHECK_MAX_FAILED_SWEEPS', `check: failed sweeps in a row (default ${DEFAULT_THRESHOLDS.maxFailedSweeps})`],
  ['CHECK_LOW_STOCK', `check: alert at or below this many available, or off (default ${DEFAULT_THRESHOLDS.lowStock})`],
  ['CHECK_MAX_SWEEP_AGE', 'check: alert when no sweep has started for this long, or none ever ran, e.g. 15m, or off (default 15m)'],
  ['STOCKCTL_METRICS_MAX_SKUS', `report --format prometheus and GET /metrics: per-SKU available units for this many SKUs, the fewest first (default ${DEFAULT_METRICS_MAX_SKUS}; 0: none)`],
  ['NO_COLOR', 'disable colour (also off when stdout is not a terminal, or TERM=dumb)'],
  ['STOCKCTL_DEBUG', '1: print stack traces, like --verbose'],
  ['STOCKCTL_NO_DOTENV', '1: do not load .env from the working directory'],
];
