/**
 * The domain errors every layer speaks. Each carries the process exit code and a
 * machine code for `--json`; the CLI boundary turns any of them into one sentence.
 * Anything that is not a StockctlError is a bug (exit 1).
 */
export class StockctlError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly code: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Exit 2: the user's input is malformed (bad SKU, quantity, duration, flag). */
export class InvalidInputError extends StockctlError {
  constructor(message: string, code = 'invalid_input', details?: Record<string, unknown>) {
    super(message, 2, code, details);
  }
}

export interface Shortage {
  sku: string;
  requested: number;
  available: number;
}

/** Exit 3: not enough available units for one or more SKUs. */
export class InsufficientStockError extends StockctlError {
  constructor(readonly shortages: Shortage[], code = 'insufficient_stock') {
    super(
      `Insufficient stock: ${shortages
        .map((s) => `${s.sku} (requested ${s.requested}, available ${s.available})`)
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

/** Exit 6: a check found a problem (verify, loadtest, check). */
export class CheckFailedError extends StockctlError {
  constructor(message: string, code = 'check_failed', details?: Record<string, unknown>) {
    super(message, 6, code, details);
  }
}

/** Exit 7: the database cannot be reached or is not migrated; safe to retry later. */
export class DatabaseUnavailableError extends StockctlError {
  constructor(message: string, code = 'database_unavailable', details?: Record<string, unknown>) {
    super(message, 7, code, details);
  }
}
