/**
 * The command-line surface: every command and flag of SPEC section 3, declared here and
 * nowhere else. Command bodies live in ./commands and are imported only when run, so
 * `stockctl --help` loads nothing but commander.
 */
import { Command, CommanderError, Option } from 'commander';
import type { GlobalFlags } from './run.js';

const ENVIRONMENT_HELP = `
Environment:
  DATABASE_URL               PostgreSQL server to use (else the embedded one under STOCKCTL_HOME)
  STOCKCTL_HOME              embedded database home (default ~/.local/share/stockctl)
  STOCKCTL_ACTOR             who is recorded with every change (default: the OS user)
  PAYMENT_TIMEOUT_MINUTES    reservation window for new orders (default 15)
  CLEANUP_INTERVAL_MINUTES   how often you run \`stockctl sweep\` (default 5)
  MAX_STOCK_RETRY_ATTEMPTS   optimistic strategy retries (default 3)
  STOCK_RETRY_BACKOFF_MS     optimistic strategy backoff (default 100)
  NO_COLOR                   disable colour
  STOCKCTL_DEBUG=1           print stack traces, like --verbose

Exit codes:
  0 ok   1 internal error   2 usage   3 insufficient stock   4 not found
  5 refused by state   6 check failed   7 database unavailable / not migrated
  130/143 interrupted`;

type Action = (...args: unknown[]) => Promise<void>;

/**
 * The command modules, each imported only when its command runs. Spelled out (not a
 * template path) so that the bundler gives each one its own chunk.
 */
const COMMANDS = {
  check: () => import('./commands/check.js'),
  db: () => import('./commands/db.js'),
  loadtest: () => import('./commands/loadtest.js'),
  migrate: () => import('./commands/migrate.js'),
  orders: () => import('./commands/orders.js'),
  product: () => import('./commands/product.js'),
  report: () => import('./commands/report.js'),
  stock: () => import('./commands/stock.js'),
  sweep: () => import('./commands/sweep.js'),
  verify: () => import('./commands/verify.js'),
};

/** Lazy-load a command module and hand it the arguments, its flags and the globals. */
function lazy(file: keyof typeof COMMANDS, exportName = 'default'): Action {
  return async (...args: unknown[]) => {
    const command = args[args.length - 1] as Command;
    const flags = command.opts();
    const globals = command.optsWithGlobals() as GlobalFlags;
    const positional = args.slice(0, -2);
    const { runCommand } = await import('./run.js');
    const mod = (await COMMANDS[file]()) as unknown as Record<string, (...a: unknown[]) => Promise<number | void>>;
    await runCommand({ ...globals, quiet: Boolean(flags.quiet) }, (ctx) => mod[exportName](ctx, ...positional, flags));
  };
}

/** The optimistic strategy's settings as flags, for reserve and loadtest. */
const MAX_RETRIES = () =>
  new Option('--max-retries <n>', 'optimistic strategy: attempts before giving up (default MAX_STOCK_RETRY_ATTEMPTS, 3)');
const RETRY_BACKOFF = () =>
  new Option('--retry-backoff <ms>', 'optimistic strategy: backoff per attempt (default STOCK_RETRY_BACKOFF_MS, 100)');

