/**
 * setLongTimeout waits the whole delay, past the 2^31 - 1 ms one Node timer can hold
 * (which it would otherwise turn into 1 ms), on a fake clock so that no test waits days.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MAX_TIMER_MS, setLongTimeout, sleepUnlessAborted } from '../../src/engine/timers.js';

const DAY = 86_400_000;

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('setLongTimeout', () => {
  for (const ms of [1000, MAX_TIMER_MS, MAX_TIMER_MS + 1, 25 * DAY, 366 * DAY]) {
    it(`fires after ${ms} ms, not before`, () => {
      const fire = vi.fn();
      setLongTimeout(fire, ms);
      vi.advanceTimersByTime(ms - 1);
      expect(fire).not.toHaveBeenCalled();
      vi.advanceTimersByTime(1);
      expect(fire).toHaveBeenCalledTimes(1);
      vi.advanceTimersByTime(400 * DAY);
      expect(fire).toHaveBeenCalledTimes(1);
    });
  }

  it('is cancelled by what it returns, in any of its steps', () => {
    const fire = vi.fn();
    const cancel = setLongTimeout(fire, 366 * DAY);
    vi.advanceTimersByTime(100 * DAY);
    cancel();
    vi.advanceTimersByTime(400 * DAY);
    expect(fire).not.toHaveBeenCalled();
  });
});

describe('sleepUnlessAborted', () => {
  it('sleeps 30 days in full, and ends at once on abort', async () => {
    let woke = false;
    void sleepUnlessAborted(30 * DAY, new AbortController().signal).then(() => (woke = true));
    await vi.advanceTimersByTimeAsync(30 * DAY - 1);
    expect(woke).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(woke).toBe(true);

    const stop = new AbortController();
    let stopped = false;
    void sleepUnlessAborted(30 * DAY, stop.signal).then(() => (stopped = true));
    await vi.advanceTimersByTimeAsync(DAY);
    stop.abort();
    await Promise.resolve();
    expect(stopped).toBe(true);
  });
});
