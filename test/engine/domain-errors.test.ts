/**
 * The engine speaks the domain: its refusals state the fact and carry a remedy, never a
 * CLI flag or command; the CLI words the remedy for its user (src/cli/wording.ts).
 */
import { describe, expect, it } from 'vitest';
import { cliMessage } from '../../src/cli/wording.js';
import { cancelOrder, payOrder, reserveOrder } from '../../src/engine/orders.js';
import { evaluateAlerts } from '../../src/engine/report.js';
import { StockctlError } from '../../src/errors.js';
import { LOADTEST_SKU_PREFIX } from '../../src/loadtest/skus.js';
import { useTestDatabase } from '../helpers/db.js';
import { ACTOR, SETTINGS, addProducts, attempt, expireNow } from './_support.js';

const t = useTestDatabase();

async function refusal(p: Promise<unknown>): Promise<StockctlError> {
  const out = await attempt(() => p);
  expect(out.ok).toBe(false);
  const err = (out as { error: unknown }).error;
  expect(err).toBeInstanceOf(StockctlError);
  return err as StockctlError;
}

const namesTheCli = /--[a-z]|stockctl /;
const THRESHOLDS = { maxExpiredPerHour: 50, maxConflictRate: 0.1, maxFailedSweeps: 3, lowStock: 0, maxSweepAgeSeconds: 900 };

describe('engine refusals', () => {
  it('state the fact with a remedy; the CLI adds the flag or the command', async () => {
    await addProducts(t.db, { DOM: 5 });
    const unknown = await refusal(reserveOrder(t.db, { lines: [{ sku: 'NOPE', quantity: 1 }], actor: ACTOR }, SETTINGS));
    expect(unknown).toMatchObject({ code: 'sku_not_found', remedy: 'list_stock', message: 'No stock row has SKU "NOPE".' });
    expect(cliMessage(unknown)).toBe('No stock row has SKU "NOPE"; list them with `stockctl stock`.');

    const paid = await reserveOrder(t.db, { lines: [{ sku: 'DOM', quantity: 1 }], actor: ACTOR }, SETTINGS);
    await payOrder(t.db, { order: paid.order_id, actor: ACTOR });
    const restock = await refusal(cancelOrder(t.db, { order: paid.order_id, actor: ACTOR }));
    expect(restock).toMatchObject({ code: 'order_paid', remedy: 'restock' });
    expect(cliMessage(restock)).toBe(`Order ${paid.order_id} is paid; add --restock to cancel it and put its units back on hand.`);

    const late = await reserveOrder(t.db, { lines: [{ sku: 'DOM', quantity: 1 }], actor: ACTOR }, SETTINGS);
    await expireNow(t.sql, [late.order_id]);
    const missed = await refusal(payOrder(t.db, { order: late.order_id, actor: ACTOR }));
    expect(missed).toMatchObject({ code: 'payment_window_expired', remedy: 'allow_late' });
    expect(cliMessage(missed)).toMatch(/; its stock was released\. Use --allow-late to sell it anyway if stock remains\.$/);
    const expired = await refusal(payOrder(t.db, { order: late.order_id, actor: ACTOR }));
    expect(expired).toMatchObject({ code: 'order_cancelled', remedy: 'allow_late' });

    for (const err of [unknown, restock, missed, expired]) expect(err.message).not.toMatch(namesTheCli);
  });
});

describe('the low-stock rule', () => {
  it('leaves out the SKU prefixes its caller names (loadtest rows), and only those', async () => {
    await addProducts(t.db, { [`${LOADTEST_SKU_PREFIX}0000abcd-guarded-0`]: 0 });
    const low = async (except?: string[]) =>
      (await evaluateAlerts(t.db, THRESHOLDS, { exceptSkuPrefixes: except })).find((a) => a.rule === 'low_stock')!.value;
    expect(await low()).toContain(`${LOADTEST_SKU_PREFIX}0000abcd-guarded-0=0`);
    expect(await low([LOADTEST_SKU_PREFIX])).not.toContain(`${LOADTEST_SKU_PREFIX}0000abcd-guarded-0=0`);
  });
});
