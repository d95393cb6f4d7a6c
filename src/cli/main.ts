/**
 * The command-line surface: every command and flag, declared here and nowhere else.
 * Command bodies live in ./commands and are imported only when run, so
 * `stockctl --help` loads nothing but commander.
 */
import { Argument, Command, CommanderError, Option, type CommandUnknownOpts } from '@commander-js/extra-typings';
import { exitWhenFlushed, guardStdio } from './exit.js';
import type { CommandContext, GlobalFlags } from './run.js';
import { STOCKCTL_VERSION } from '../version.js';
import { ENVIRONMENT } from './environment.js';
import { DEFAULT_SETTINGS } from '../engine/settings.js';
import { LOCATION_KINDS, SPLIT_POLICIES, STRATEGIES, TOKEN_ROLES } from '../engine/names.js';

const ENVIRONMENT_HELP = `
Environment:
${ENVIRONMENT.map(([name, what]) => `  ${name.padEnd(28)}${what}`).join('\n')}

Exit codes:
  0 ok   1 internal error   2 usage   3 insufficient stock   4 not found
  5 refused by state   6 check failed   7 database unavailable / not migrated
  130/143 interrupted`;

/** A command's body: the context, then its arguments and flags as commander parsed them. */
type Body<Args extends unknown[]> = (ctx: CommandContext, ...args: Args) => Promise<number | void>;

/**
 * Run a command body imported only now (each `import()` below is its own bundle chunk, so
 * `--help` loads none of them). The body's parameter types are checked against the
 * arguments and options declared for the command.
 */
function lazy<Args extends unknown[]>(load: () => Promise<Body<Args>>) {
  return async function action(this: CommandUnknownOpts, ...args: [...Args, CommandUnknownOpts]) {
    const positional = args.slice(0, -1) as unknown[] as Args;
    const globals = this.optsWithGlobals() as GlobalFlags;
    const { runCommand } = await import('./run.js');
    const body = await load();
    await runCommand({ ...globals, quiet: Boolean(this.opts().quiet) }, (ctx) => body(ctx, ...positional));
  };
}

/** The optimistic strategy's settings as flags, for reserve and loadtest. */
const MAX_RETRIES = () =>
  new Option('--max-retries <n>', `optimistic strategy: attempts before giving up (default MAX_STOCK_RETRY_ATTEMPTS, ${DEFAULT_SETTINGS.maxStockRetryAttempts})`);
const RETRY_BACKOFF = () =>
  new Option('--retry-backoff <ms>', `optimistic strategy: backoff per attempt (default STOCK_RETRY_BACKOFF_MS, ${DEFAULT_SETTINGS.stockRetryBackoffMs})`);

/** Example command lines; a crontab line (it starts with its schedule) gets no prompt. */
function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  ${/^[*\d@]/.test(l) ? '' : '$ '}${l}`).join('\n')}\n`;
}

/** Commander's usage error, held until main writes it. */
let usageError = '';

/**
 * Commander's message on one line: its "Did you mean …?" comes on a line of its own, which
 * `printable` would show as a literal \u000a.
 */
