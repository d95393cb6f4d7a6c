import type { CommandContext } from '../run.js';
import { createToken, listTokens, parseRole, parseTokenName, revokeToken } from '../../engine/tokens.js';

export async function create(ctx: CommandContext, nameArg: string, flags: { role: string }) {
  const input = { name: parseTokenName(nameArg), role: parseRole(flags.role), actor: ctx.config.actor };
  const { db } = await ctx.openDb({ application: 'stockctl-token', max: 1 });
  const created = await createToken(db, input);
  ctx.out.result({ name: created.name, role: created.role, token: created.token }, () => {
    ctx.out.line(created.token);
    ctx.out.note(
      `Token ${created.name} (role ${created.role}) created. It is shown this once: store it now ` +
        '(only its hash is kept). Send it as "Authorization: Bearer <token>".',
    );
  });
}

export async function list(ctx: CommandContext) {
  const { db } = await ctx.openDb({ application: 'stockctl-token' });
  const tokens = await listTokens(db);
  ctx.out.result({ tokens }, () => {
    if (tokens.length === 0) return ctx.out.line('No tokens yet: stockctl token create <name> --role shop');
    ctx.out.line(
      ctx.out.table(
        ['Name', 'Role', 'Created', 'By', 'Last used', 'Revoked'],
        tokens.map((t) => [t.name, t.role, t.created_at, t.created_by ?? '', t.last_used_at ?? 'never', t.revoked_at ?? '']),
      ),
    );
  });
}

export async function revoke(ctx: CommandContext, nameArg: string) {
  const name = parseTokenName(nameArg);
  const { db } = await ctx.openDb({ application: 'stockctl-token', max: 1 });
  const r = await revokeToken(db, { name });
  ctx.out.result(r, () =>
    ctx.out.line(r.replay ? `Token ${r.name} was already revoked at ${r.revoked_at}; nothing changed.` : `Token ${r.name} revoked; it no longer works.`),
  );
}
