/** `stockctl db start|stop|status|url`: the embedded PostgreSQL used when DATABASE_URL is unset. */
import type { CommandContext } from '../run.js';
import { RefusedError } from '../../errors.js';

function refuseIfExternal(ctx: CommandContext) {
  if (ctx.databaseUrl) {
    throw new RefusedError(
      'DATABASE_URL (or --database-url) is set, so stockctl uses that server and not the embedded one; unset it to manage the embedded database.',
      'external_database',
    );
  }
}

export async function start(ctx: CommandContext) {
  refuseIfExternal(ctx);
  const spinner = ctx.out.spinner('Starting the embedded PostgreSQL');
  const { ensureEmbedded } = await import('../../db/embedded.js');
  const info = await ensureEmbedded();
  spinner.stop();
  // Opening it also applies any pending migration (the embedded database is ours to migrate).
  await ctx.openDb({ application: 'stockctl-db' });
  ctx.out.result({ running: true, started: info.started, url: info.url, port: info.port, home: info.home, data_dir: info.dataDir }, () =>
    ctx.out.line(`${info.started ? 'Started' : 'Already running:'} embedded PostgreSQL at ${info.url} (data in ${info.dataDir}).`),
  );
}

export async function stop(ctx: CommandContext) {
  refuseIfExternal(ctx);
  const { stopEmbedded } = await import('../../db/embedded.js');
  const stopped = await stopEmbedded();
  ctx.out.result({ stopped, running: false }, () =>
    ctx.out.line(stopped ? 'Stopped the embedded PostgreSQL.' : 'The embedded PostgreSQL was not running.'),
  );
}

export async function status(ctx: CommandContext) {
  const { embeddedStatus } = await import('../../db/embedded.js');
  const s = await embeddedStatus();
  const result = {
    running: s.running,
    initialised: s.initialised,
    port: s.port ?? null,
    url: s.url ?? null,
    pid: s.pid ?? null,
    home: s.home,
    data_dir: s.dataDir,
    in_use: !ctx.databaseUrl,
  };
  ctx.out.result(result, () => {
    ctx.out.line(s.running ? `Embedded PostgreSQL is running at ${s.url} (pid ${s.pid}).` : 'Embedded PostgreSQL is not running.');
    ctx.out.line(`Home: ${s.home}\nData: ${s.dataDir}${s.initialised ? '' : ' (not initialised yet)'}`);
    if (ctx.databaseUrl) ctx.out.line('Not in use: DATABASE_URL points stockctl at another server.');
  });
}

export async function url(ctx: CommandContext) {
  refuseIfExternal(ctx);
  const { ensureEmbedded } = await import('../../db/embedded.js');
  const info = await ensureEmbedded();
  ctx.out.result({ url: info.url }, () => ctx.out.line(info.url));
}