const oneLine = (text: string) => text.replace(/\n\(Did you mean /g, ' (did you mean ').replace(/\n(?=.)/g, ' ');

/** The command the user named (`stockctl orders`), for "name a subcommand". */
function commandPath(program: CommandUnknownOpts, argv: string[]): string {
  let command = program;
  const names = [program.name()];
  for (const word of argv) {
    const sub = command.commands.find((c) => c.name() === word);
    if (sub) {
      command = sub;
      names.push(word);
    }
  }
  return names.join(' ');
}

export function buildProgram(): CommandUnknownOpts {
  const program = new Command('stockctl');
  const json = process.argv.includes('--json');
  program
    .description('Inventory operations: reserve stock for orders without ever overselling, and prove it.')
    // With --json, the version too is one JSON document.
    .version(json ? JSON.stringify({ version: STOCKCTL_VERSION }, null, 2) : STOCKCTL_VERSION, '-V, --version')
    .option('--json', 'print exactly one JSON document on stdout')
    .option('--verbose', 'print stack traces and extra detail on errors')
    .option('--database-url <url>', 'PostgreSQL server (overrides DATABASE_URL)')
    .option('--actor <name>', 'who is recorded with every change (default $STOCKCTL_ACTOR or the OS user)')
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .showHelpAfterError(false) // main adds the hint after the (sanitised) error
    .exitOverride()
    .configureOutput({
      // Usage errors are written by main below: as a JSON document in --json mode, else
      // as text made safe for the terminal (commander echoes what was typed).
      outputError: (text) => {
        usageError += text;
      },
      // In --json mode stdout carries only the JSON error, and stderr no help text.
      writeErr: (text) => {
        if (!json) process.stderr.write(text);
      },
    })
    .addHelpText('after', `${examples('stockctl migrate', 'stockctl product add TEE --name "T-shirt" --price 19.99 --stock 10', 'stockctl reserve TEE:1 --ttl 15m', 'stockctl loadtest --buyers 200 --stock 50')}${ENVIRONMENT_HELP}`);

  program
    .command('migrate')
    .description('apply database migrations (safe to run from several hosts at once)')
    .option('--dry-run', 'list the migrations that would run, change nothing')
    .addHelpText('after', examples('DATABASE_URL=postgres://… stockctl migrate', 'stockctl migrate --dry-run --json'))
    .action(lazy(() => import('./commands/migrate.js').then((m) => m.default)));

  const product = program.command('product').description('manage the catalogue');
  product
    .command('add <sku>')
    .description('add a product, or a variant of one with --parent')
    .requiredOption('--name <name>', 'display name')
    .option('--price <amount>', "unit price as a decimal amount, e.g. 19.99 (default 0, or the parent's price for a variant)")
    .option('--stock <n>', 'initial units on hand', '0')
    .option('--parent <sku>', 'make this a variant of product <sku>')
    .option('--location <code>', 'where the initial stock is (default: the only location; required when there are several)')
    .addHelpText(
      'after',
      examples(
        'stockctl product add TEE --name "T-shirt" --price 19.99 --stock 10',
        'stockctl product add TEE-M --parent TEE --name "T-shirt M" --stock 5',
        'stockctl product add MUG --name Mug --stock 40 --location WH1',
      ),
    )
    .action(lazy(() => import('./commands/product.js').then((m) => m.add)));

  const location = program.command('location').description('the warehouses and stores that hold stock');
  location
    .command('add <code>')
    .description('add a location (reserve tries the active ones by priority, highest first)')
    .requiredOption('--name <name>', 'display name')
    .option('--priority <n>', 'higher is tried first (default 0)')
    .addOption(new Option('--kind <kind>', 'what it is').choices([...LOCATION_KINDS]).default('warehouse'))
    .addHelpText('after', examples('stockctl location add WH1 --name "Main warehouse" --priority 10', 'stockctl location add STORE1 --name "High Street" --kind store --priority 5'))
    .action(lazy(() => import('./commands/location.js').then((m) => m.add)));
  location
    .command('list')
    .description('every location with its stock, highest priority first')
    .addHelpText('after', examples('stockctl location list', 'stockctl location list --json'))
    .action(lazy(() => import('./commands/location.js').then((m) => m.list)));
  location
    .command('set <code>')
    .description("change a location's priority, or stop it selling (its stock stays)")
    .option('--priority <n>', 'higher is tried first')
    .option('--active <bool>', 'false: sells nothing and adds nothing to what is available; true: sells again')
    .option('--name <name>', 'display name')
    .addHelpText('after', examples('stockctl location set STORE1 --priority 20', 'stockctl location set STORE1 --active false'))
    .action(lazy(() => import('./commands/location.js').then((m) => m.set)));

  const transfer = program
    .command('transfer')
    .description('move units between locations: off hand at --from now, incoming at --to until received')
    .argument('[sku]', 'the SKU to move')
    .argument('[qty]', 'how many units')
    .option('--from <code>', 'the location the units leave (never below what it has reserved)')
    .option('--to <code>', 'the location they go to')
    .option('--reason <text>', 'why, recorded in the ledger')
    .addHelpText(
      'after',
      examples('stockctl transfer TEE 20 --from WH1 --to STORE1', 'stockctl transfer receive 7', 'stockctl transfer cancel 7 --reason "lost in transit"', 'stockctl transfer list'),
    )
    .action(
      lazy(() =>
        import('./commands/transfer.js').then(
          (m) =>
            async (ctx: CommandContext, sku: string | undefined, qty: string | undefined, flags: { from?: string; to?: string; reason?: string }) => {
              if (sku === undefined || qty === undefined || flags.from === undefined || flags.to === undefined) {
                const { InvalidInputError } = await import('../errors.js');
                throw new InvalidInputError('Usage: stockctl transfer <sku> <qty> --from <code> --to <code> (or transfer receive|cancel <id>, transfer list).');
              }
              return m.send(ctx, sku, qty, { from: flags.from, to: flags.to, reason: flags.reason });
            },
        ),
      ),
    );
  transfer
    .command('receive <id>')
    .description('the units arrived: on hand at the destination')
    .option('--reason <text>', 'recorded in the ledger')
    .action(lazy(() => import('./commands/transfer.js').then((m) => m.receive)));
  transfer
    .command('cancel <id>')
    .description('the units never left: back on hand at the source')
    .option('--reason <text>', 'recorded in the ledger')
    .action(lazy(() => import('./commands/transfer.js').then((m) => m.cancel)));
  transfer
    .command('list')
    .description('transfers in transit, newest first')
    .option('--all', 'also those received or cancelled')
    .option('--sku <sku>', 'only this SKU')
    .option('--location <code>', 'only those from or to this location')
    .action(lazy(() => import('./commands/transfer.js').then((m) => m.list)));

  const stock = program
    .command('stock')
    .description('show stock levels, or change them (stock set / stock adjust)')
    .argument('[sku...]', 'SKUs to show (default: all)')
    .option('--low <n>', 'only rows with at most <n> units available')
    .option('--watch', 'show the rows, then redraw on every stock change until Ctrl-C (--json: one JSON line per row, then one per change)')
    .option('--by-location', "each SKU's totals, then its level at every location")
    .option('--location <code>', 'the levels at this location only (with set / adjust: the location to change)')
    .addHelpText(
      'after',
      examples(
        'stockctl stock',
        'stockctl stock TEE MUG --json',
        'stockctl stock --low 5',
        'stockctl stock TEE --by-location',
        'stockctl stock --location STORE1',
        'stockctl stock TEE --watch',
        'stockctl stock set TEE 100 --reason "stock count"',
        'stockctl stock adjust TEE -2 --reason damaged --location STORE1',
      ),
    )
    .action(lazy(() => import('./commands/stock.js').then((m) => m.show)));
  // commander reads `stock`'s own options anywhere on the line: after `set` or `adjust`
  // they would be accepted and ignored, so they are a usage error there.
  const stockOptionsRefused = (sub: CommandUnknownOpts) => {
    // --location is both `stock`'s and theirs: commander hands it to `stock`; it is theirs.
    const location = sub.parent?.getOptionValue('location');
    if (location !== undefined && sub.getOptionValue('location') === undefined) sub.setOptionValue('location', location);
    const given = (['low', 'watch', 'byLocation'] as const).filter((o) => sub.parent?.getOptionValue(o) !== undefined);
    if (given.length > 0) {
      const flags = `${given.map((o) => (o === 'byLocation' ? '--by-location' : `--${o}`)).join(' and ')} ${given.length === 1 ? 'belongs' : 'belong'}`;
      sub.error(`error: ${flags} to \`stockctl stock\` alone, not to \`stock ${sub.name()}\`.`, {
        code: 'commander.unknownOption',
        exitCode: 2,
      });
    }
  };
  stock
    .command('set <sku> <qty>')
    .description('set the units on hand (never below what is reserved)')
    .option('--reason <text>', 'why, recorded in the ledger')
    .option('--location <code>', 'at this location (default: the only one; required when there are several)')
    .hook('preAction', stockOptionsRefused)
    .action(lazy(() => import('./commands/stock.js').then((m) => m.set)));
  stock
    .command('adjust <sku> <delta>')
    .description('add or remove units on hand, e.g. +5 or -2')
    .option('--reason <text>', 'why, recorded in the ledger')
    .option('--location <code>', 'at this location (default: the only one; required when there are several)')
    .hook('preAction', stockOptionsRefused)
    .action(lazy(() => import('./commands/stock.js').then((m) => m.adjust)));

  program
    .command('reserve <items...>')
    .description('create a pending order holding stock for SKU:QTY items (all or nothing)')
    .option('--customer <id>', 'customer id recorded on the order')
    .option('--ref <key>', 'external reference; repeating it returns the same order (idempotent)')
    .option('--ttl <duration>', 'payment window, e.g. 90s, 15m, 2h (default: from the payment method and priority)')
    .option('--payment-method <name>', "how the customer pays: the window is PAYMENT_TIMEOUTS' entry for it (else its default=, else PAYMENT_TIMEOUT_MINUTES)")
    .option('--priority <tier>', "customer tier: adds its PRIORITY_WINDOWS extra time to the window")
    .addOption(new Option('--strategy <name>', 'how stock is claimed (batched: alone here, it works as guarded)').choices([...STRATEGIES]).default('guarded'))
    .option('--location <code>', 'take every unit from this location (store pickup)')
    .addOption(
      new Option('--split <policy>', 'when no one location covers the order: units (a line from several), lines (each line from one) or never (default SPLIT_POLICY, else units)').choices([
        ...SPLIT_POLICIES,
      ]),
    )
    .addOption(MAX_RETRIES())
    .addOption(RETRY_BACKOFF())
    .addHelpText(
      'after',
      examples(
        'stockctl reserve TEE:1',
        'stockctl reserve TEE:5 --split lines --json',
        'stockctl reserve TEE:1 MUG:2 --location STORE1',
        'stockctl reserve TEE:2 MUG:1 --customer c42 --ref cart-9f1 --ttl 30m --json',
        'PAYMENT_TIMEOUTS="card=15m,bank_transfer=3d" PRIORITY_WINDOWS="vip=45m" stockctl reserve TEE:1 --payment-method card --priority vip',
      ),
    )
    .action(lazy(() => import('./commands/orders.js').then((m) => m.reserve)));

  program
    .command('pay <order>')
    .description('mark a pending order paid, converting its reservations into sales')
    .option('--payment-ref <ref>', 'payment provider reference')
    .option('--allow-late', 'accept a payment after the window if the stock can still be reserved')
    .addHelpText('after', examples('stockctl pay 3f2a…', 'stockctl pay cart-9f1 --payment-ref pi_123'))
    .action(lazy(() => import('./commands/orders.js').then((m) => m.pay)));

  program
    .command('cancel [orders...]')
    .description('cancel orders by hand, releasing their stock')
    .option('--reason <text>', 'why, recorded on the order')
    .option('--restock', 'also cancel paid orders, putting the sold units back on hand')
    .option('--from-file <file>', 'read order ids or refs, one per line (- for stdin)')
    .option('--dry-run', 'show what would be cancelled, change nothing')
    .addHelpText('after', examples('stockctl cancel cart-9f1 --reason "customer asked"', 'stockctl cancel --from-file stuck-orders.txt --dry-run', 'stockctl orders list --status pending --json | jq -r ".orders[].order_id" | stockctl cancel --from-file -'))
    .action(lazy(() => import('./commands/orders.js').then((m) => m.cancel)));

  program
    .command('extend <order>')
    .description("give a pending order more time to pay (moves its reservations' expiry too)")
    .requiredOption('--ttl <duration>', 'new window from now, e.g. 30m')
    .addHelpText('after', examples('stockctl extend cart-9f1 --ttl 30m'))
    .action(lazy(() => import('./commands/orders.js').then((m) => m.extend)));

  program
    .command('sweep')
    .description('expire unpaid orders past their window and release their stock (run from cron)')
    .option('--dry-run', 'count what would be expired, change nothing')
    .option('--batch-size <n>', 'orders per transaction', '100')
    .option('--quiet', 'print nothing on success (for cron)')
    .option('--every [duration]', 'keep sweeping at this interval, e.g. 30s or 5m (default CLEANUP_INTERVAL_MINUTES), until SIGTERM')
    .addHelpText('after', examples('stockctl sweep', '*/5 * * * * DATABASE_URL=postgres://… stockctl sweep --quiet', 'stockctl sweep --every 1m   # without cron, e.g. as a systemd service'))
    .action(lazy(() => import('./commands/sweep.js').then((m) => m.default)));

  const orders = program.command('orders').description('look orders up');
  orders
    .command('list')
    .description('recent orders, newest first')
    .option('--status <status>', 'pending, paid, cancelled, …')
    .option('--customer <id>', "only this customer's orders")
    .option('--limit <n>', 'at most this many (--json says next_cursor when more match)', '20')
    .option('--cursor <next>', 'the page after the one whose next_cursor this is')
    .addHelpText('after', examples('stockctl orders list --status pending', 'stockctl orders list --customer c42', 'stockctl orders list --limit 100 --cursor <next_cursor>'))
    .action(lazy(() => import('./commands/orders.js').then((m) => m.list)));
  orders
    .command('show <order>')
    .description('one order: lines, reservations, ledger, who cancelled and why, time left')
    .addHelpText('after', examples('stockctl orders show cart-9f1'))
    .action(lazy(() => import('./commands/orders.js').then((m) => m.show)));
  orders
    .command('set-status <order> <status>')
    .description('move a paid order through fulfilment: paid → processing → shipped → delivered')
    .addHelpText('after', examples('stockctl orders set-status cart-9f1 processing', 'stockctl orders set-status cart-9f1 shipped --actor warehouse'))
    .action(lazy(() => import('./commands/orders.js').then((m) => m.setStatus)));

  program
    .command('verify')
    .description('check every invariant between counters, reservations, orders and the ledger')
    .option('--repair', 'bring counters back in line through compensating ledger entries')
    .addHelpText(
      'after',
      examples('stockctl verify                 # exit 0: every invariant holds; exit 6: each problem named', 'stockctl verify --repair --json'),
    )
    .action(lazy(() => import('./commands/verify.js').then((m) => m.default)));

  program
    .command('report')
    .description('conversion, expiries, conflicts, time to pay, sweep health')
    .option('--since <duration>', 'window to report on', '1h')
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json', 'prometheus']).default('table'))
    .option('--by-location', "each location's reserved, sold, expired and cancelled units in the window, and its stock now")
    .addHelpText(
      'after',
      examples('stockctl report --since 24h', 'stockctl report --since 24h --by-location --json', 'stockctl report --format prometheus > /var/lib/node_exporter/textfile/stockctl.prom'),
    )
    .action(lazy(() => import('./commands/report.js').then((m) => m.default)));

  program
    .command('check')
    .description('evaluate alert rules; exit 6 when one fires')
    .addHelpText(
      'after',
      examples('stockctl check', '*/15 * * * * stockctl check --json > /dev/null || echo "stockctl alert firing"', 'CHECK_LOW_STOCK=off stockctl check') +
        '\nThresholds: the CHECK_* variables (`stockctl --help` lists them with their defaults).\n',
    )
    .action(lazy(() => import('./commands/check.js').then((m) => m.default)));

  program
    .command('loadtest')
    .description('fire concurrent buyers at real PostgreSQL and prove nothing oversold')
    .option('--buyers <n>', 'number of reservation attempts', '200')
    .option('--stock <k>', 'units per SKU', '50')
    .option('--quantity <q>', 'units each buyer wants', '1')
    .option('--concurrency <c>', 'parallel connections', '20')
    .option('--skus <s>', 'number of SKUs buyers spread over', '1')
    .addOption(new Option('--strategy <name>', 'strategy to test').choices([...STRATEGIES, 'all']).default('all'))
    .addOption(MAX_RETRIES())
    .addOption(RETRY_BACKOFF())
    .option('--mix', 'winners also pay, cancel or let their 1s window lapse while a sweep runs')
    .option(
      '--chaos [interval]',
      "terminate the run's own database backends at random while buyers run (with --url: the server's), about one every <interval> (default 200ms: 100-300 ms apart), then prove every invariant still holds",
    )
    .option('--keep', 'keep the loadtest products and orders afterwards (default: removed)')
    .option('--cleanup', 'run nothing: remove the leftovers of earlier runs (killed, or kept with --keep)')
    .option('--url <url>', 'fire the buyers at a running `stockctl serve` (same database) instead of the engine')
    .option('--token <token>', 'with --url: a token of role shop or above (default $STOCKCTL_TOKEN)')
    .option('--report <file>', 'also write the run as one self-contained HTML page (charts, verdict, settings), even if it fails or is stopped')
    .option('--repeat <n>', 'run the whole workload n times, strategies interleaved, and report the median and spread of each figure')
    .option('--locations <n>', "spread each SKU's stock over n locations of the run's own, and prove every level (default 1: the default location)")
    .option('--compare <files...>', 'run nothing: compare two saved `loadtest --json` documents, before.json after.json')
    .option(
      '--fail-if <condition>',
      "with --compare: exit 6 when the condition holds, like 'batched.throughput_rps < -10%' (repeatable; see docs/loadtest.md)",
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
    )
    .addHelpText(
      'after',
      examples(
        'npx stockctl loadtest',
        'stockctl loadtest --buyers 1000 --stock 100 --concurrency 50 --strategy guarded --json',
        'stockctl loadtest --json --report after.html > after.json && stockctl loadtest --compare before.json after.json',
        "stockctl loadtest --repeat 3 --json > after.json && stockctl loadtest --compare before.json after.json --fail-if 'batched.throughput_rps < -10%'",
        'stockctl loadtest --url http://127.0.0.1:8080 --token "$STOCKCTL_TOKEN" --concurrency 64',
        'stockctl loadtest --chaos --mix --buyers 500 --stock 100 --strategy all',
        'stockctl loadtest --chaos 50ms --strategy batched --json',
        'stockctl loadtest --cleanup',
      ),
    )
    .action(lazy(() => import('./commands/loadtest.js').then((m) => m.default)));

  program
    .command('serve')
    .description('the order API over HTTP for a shop\'s checkout: bearer tokens, JSON, problem documents, live stock events')
    .option('--host <host>', 'address to bind', '127.0.0.1')
    .option('--port <port>', 'TCP port (0: any free port, printed on stdout)', '8080')
    .option('--sweep-every <duration>', 'also run the sweep at this interval, e.g. 1m (default: off; cron is the usual way)')
    .addOption(new Option('--strategy <name>', 'how POST /orders claims stock').choices([...STRATEGIES]).default('batched'))
    .option('--pool <n>', 'database connections for requests', '10')
    .option('--grace <duration>', 'on SIGTERM / SIGINT, how long in-flight requests may finish', '10s')
    .option('--max-streams <n>', 'at most this many live stock streams (GET /stock/events) at once; one more gets 503 with Retry-After', '1000')
    .option(
      '--cors-origin <origin>',
      'let a browser page on this origin call the read routes (GET, HEAD), e.g. https://shop.example.com (repeatable; default: no CORS)',
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
    )
    .option('--token-rate-limit <n>', 'at most <n> requests a minute per token; one more gets 429 with Retry-After (default: no limit)')
    .addHelpText(
      'after',
      examples(
        'stockctl token create checkout --role shop',
        'stockctl serve --port 8080 --sweep-every 1m',
        'stockctl serve --max-streams 200',
        'stockctl serve --cors-origin https://shop.example.com --token-rate-limit 600',
        'curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/stock',
        'curl -N -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/stock/events?sku=TEE',
      ),
    )
    .action(lazy(() => import('./commands/serve.js').then((m) => m.default)));

  const token = program.command('token').description('API tokens for `stockctl serve` (shown once, stored as a hash)');
  token
    .command('create <name>')
    .description('create a token; prints it once (the name is the actor recorded with its changes)')
    .addOption(new Option('--role <role>', 'what it may do (read < shop < support < admin)').choices(TOKEN_ROLES).makeOptionMandatory())
    .addHelpText('after', examples('stockctl token create checkout --role shop', 'stockctl token create alice --role support --json'))
    .action(lazy(() => import('./commands/token.js').then((m) => m.create)));
  token.command('list').description('every token: name, role, created, last used, revoked').action(lazy(() => import('./commands/token.js').then((m) => m.list)));
  token.command('revoke <name>').description('revoke a token at once (its name stays taken)').action(lazy(() => import('./commands/token.js').then((m) => m.revoke)));

  const db = program.command('db').description('the embedded PostgreSQL (used when DATABASE_URL is not set)');
  const embedded = () => import('./commands/db.js');
  db.command('start').description('start it (it also starts on demand)').action(lazy(() => embedded().then((m) => m.start)));
  db.command('stop').description('stop it').action(lazy(() => embedded().then((m) => m.stop)));
  db.command('status')
    .description('is it running, where, on which port (exit 3 when not running)')
    .addHelpText('after', '\nExit status: 0 running, 3 not running (as `pg_ctl status`); --json still prints the document.\n')
    .action(lazy(() => embedded().then((m) => m.status)));
  db.command('url').description('print its connection URL').action(lazy(() => embedded().then((m) => m.url)));
  db.command('destroy')
    .description('stop it and delete its data (as root, also its cluster under /var/lib/stockctl/)')
    .option('--yes', 'really delete; without it, say what would be deleted and exit 2')
    .action(lazy(() => embedded().then((m) => m.destroy)));
  program
    .command('completion')
    .description('print a completion script for bash, zsh or fish')
    .addArgument(new Argument('<shell>', 'bash, zsh or fish').choices(['bash', 'zsh', 'fish'] as const))
    .addHelpText(
      'after',
      examples('eval "$(stockctl completion bash)"   # in ~/.bashrc', 'stockctl completion fish > ~/.config/fish/completions/stockctl.fish'),
    )
    .action(lazy(() => import('./commands/completion.js').then((m) => (ctx: CommandContext, shell: 'bash' | 'zsh' | 'fish') => m.default(ctx, shell, program))));
  return program;
}

async function main(): Promise<void> {
  guardStdio();
  if (process.env.STOCKCTL_NO_DOTENV !== '1') {
    try {
      process.loadEnvFile?.('.env'); // real environment variables win
    } catch {
      /* no .env here */
    }
  }
  const program = buildProgram();
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // `--help`, `help` and `help <command>` asked for the help (printed on stdout, as text
      // also with --json): exit 0. A group named without a subcommand is a usage error below.
      const helpAsked = err.code === 'commander.help' && err.exitCode === 0;
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || helpAsked) {
        await exitWhenFlushed(0);
      }
      const { reportError } = await import('./run.js');
      const { InvalidInputError } = await import('../errors.js');
      const { printable } = await import('../engine/input.js');
      // A command group named without its subcommand (`stockctl`, `stockctl orders`):
      // commander prints the help (on stderr) and throws "(outputHelp)".
      const path = commandPath(program, process.argv.slice(2));
      const message =
        err.code === 'commander.help'
          ? `name a command: run ${path} --help to list them`
          : printable(oneLine(err.message.replace(/^error:\s*/, '')));
      const sentence = `${message.charAt(0).toUpperCase()}${message.slice(1)}${/[.!?]$/.test(message) ? '' : '.'}`;
      if (process.argv.includes('--json')) {
        await exitWhenFlushed(reportError(new InvalidInputError(sentence, 'usage'), { json: true }));
      }
      if (usageError) process.stderr.write(printable(oneLine(usageError)));
      if (err.code !== 'commander.help') process.stderr.write('(run with --help for usage)\n');
      await exitWhenFlushed(2);
    }
    throw err;
  }
}

await main();
