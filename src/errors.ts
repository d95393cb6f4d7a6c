/**
 * The domain errors every layer speaks. Each carries the process exit code and a
 * machine code for `--json`; the CLI boundary turns any of them into one sentence.
 * Anything that is not a StockctlError is a bug (exit 1).
 */
export class StockctlError extends Error {
  /** What would let the request through, if anything; each edge words it for its user. */
  remedy?: Remedy;

  constructor(
    message: string,
    readonly exitCode: number,
    readonly code: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = new.target.name;
  }

  /** The same error, saying what would let the request through. */
  withRemedy(remedy: Remedy): this {
    this.remedy = remedy;
    return this;
  }
}

/**
 * What would let a refused request through, in the domain's terms: the engine's messages
 * state the fact, and the CLI (a flag, a command) or the HTTP API (a field) says how.
 * - `allow_late`: accept the payment although its window has passed;
 * - `restock`: cancel a paid order and put its sold units back on hand;
 * - `guarded_strategy`: reserve with the guarded strategy, which has no version conflicts;
 * - `list_stock`: look the SKU up in the stock list.
 */
export type Remedy = 'allow_late' | 'restock' | 'guarded_strategy' | 'list_stock';

/** Exit 2: the user's input is malformed (bad SKU, quantity, duration, flag). */
export class InvalidInputError extends StockctlError {
  constructor(message: string, code = 'invalid_input', details?: Record<string, unknown>) {
    super(message, 2, code, details);
  }
}

export interface Shortage {
  sku: string;
  requested: number;
  /** What the order could have had of it (where it was pinned, or at one location when lines may not split). */
  available: number;
  /** What every active location holds together, when that is more. */
  available_total?: number;
}

/** Exit 3: not enough available units for one or more SKUs. */
export class InsufficientStockError extends StockctlError {
  constructor(readonly shortages: Shortage[], code = 'insufficient_stock') {
    super(
      `Insufficient stock: ${shortages
        .map((s) =>
          s.available_total !== undefined && s.available_total > s.available
            ? `${s.sku} (requested ${s.requested}, available ${s.available} at one location, ${s.available_total} in all)`
            : `${s.sku} (requested ${s.requested}, available ${s.available})`,
        )
        .join(', ')}.`,
      3,
      code,
      { shortages },
    );
  }
}

/** Exit 4: an order or SKU does not exist. */
export class NotFoundError extends StockctlError {
  constructor(message: string, code = 'not_found', details?: Record<string, unknown>) {
    super(message, 4, code, details);
  }
}

/** Exit 5: the request is valid but the current state refuses it. */
export class RefusedError extends StockctlError {
  constructor(message: string, code = 'refused', details?: Record<string, unknown>) {
    super(message, 5, code, details);
  }
}

/** Exit 7: the database cannot be reached or is not migrated; safe to retry later. */
export class DatabaseUnavailableError extends StockctlError {
  constructor(message: string, code = 'database_unavailable', details?: Record<string, unknown>) {
    super(message, 7, code, details);
  }
}
