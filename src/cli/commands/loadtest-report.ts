/**
 * The files around a loadtest: `--report run.html` (the HTML page of a run) and
 * `--compare before.json after.json` (two saved `--json` documents side by side).
 * Neither runs load; --compare does not even open the database.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { CommandContext } from '../run.js';
import { InvalidInputError } from '../../errors.js';
import { escapeControls as shown } from '../../engine/input.js';
import type { LoadtestReport } from '../../loadtest/report.js';
import type { Change } from '../../loadtest/compare.js';
import { BARE_UPDATE_LABEL, count, ms, NONE } from '../../loadtest/format.js';

/** Why a file could not be read or written, in words (never a stack trace). */
function why(err: unknown, file: string): string {
  const code = (err as NodeJS.ErrnoException).code;
  const dir = path.dirname(file);
  switch (code) {
    case 'ENOENT':
      return `no such file or directory`;
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EROFS':
      return `${dir} is on a read-only file system`;
    case 'ENOTDIR':
      return `${dir} is not a directory`;
    case 'EISDIR':
      return 'it is a directory';
    case 'ENOSPC':
      return 'no space left on the device';
    default:
      return (err as Error).message;
  }
}

/** A temporary name beside `file`, in the same directory (so that rename is atomic). */
const tempBeside = (file: string) => path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}-${randomBytes(3).toString('hex')}.tmp`);

/**
 * `--report FILE`, checked before the run starts (a long run must not end in "cannot
 * write"): its directory exists and takes a new file, and FILE is not a directory.
 * Returns the absolute path.
 */
export async function prepareReportFile(file: string): Promise<string> {
  const target = path.resolve(file);
  const refuse = (reason: string) => new InvalidInputError(shown(`Cannot write the report to ${file} (--report): ${reason}.`));
  const stat = await fs.stat(target).catch(() => undefined);
  if (stat?.isDirectory()) throw refuse('it is a directory');
  const dir = path.dirname(target);
  const dirStat = await fs.stat(dir).catch(() => undefined);
  if (!dirStat) throw refuse(`the directory ${dir} does not exist`);
  if (!dirStat.isDirectory()) throw refuse(`${dir} is not a directory`);
  const probe = tempBeside(target);
  try {
    await (await fs.open(probe, 'wx')).close();
  } catch (err) {
    throw refuse(why(err, target));
  }
  await fs.rm(probe, { force: true });
  return target;
}

/**
 * Write the report page atomically (a temporary file beside it, then renamed over it: a
 * reader never sees half a page) and say where on stderr. On failure, say why there and
 * return false (stdout already has the run's figures).
 */
export async function writeReportFile(ctx: CommandContext, target: string, report: LoadtestReport): Promise<boolean> {
  const { renderHtmlReport } = await import('../../loadtest/html-report.js');
  const temp = tempBeside(target);
  try {
    const handle = await fs.open(temp, 'wx');
    try {
      await handle.writeFile(renderHtmlReport(report), 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(temp, target);
  } catch (err) {
    await fs.rm(temp, { force: true }).catch(() => {});
    process.stderr.write(`${ctx.out.chalk.red('error:')} ${shown(`Could not write the report to ${target}: ${why(err, target)}.`)}\n`);
    return false;
  }
  ctx.out.note(shown(`Wrote the report to ${target}.`));
  return true;
}

async function readRun(file: string): Promise<LoadtestReport> {
  const refuse = (reason: string) => new InvalidInputError(shown(`Cannot compare ${file}: ${reason}.`));
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw refuse(why(err, file));
  }
  if (text.trim() === '') throw refuse('it is empty (save a run with `stockctl loadtest --json > run.json`)');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw refuse(`it is not JSON (${(err as Error).message})`);
  }
  const { loadtestReportProblem } = await import('../../loadtest/compare.js');
  const problem = loadtestReportProblem(value);
  if (problem) throw refuse(`it is not a \`loadtest --json\` document: ${problem}`);
  return value as LoadtestReport;
}

const percent = (change: number) => {
  const p = Math.round(change * 1000) / 10;
  return `${p > 0 ? '+' : ''}${p === 0 ? '0.0' : p.toFixed(1)}%`;
};
const noiseText = (fraction: number) => `±${(Math.round(fraction * 1000) / 10).toFixed(1)}%`;

const configValue = (v: unknown) => (v === undefined ? '(none)' : Array.isArray(v) ? v.join(',') : typeof v === 'number' ? count(v) : JSON.stringify(v).replace(/^"(.*)"$/, '$1'));

