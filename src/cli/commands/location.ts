import type { CommandContext } from '../run.js';
import { InvalidInputError } from '../../errors.js';
import { parseText } from '../../engine/input.js';
import { parseLocationCode, parseLocationKind, parsePriority, type Location } from '../../engine/locations.js';

function renderLocations(ctx: CommandContext, locations: Location[]): string {
  const { chalk } = ctx.out;
  return ctx.out.table(
    ['Code', 'Name', 'Kind', 'Priority', 'Active', 'SKUs', 'On hand', 'Reserved', 'Incoming', 'Available'],
    locations.map((l) => [
      l.code,
      l.name,
      l.kind,
      l.priority,
      l.active ? chalk.green('yes') : chalk.red('no'),
      l.skus,
      l.stock_quantity,
      l.reserved_stock,
      l.incoming,
      l.available,
    ]),
    { align: ['left', 'left', 'left', 'right', 'left', 'right', 'right', 'right', 'right', 'right'] },
  );
}

export async function add(ctx: CommandContext, codeArg: string, flags: { name: string; priority?: string; kind?: string }) {
  const input = {
    code: parseLocationCode(codeArg),
    name: parseText(flags.name, 'name', 200) ?? '',
    priority: flags.priority === undefined ? undefined : parsePriority(flags.priority),
    kind: flags.kind === undefined ? undefined : parseLocationKind(flags.kind),
  };
  if (!input.name.trim()) throw new InvalidInputError('The location name must not be empty.');
  const { db } = await ctx.openDb({ application: 'stockctl-location' });
  const { addLocation } = await import('../../engine/locations.js');
  const added = await addLocation(db, input);
  ctx.out.result(added, () => ctx.out.line(`Added ${added.kind} ${ctx.out.chalk.bold(added.code)} "${added.name}" at priority ${added.priority}.`));
}

export async function list(ctx: CommandContext) {
  const { db } = await ctx.openDb({ application: 'stockctl-location' });
  const { listLocations } = await import('../../engine/locations.js');
  const locations = await listLocations(db);
  ctx.out.result({ locations }, () => ctx.out.line(renderLocations(ctx, locations)));
}

function parseActive(raw: string): boolean {
  if (raw === 'true' || raw === 'yes') return true;
  if (raw === 'false' || raw === 'no') return false;
  throw new InvalidInputError(`Invalid --active ${JSON.stringify(raw)}: use true or false.`);
}

export async function set(ctx: CommandContext, codeArg: string, flags: { priority?: string; active?: string; name?: string }) {
  const input = {
    code: parseLocationCode(codeArg),
    priority: flags.priority === undefined ? undefined : parsePriority(flags.priority),
    active: flags.active === undefined ? undefined : parseActive(flags.active),
    name: flags.name === undefined ? undefined : parseText(flags.name, 'name', 200),
    actor: ctx.config.actor,
  };
  if (input.priority === undefined && input.active === undefined && input.name === undefined) {
    throw new InvalidInputError('Say what to change: --priority P, --active true|false or --name N.');
  }
  const { db } = await ctx.openDb({ application: 'stockctl-location' });
  const { setLocation } = await import('../../engine/locations.js');
  const result = await setLocation(db, input);
  ctx.out.result(result, () =>
    ctx.out.line(
      result.changed
        ? `Location ${result.code}: priority ${result.priority}, ${result.active ? 'active' : 'inactive (sells nothing)'}.`
        : `Location ${result.code} is already so; nothing changed.`,
    ),
  );
}
