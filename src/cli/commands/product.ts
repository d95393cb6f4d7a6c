import type { CommandContext } from '../run.js';
import { parsePrice, parseSku, parseStockLevel, parseText } from '../../engine/input.js';
import { formatPrice } from '../../engine/input.js';
import { parseLocationCode } from '../../engine/locations.js';

interface AddFlags {
  name: string;
  price?: string;
  stock: string;
  parent?: string;
  location?: string;
}

export async function add(ctx: CommandContext, skuArg: string, flags: AddFlags) {
  const input = {
    sku: parseSku(skuArg),
    name: parseText(flags.name, 'name', 200) ?? '',
    price: flags.price === undefined ? undefined : parsePrice(flags.price),
    stock: parseStockLevel(flags.stock, 'initial stock'),
    parentSku: flags.parent === undefined ? undefined : parseSku(flags.parent),
    location: flags.location === undefined ? undefined : parseLocationCode(flags.location),
    actor: ctx.config.actor,
  };
  if (!input.name.trim()) throw new (await import('../../errors.js')).InvalidInputError('The product name must not be empty.');
  const { db } = await ctx.openDb({ application: 'stockctl-product' });
  const { addProduct } = await import('../../engine/catalogue.js');
  const added = await addProduct(db, input);
  ctx.out.result(added, () => {
    const what = added.kind === 'variant' ? `variant of ${added.parent_sku}` : 'product';
    ctx.out.line(
      `Added ${what} ${ctx.out.chalk.bold(added.sku)} "${added.name}" at ${formatPrice(added.price)} with ${added.stock_quantity} on hand.`,
    );
  });
}