/** `loadtest --compare before.json after.json [--fail-if COND]...`. Exit 6 when a condition holds. */
export async function compareRuns(ctx: CommandContext, files: string[], others: string[], failIf: string[]): Promise<number> {
  if (files.length !== 2) {
    throw new InvalidInputError(`--compare takes two files, the saved \`loadtest --json\` of the run before and of the run after; got ${files.length}.`);
  }
  if (others.length > 0) throw new InvalidInputError(`--compare runs nothing: leave out ${others.join(' and ')}.`);
  const { compareReports, parseCondition, FIGURES } = await import('../../loadtest/compare.js');
  const conditions = failIf.map((text) => {
    const read = parseCondition(text);
    if (typeof read === 'string') {
      throw new InvalidInputError(
        shown(
          `Invalid --fail-if '${text}': ${read}. A threshold with % is a relative change (-10%), with a sign a change in the figure's unit (-100, +5), ` +
            `a bare number the after run's own value (50); figures: ${FIGURES.join(', ')}.`,
        ),
      );
    }
    return read;
  });
  const [before, after] = [await readRun(files[0]), await readRun(files[1])];
  const { problems, ...comparison } = compareReports(before, after, conditions);
  if (problems.length > 0) throw new InvalidInputError(shown(`Cannot judge ${problems.join('; ')}.`));
  await ctx.out.result(comparison, () => {
    const { chalk } = ctx.out;
    const describe = (file: string, r: typeof comparison.before) =>
      `${file}: run ${r.run_id} at ${r.started_at}, stockctl ${r.stockctl_version}, PostgreSQL ${r.server_version}` +
      (r.repeat > 1 ? `, medians of ${count(r.repeat)} runs` : '') +
      (r.interrupted ? chalk.yellow(' (interrupted: partial figures)') : '');
    ctx.out.line(`Before: ${describe(files[0], comparison.before)}`);
    ctx.out.line(`After:  ${describe(files[1], comparison.after)}`);
    const bare = comparison.strategies[0].throughput_rps;
    const noise =
      comparison.noise.source === 'repeat'
        ? "noise: each figure's own spread over the repeated runs (max − min over the median)"
        : `noise: ${noiseText(comparison.noise.default)}, the default for runs that were not repeated (\`loadtest --repeat 3\` measures it)`;
    ctx.out.line(
      `Changes are over each run's bare UPDATE (${changeFigures(bare, count)}/s${bare.change === null ? '' : `, ${percent(bare.change)}`}), ` +
        `so that a slower machine is not a slower stockctl; ${noise}.`,
    );
    const marked = (figure: Change, format: (n: number) => string) => {
      const side = (n: number | null) => (n === null ? NONE : format(n));
      const moved = figure.normalised_change === null ? '' : ` ${percent(figure.normalised_change)}`;
      const verdict = figure.verdict === 'better' ? chalk.green(' better') : figure.verdict === 'worse' ? chalk.red(' worse') : figure.verdict === 'within_noise' ? ' ≈' : '';
      return `${side(figure.before)} → ${side(figure.after)}${moved}${verdict}`;
    };
    const checks = (ok: boolean | null) => (ok === null ? NONE : ok ? chalk.green('ok') : chalk.red('FAIL'));
    ctx.out.line(
      ctx.out.table(
        ['Strategy', 'Reserve/s', 'p50 ms', 'p95 ms', 'p99 ms', 'Checks'],
        comparison.strategies.map((s) => [
          s.strategy === 'bare_update' ? BARE_UPDATE_LABEL : s.strategy,
          marked(s.throughput_rps, count),
          marked(s.p50_ms, ms),
          marked(s.p95_ms, ms),
          marked(s.p99_ms, ms),
          s.strategy === 'bare_update' ? NONE : `${checks(s.ok.before)} → ${checks(s.ok.after)}`,
        ]),
        { align: ['left', 'right', 'right', 'right', 'right', 'left'] },
      ),
    );
    ctx.out.line('better / worse: beyond the noise; ≈: within it.');
    if (comparison.before.server_version !== comparison.after.server_version) {
      ctx.out.line(chalk.yellow(`The servers differ (PostgreSQL ${comparison.before.server_version} → ${comparison.after.server_version}): compare the ratios to the bare UPDATE, not the rates.`));
    }
    if (comparison.config_differs.length > 0) {
      const settings = comparison.config_differs.map(
        (k) => `${k} ${configValue(comparison.before.config[k])} → ${configValue(comparison.after.config[k])}`,
      );
      ctx.out.line(chalk.yellow(`The settings differ (${settings.join(', ')}): the figures are not like for like.`));
    }
    for (const c of comparison.fail_if) {
      const unit = c.figure === 'throughput_rps' ? '/s' : c.figure === 'ratio_to_bare_update' ? '×' : ' ms';
      const measured = c.compares === 'relative_change' ? percent(c.measured) : `${c.compares === 'change' && c.measured > 0 ? '+' : ''}${c.measured}${unit}`;
      const what = c.compares === 'value' ? `it is ${measured}` : `it moved ${measured}${c.beyond_noise ? ', beyond the noise' : ', within the noise'}`;
      ctx.out.line(c.holds ? chalk.red(`FAIL --fail-if '${c.condition}': ${what}.`) : `pass --fail-if '${c.condition}': ${what}.`);
    }
  });
  if (comparison.failed.length > 0) {
    ctx.out.note(`${comparison.failed.length === 1 ? 'A --fail-if condition holds' : `${comparison.failed.length} --fail-if conditions hold`}: ${comparison.failed.join('; ')}.`);
    return 6;
  }
  return 0;
}

const changeFigures = (figure: Change, format: (n: number) => string) => `${figure.before === null ? NONE : format(figure.before)} → ${figure.after === null ? NONE : format(figure.after)}`;
