/**
 * Payment windows (the seed design's "dynamic timeout" and "priority reservations"): how
 * long a new order may wait for its payment, chosen by how the customer pays and
 * lengthened for priority customers. The edges read the policy from the environment
 * (src/cli/config.ts) and resolve each order's window here; the engine is handed the
 * resolved window and records it with the method and tier.
 */
import { InvalidInputError } from '../errors.js';
import { MAX_DURATION_S, quote } from './input.js';

export interface PaymentWindowPolicy {
  /** Seconds per payment method (PAYMENT_TIMEOUTS, without its `default=` entry). */
  methods: ReadonlyMap<string, number>;
  /** A method not listed, or no method: PAYMENT_TIMEOUTS' `default=`, else PAYMENT_TIMEOUT_MINUTES. */
  defaultSeconds: number;
  /** Extra seconds per customer tier (PRIORITY_WINDOWS). */
  tiers: ReadonlyMap<string, number>;
}

export interface WindowRequest {
  paymentMethod?: string;
  priority?: string;
  /** An explicit window (--ttl, `ttl`): it wins over the method and the tier. */
  ttlSeconds?: number;
}

export interface PaymentWindow {
  seconds: number;
  paymentMethod?: string;
  priority?: string;
}

/** Payment method and tier names: they key the policy and label report series. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$/;
/** What `report` calls orders made without a payment method, so no method may take the name. */
export const NO_METHOD = 'none';

/** A payment method or tier name, or why it cannot be one (undefined: it can). */
export function nameProblem(name: string): string | undefined {
  if (!NAME.test(name)) return 'a name is 1 to 50 letters, digits, dots, dashes or underscores, starting with a letter or digit';
  if (name === NO_METHOD) return `"${NO_METHOD}" is reserved for orders without a payment method`;
  return undefined;
}

export function parsePaymentMethod(raw: string, what = 'payment method'): string {
  const problem = nameProblem(raw);
  if (problem) throw new InvalidInputError(`Invalid ${what} ${quote(raw)}: ${problem}.`, 'invalid_payment_method');
  return raw;
}

/** Days, hours, minutes and seconds, largest first: "3d", "1h45m", "90s" → "1m30s". */
export function formatWindow(seconds: number): string {
  const parts: string[] = [];
  let left = seconds;
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (left >= size) {
      parts.push(`${Math.floor(left / size)}${unit}`);
      left %= size;
    }
  }
  return parts.join('') || '0s';
}

/**
 * The window of a new order. An explicit TTL wins; otherwise the method's window (or the
 * default one) plus the tier's extra time. The tier is checked even when a TTL wins: an
 * unknown tier is a mistake either way.
 */
export function resolvePaymentWindow(policy: PaymentWindowPolicy, request: WindowRequest): PaymentWindow {
  const paymentMethod = request.paymentMethod === undefined ? undefined : parsePaymentMethod(request.paymentMethod);
  const priority = request.priority;
  let extra = 0;
  if (priority !== undefined) {
    const known = [...policy.tiers.keys()];
    const tier = policy.tiers.get(priority);
    if (tier === undefined) {
      throw new InvalidInputError(
        `Unknown priority tier ${quote(priority)}: ${
          known.length > 0 ? `the tiers are ${known.join(', ')} (PRIORITY_WINDOWS)` : 'no tiers are configured (PRIORITY_WINDOWS, e.g. "vip=45m")'
        }.`,
        'unknown_priority',
        { priority, tiers: known },
      );
    }
    extra = tier;
  }
  if (request.ttlSeconds !== undefined) return { seconds: request.ttlSeconds, paymentMethod, priority };
  const base = (paymentMethod === undefined ? undefined : policy.methods.get(paymentMethod)) ?? policy.defaultSeconds;
  const seconds = base + extra;
  if (seconds > MAX_DURATION_S) {
    throw new InvalidInputError(
      `The payment window for ${paymentMethod ?? 'an order without a payment method'} with priority ${priority} would be ${formatWindow(seconds)}, more than 366d; shorten PAYMENT_TIMEOUTS or PRIORITY_WINDOWS.`,
      'invalid_payment_window',
    );
  }
  return { seconds, paymentMethod, priority };
}
