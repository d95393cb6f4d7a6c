/**
 * `stockctl db start|stop|status|url|destroy`: the embedded PostgreSQL used when DATABASE_URL is unset.
 * Its URL carries the password: only `db url` prints it whole, everything else masks it.
 */
import { noteEmbeddedStarted, type CommandContext } from '../run.js';
import { redactUrl } from '../../db/errors.js';
import { InvalidInputError, RefusedError } from '../../errors.js';

/** `db status` when the server is stopped, as `pg_ctl status` says "no server running". */
const NOT_RUNNING_EXIT = 3;

function refuseIfExternal(ctx: CommandContext) {
  if (ctx.config.databaseUrl) {
    throw new RefusedError(
      'DATABASE_URL (or --database-url) is set, so stockctl uses that server and not the embedded one; unset it to manage the embedded database.',
      'external_database',
    );
  }
}

export async function start(ctx: CommandContext) {
  refuseIfExternal(ctx);
  const spinner = ctx.out.spinner('Starting the embedded PostgreSQL');
  const { ensureEmbedded } = await import('../../db/embedded/index.js');
  const info = await ensureEmbedded(ctx.config.embedded);
  spinner.stop();
  // Opening it also applies any pending migration (the embedded database is ours to migrate).
  await ctx.openDb({ application: 'stockctl-db' });
  // The result says it started, so no separate note on stderr.
  const url = redactUrl(info.url);
  ctx.out.result({ running: true, started: info.started, url, port: info.port, home: info.home, data_dir: info.dataDir }, () =>
    ctx.out.line(`${info.started ? 'Started' : 'Already running:'} embedded PostgreSQL at ${url} (data in ${info.dataDir}).`),
  );
}

export async function stop(ctx: CommandContext) {
  refuseIfExternal(ctx);
  const { stopEmbedded } = await import('../../db/embedded/index.js');
  const stopped = await stopEmbedded(ctx.config.embedded);
  ctx.out.result({ stopped, running: false }, () =>
    ctx.out.line(stopped ? 'Stopped the embedded PostgreSQL.' : 'The embedded PostgreSQL was not running.'),
  );
}

export async function status(ctx: CommandContext) {
  const { embeddedStatus } = await import('../../db/embedded/index.js');
  const s = await embeddedStatus(ctx.config.embedded);
  const result = {
    running: s.running,
    initialised: s.initialised,
    port: s.port ?? null,
    url: s.url ?? null,
    pid: s.pid ?? null,
    home: s.home,
    data_dir: s.dataDir,
    in_use: !ctx.config.databaseUrl,
  };
  ctx.out.result(result, () => {
    ctx.out.line(s.running ? `Embedded PostgreSQL is running at ${s.url} (pid ${s.pid}).` : 'Embedded PostgreSQL is not running.');
    ctx.out.line(`Home: ${s.home}\nData: ${s.dataDir}${s.initialised ? '' : ' (not initialised yet)'}`);
    if (ctx.config.databaseUrl) ctx.out.line('Not in use: DATABASE_URL points stockctl at another server.');
  });
  return s.running ? 0 : NOT_RUNNING_EXIT;
}

export async function url(ctx: CommandContext) {
  refuseIfExternal(ctx);
  const { ensureEmbedded } = await import('../../db/embedded/index.js');
  const info = await ensureEmbedded(ctx.config.embedded);
  noteEmbeddedStarted(ctx.out, info);
  ctx.out.result({ url: info.url }, () => ctx.out.line(info.url));
}

export async function destroy(ctx: CommandContext, flags: { yes?: boolean }) {
  refuseIfExternal(ctx);
  const { destroyEmbedded, embeddedFootprint, embeddedStatus } = await import('../../db/embedded/index.js');
  const { home, paths } = await embeddedFootprint(ctx.config.embedded);
  if (paths.length > 0 && !flags.yes) {
    const running = (await embeddedStatus(ctx.config.embedded)).running;
    throw new InvalidInputError(
      `db destroy needs --yes: it would ${running ? 'stop the running embedded PostgreSQL and ' : ''}delete ${paths.join(', ')}, with all the data in them.`,
      'confirmation_required',
      { would_delete: paths },
    );
  }
  const done = paths.length > 0 ? await destroyEmbedded(ctx.config.embedded) : { home, stopped: false, removed: [] };
  ctx.out.result({ destroyed: done.removed.length > 0, stopped: done.stopped, removed: done.removed, home: done.home }, () => {
    if (done.removed.length === 0) ctx.out.line(`There is no embedded database under ${done.home}; nothing to delete.`);
    else ctx.out.line(`${done.stopped ? 'Stopped the embedded PostgreSQL and deleted' : 'Deleted'} ${done.removed.join(', ')}.`);
  });
}