function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`;
}

export function buildProgram(): Command {
  const program = new Command('stockctl');
  const json = process.argv.includes('--json');
  program
    .description('Inventory operations: reserve stock for orders without ever overselling, and prove it.')
    .version('0.1.0', '-V, --version')
    .option('--json', 'print exactly one JSON document on stdout')
    .option('--verbose', 'print stack traces and extra detail on errors')
    .option('--database-url <url>', 'PostgreSQL server (overrides DATABASE_URL)')
    .option('--actor <name>', 'who is recorded with every change (default $STOCKCTL_ACTOR or the OS user)')
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .showHelpAfterError(json ? false : '(run with --help for usage)')
    .exitOverride()
    .configureOutput({
      // In --json mode usage errors become a JSON document (see main below), not text.
      outputError: (text, write) => {
        if (!json) write(text);
      },
    })
    .addHelpText('after', `${examples('stockctl migrate', 'stockctl product add TEE --name "T-shirt" --price 19.99 --stock 10', 'stockctl reserve TEE:1 --ttl 15m', 'stockctl loadtest --buyers 200 --stock 50')}${ENVIRONMENT_HELP}`);

  program
    .command('migrate')
    .description('apply database migrations (safe to run from several hosts at once)')
    .option('--dry-run', 'list the migrations that would run, change nothing')
    .addHelpText('after', examples('DATABASE_URL=postgres://… stockctl migrate', 'stockctl migrate --dry-run --json'))
    .action(lazy('migrate'));

  const product = program.command('product').description('manage the catalogue');
  product
    .command('add <sku>')
    .description('add a product, or a variant of one with --parent')
    .requiredOption('--name <name>', 'display name')
    .option('--price <amount>', "unit price as a decimal amount, e.g. 19.99 (default 0, or the parent's price for a variant)")
    .option('--stock <n>', 'initial units on hand', '0')
    .option('--parent <sku>', 'make this a variant of product <sku>')
    .addHelpText(
      'after',
      examples('stockctl product add TEE --name "T-shirt" --price 19.99 --stock 10', 'stockctl product add TEE-M --parent TEE --name "T-shirt M" --stock 5'),
    )
    .action(lazy('product', 'add'));

  const stock = program
    .command('stock')
    .description('show stock levels, or change them (stock set / stock adjust)')
    .argument('[sku...]', 'SKUs to show (default: all)')
    .option('--low <n>', 'only rows with at most <n> units available')
    .option('--watch', 'refresh every 2 seconds until Ctrl-C')
    .addHelpText('after', examples('stockctl stock', 'stockctl stock TEE MUG --json', 'stockctl stock --low 5', 'stockctl stock set TEE 100 --reason "stock count"', 'stockctl stock adjust TEE -2 --reason damaged'))
    .action(lazy('stock', 'show'));
  stock
    .command('set <sku> <qty>')
    .description('set the units on hand (never below what is reserved)')
    .option('--reason <text>', 'why, recorded in the ledger')
    .action(lazy('stock', 'set'));
  stock
    .command('adjust <sku> <delta>')
    .description('add or remove units on hand, e.g. +5 or -2')
    .option('--reason <text>', 'why, recorded in the ledger')
    .action(lazy('stock', 'adjust'));

  program
    .command('reserve <items...>')
    .description('create a pending order holding stock for SKU:QTY items (all or nothing)')
    .option('--customer <id>', 'customer id recorded on the order')
    .option('--ref <key>', 'external reference; repeating it returns the same order (idempotent)')
    .option('--ttl <duration>', 'payment window, e.g. 90s, 15m, 2h (default PAYMENT_TIMEOUT_MINUTES)')
    .addOption(new Option('--strategy <name>', 'how stock is claimed').choices(['guarded', 'optimistic', 'locking']).default('guarded'))
    .addOption(MAX_RETRIES())
    .addOption(RETRY_BACKOFF())
    .addHelpText('after', examples('stockctl reserve TEE:1', 'stockctl reserve TEE:2 MUG:1 --customer c42 --ref cart-9f1 --ttl 30m --json'))
    .action(lazy('orders', 'reserve'));

  program
    .command('pay <order>')
    .description('mark a pending order paid, converting its reservations into sales')
    .option('--payment-ref <ref>', 'payment provider reference')
    .option('--allow-late', 'accept a payment after the window if the stock can still be reserved')
    .addHelpText('after', examples('stockctl pay 3f2a…', 'stockctl pay cart-9f1 --payment-ref pi_123'))
    .action(lazy('orders', 'pay'));

  program
    .command('cancel [orders...]')
    .description('cancel orders by hand, releasing their stock')
    .option('--reason <text>', 'why, recorded on the order')
    .option('--restock', 'also cancel paid orders, putting the sold units back on hand')
    .option('--from-file <file>', 'read order ids or refs, one per line (- for stdin)')
    .option('--dry-run', 'show what would be cancelled, change nothing')
    .addHelpText('after', examples('stockctl cancel cart-9f1 --reason "customer asked"', 'stockctl cancel --from-file stuck-orders.txt --dry-run', 'stockctl orders list --status pending --json | jq -r ".orders[].order_id" | stockctl cancel --from-file -'))
    .action(lazy('orders', 'cancel'));

  program
    .command('extend <order>')
    .description("give a pending order more time to pay (moves its reservations' expiry too)")
    .requiredOption('--ttl <duration>', 'new window from now, e.g. 30m')
    .addHelpText('after', examples('stockctl extend cart-9f1 --ttl 30m'))
    .action(lazy('orders', 'extend'));

  program
    .command('sweep')
    .description('expire unpaid orders past their window and release their stock (run from cron)')
    .option('--dry-run', 'count what would be expired, change nothing')
    .option('--batch-size <n>', 'orders per transaction', '100')
    .option('--quiet', 'print nothing on success (for cron)')
    .addHelpText('after', examples('stockctl sweep', '*/5 * * * * DATABASE_URL=postgres://… stockctl sweep --quiet'))
    .action(lazy('sweep'));

  const orders = program.command('orders').description('look orders up');
  orders
    .command('list')
    .description('recent orders, newest first')
    .option('--status <status>', 'pending, paid, cancelled, …')
    .option('--limit <n>', 'at most this many', '20')
    .addHelpText('after', examples('stockctl orders list --status pending'))
    .action(lazy('orders', 'list'));
  orders
    .command('show <order>')
    .description('one order: lines, reservations, ledger, who cancelled and why, time left')
    .addHelpText('after', examples('stockctl orders show cart-9f1'))
    .action(lazy('orders', 'show'));

  program
    .command('verify')
    .description('check every invariant between counters, reservations, orders and the ledger')
    .option('--repair', 'bring counters back in line through compensating ledger entries')
    .action(lazy('verify'));

  program
    .command('report')
    .description('conversion, expiries, conflicts, time to pay, sweep health')
    .option('--since <duration>', 'window to report on', '1h')
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json', 'prometheus']).default('table'))
    .action(lazy('report'));

  program.command('check').description('evaluate alert rules; exit 6 when one fires').action(lazy('check'));

  program
    .command('loadtest')
    .description('fire concurrent buyers at real PostgreSQL and prove nothing oversold')
    .option('--buyers <n>', 'number of reservation attempts', '200')
    .option('--stock <k>', 'units per SKU', '50')
    .option('--quantity <q>', 'units each buyer wants', '1')
    .option('--concurrency <c>', 'parallel connections', '20')
    .option('--skus <s>', 'number of SKUs buyers spread over', '1')
    .addOption(new Option('--strategy <name>', 'strategy to test').choices(['guarded', 'optimistic', 'locking', 'all']).default('all'))
    .addOption(MAX_RETRIES())
    .addOption(RETRY_BACKOFF())
    .option('--mix', 'winners also pay, cancel or let their 1s window lapse while a sweep runs')
    .option('--keep', 'keep the loadtest products and orders afterwards (default: removed)')
    .addHelpText('after', examples('npx stockctl loadtest', 'stockctl loadtest --buyers 1000 --stock 100 --concurrency 50 --strategy guarded --json'))
    .action(lazy('loadtest'));

  const db = program.command('db').description('the embedded PostgreSQL (used when DATABASE_URL is not set)');
  for (const [name, text] of [
    ['start', 'start it (it also starts on demand)'],
    ['stop', 'stop it'],
    ['status', 'is it running, where, on which port'],
    ['url', 'print its connection URL'],
  ]) {
    db.command(name).description(text).action(lazy('db', name));
  }
  return program;
}

async function main(): Promise<void> {
  // Broken pipe (`stockctl stock --json | head`): end quietly.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
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
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') {
        process.exit(0);
      }
      const { reportError } = await import('./run.js');
      const { InvalidInputError } = await import('../errors.js');
      const message = err.message.replace(/^error:\s*/, '');
      const sentence = `${message.charAt(0).toUpperCase()}${message.slice(1)}${/[.!?]$/.test(message) ? '' : '.'}`;
      if (process.argv.includes('--json')) {
        process.exit(reportError(new InvalidInputError(sentence, 'usage'), { json: true }));
      }
      process.exit(2);
    }
    throw err;
  }
}

await main();
