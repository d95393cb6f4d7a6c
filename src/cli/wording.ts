/**
 * The engine states what happened; this says, in flags and commands, what a CLI user can
 * do about it (an HTTP client is told the same remedy in its own terms).
 */
import type { Remedy, StockctlError } from '../errors.js';

/** The engine's sentence without its final full stop, to go on with a clause. */
const clause = (message: string) => message.replace(/\.$/, '');

const REMEDIES: Record<Remedy, (message: string) => string> = {
  list_stock: (m) => `${clause(m)}; list them with \`stockctl stock\`.`,
  guarded_strategy: (m) => `${clause(m)}; try again or use --strategy guarded.`,
  allow_late: (m) => `${m} Use --allow-late to sell it anyway if stock remains.`,
  restock: (m) => `${clause(m)}; add --restock to cancel it and put its units back on hand.`,
};

/** An engine error as one sentence for the command line. */
export function cliMessage(err: StockctlError): string {
  return err.remedy ? REMEDIES[err.remedy](err.message) : err.message;
}
