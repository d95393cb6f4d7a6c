/**
 * Where an order's units come from, decided over levels already read: the rule itself,
 * without a database (the races over real levels are in the locations tests).
 */
import { describe, expect, it } from 'vitest';
import { allocate } from '../../src/engine/allocate.js';
import type { LevelRow } from '../../src/engine/stock.js';

const level = (sku: string, location: string, onHand: number, opts: { reserved?: number; priority?: number; active?: boolean } = {}): LevelRow => ({
  productId: 'p',
  variantId: null,
  sku,
  location,
  stockQuantity: onHand,
  reservedStock: opts.reserved ?? 0,
  incoming: 0,
  version: 0,
  priority: opts.priority ?? 0,
  active: opts.active ?? true,
});

/** A=2, B=2, C=3 of TEE, priorities A > B > C. */
const abc = [level('TEE', 'C', 3, { priority: 1 }), level('TEE', 'A', 2, { priority: 3 }), level('TEE', 'B', 2, { priority: 2 })];

describe('allocate', () => {
  it('takes the whole order from the single highest-priority location that covers it', () => {
    expect(allocate([{ sku: 'TEE', quantity: 3 }], abc, 'units')).toEqual({ allocations: [{ sku: 'TEE', location: 'C', quantity: 3 }] });
    expect(allocate([{ sku: 'TEE', quantity: 2 }], abc, 'never')).toEqual({ allocations: [{ sku: 'TEE', location: 'A', quantity: 2 }] });
  });

  it('a line of 5 over A=2, B=2, C=3: units splits in priority order, lines and never refuse with what one location has', () => {
    expect(allocate([{ sku: 'TEE', quantity: 5 }], abc, 'units')).toEqual({
      allocations: [
        { sku: 'TEE', location: 'A', quantity: 2 },
        { sku: 'TEE', location: 'B', quantity: 2 },
        { sku: 'TEE', location: 'C', quantity: 1 },
      ],
    });
    const refused = { short: [{ sku: 'TEE', requested: 5, available: 3, available_total: 7 }] };
    expect(allocate([{ sku: 'TEE', quantity: 5 }], abc, 'lines')).toEqual(refused);
    expect(allocate([{ sku: 'TEE', quantity: 5 }], abc, 'never')).toEqual(refused);
    expect(allocate([{ sku: 'TEE', quantity: 8 }], abc, 'units')).toEqual({ short: [{ sku: 'TEE', requested: 8, available: 7 }] });
  });

  it('sums two lines of one SKU before checking', () => {
    const two = [{ sku: 'TEE', quantity: 1 }, { sku: 'TEE', quantity: 2 }];
    expect(allocate(two, [level('TEE', 'A', 2), level('TEE', 'B', 2)], 'never')).toEqual({
      short: [{ sku: 'TEE', requested: 3, available: 2, available_total: 4 }],
    });
  });

  it('lines: each line from one location when no location covers the whole order; never refuses it', () => {
    const levels = [level('X', 'A', 1, { priority: 2 }), level('Y', 'B', 1, { priority: 1 })];
    const order = [{ sku: 'X', quantity: 1 }, { sku: 'Y', quantity: 1 }];
    expect(allocate(order, levels, 'lines')).toEqual({
      allocations: [
        { sku: 'X', location: 'A', quantity: 1 },
        { sku: 'Y', location: 'B', quantity: 1 },
      ],
    });
    expect('short' in allocate(order, levels, 'never')).toBe(true);
  });

  it('an inactive location gives nothing, and a location below zero (reserved over on hand) neither adds nor hides', () => {
    const levels = [level('TEE', 'A', 5, { active: false, priority: 9 }), level('TEE', 'B', 1, { reserved: 4 }), level('TEE', 'C', 2)];
    expect(allocate([{ sku: 'TEE', quantity: 2 }], levels, 'units')).toEqual({ allocations: [{ sku: 'TEE', location: 'C', quantity: 2 }] });
    expect(allocate([{ sku: 'TEE', quantity: 3 }], levels, 'units')).toEqual({ short: [{ sku: 'TEE', requested: 3, available: 2 }] });
  });

  it('ties in priority go by code, whatever order the levels were read in', () => {
    const levels = [level('TEE', 'Z', 5), level('TEE', 'M', 5)];
    expect(allocate([{ sku: 'TEE', quantity: 1 }], levels, 'units')).toEqual({ allocations: [{ sku: 'TEE', location: 'M', quantity: 1 }] });
    expect(allocate([{ sku: 'TEE', quantity: 1 }], [...levels].reverse(), 'units')).toEqual({ allocations: [{ sku: 'TEE', location: 'M', quantity: 1 }] });
  });
});
