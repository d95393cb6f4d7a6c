/**
 * Timers for the durations a user types (`sweep --every`, `serve --sweep-every`, `serve
 * --grace`: up to 366d). Node's setTimeout holds at most 2^31 - 1 ms (about 24.8 days);
 * given more, it warns (TimeoutOverflowWarning) and fires after 1 ms.
 */

/** The longest delay one setTimeout can hold. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Call `fire` once `ms` milliseconds have passed, however long that is: a delay past one
 * timer's reach is waited in steps, measured on the monotonic clock. Returns what cancels it.
 */
export function setLongTimeout(fire: () => void, ms: number): () => void {
  const due = performance.now() + ms;
  let timer: NodeJS.Timeout;
  const wait = () => {
    const left = Math.max(0, Math.ceil(due - performance.now()));
    timer = left > MAX_TIMER_MS ? setTimeout(wait, MAX_TIMER_MS) : setTimeout(fire, left);
  };
  wait();
  return () => clearTimeout(timer);
}

/** Resolves after `ms` (any length, as setLongTimeout), or at once when `signal` aborts. */
export function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const cancel = setLongTimeout(done, ms);
    function done() {
      cancel();
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}
