/**
 * The order lifecycle, as one entry point for its callers (the CLI, serve, loadtest):
 * reserve (phase 1), pay and cancel (phase 2), extend. Each lives in its own module;
 * every one of them takes the order lock first, so when pay, cancel and sweep race for
 * one order exactly one wins and the others see its result.
 */
export {
  reserveOrder,
  StockConflictError,
  STRATEGIES,
  type ReservedItem,
  type ReserveInput,
  type ReserveResult,
  type Strategy,
} from './reserve/index.js';
export { payOrder, type PayInput, type PayResult } from './pay.js';
export {
  CANCEL_BATCH_SIZE,
  cancelOrder,
  cancelOrders,
  extendOrder,
  type CancelInput,
  type CancelManyInput,
  type CancelManyResult,
  type CancelReport,
  type CancelResult,
  type ExtendResult,
} from './cancel.js';
