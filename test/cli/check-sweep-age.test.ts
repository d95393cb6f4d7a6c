/**
 * `check`'s rule for a sweep that stopped running (issue 18): a lost crontab line, or a
 * server whose --sweep-every died, leaves unpaid orders holding their stock for ever.
 * It fires when no sweep has started for CHECK_MAX_SWEEP_AGE (15m), and when none ever ran.
 */
import { describe, expect, it } from 'vitest';
import { useTestDatabase } from '../helpers/db.js';

const t = useTestDatabase();

interface Alert {
  rule: string;
  firing: boolean;
  value: number | string[] | null;
  threshold: number | null;
  message: string;
}

const sweepAge = async (env: Record<string, string> = {}) => {
  const res = await t.cliJson<{ firing: string[]; alerts: Alert[] }>(['check'], { env });
  return { code: res.code, firing: res.json.firing, alert: res.json.alerts.find((a) => a.rule === 'sweep_age')! };
};

describe('check: sweep_age', () => {
  it('fires when no sweep ever ran, clears after one, fires again once it is older than CHECK_MAX_SWEEP_AGE', async () => {
    const never = await sweepAge();
    expect(never).toMatchObject({ code: 6, firing: ['sweep_age'] });
    expect(never.alert).toEqual({
      rule: 'sweep_age',
      firing: true,
      value: null,
      threshold: 900,
      message: 'no sweep has ever run (alert after 15m); schedule `stockctl sweep` (cron) or run `serve --sweep-every`',
    });
    const human = await t.cli(['check']);
    expect(human.code).toBe(6);
    expect(human.stdout).toContain('FIRING  sweep_age: no sweep has ever run (alert after 15m);');

    expect((await t.cli(['sweep', '--quiet'])).code).toBe(0);
    const fresh = await sweepAge();
    expect(fresh).toMatchObject({ code: 0, firing: [], alert: { firing: false, threshold: 900, message: 'a sweep started within the last 15m' } });
    expect(fresh.alert.value).toBeGreaterThanOrEqual(0);

    // A dry run is not a sweep.
    await t.sql`UPDATE sweep_runs SET started_at = now() - interval '1 hour', finished_at = now() - interval '1 hour'`;
    expect((await t.cli(['sweep', '--dry-run'])).code).toBe(0);
    const stale = await sweepAge();
    expect(stale).toMatchObject({ code: 6, firing: ['sweep_age'], alert: { firing: true } });
    expect(stale.alert.message).toMatch(/^the last sweep started 1h(\d+s)? ago \(alert after 15m\); is its cron job still there\?$/);
    expect(await sweepAge({ CHECK_MAX_SWEEP_AGE: '2h' })).toMatchObject({ code: 0, alert: { firing: false, threshold: 7200 } });
    expect(await sweepAge({ CHECK_MAX_SWEEP_AGE: 'off' })).toMatchObject({
      code: 0,
      alert: { firing: false, threshold: null, message: 'off (CHECK_MAX_SWEEP_AGE=off)' },
    });
  });

  it('an age that cannot mean anything is a usage error (exit 2) naming the variable', async () => {
    for (const raw of ['15', '0s', 'soon']) {
      const res = await t.cli(['check'], { env: { CHECK_MAX_SWEEP_AGE: raw } });
      expect(res, raw).toMatchObject({
        code: 2,
        stdout: '',
        stderr: `error: CHECK_MAX_SWEEP_AGE must be a duration from 1s to 366d such as 15m or 2h, or off, got "${raw}".\n`,
      });
    }
  });
});
