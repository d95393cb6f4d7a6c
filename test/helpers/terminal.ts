/**
 * A command run on a pseudo-terminal (util-linux `script`) of a given width, as a user at a
 * terminal meets it, whatever the suite runs under: spinners and progress draw there and
 * nowhere else. What it writes is kept up to a cap (a runaway spinner must not fill the
 * test's memory) and counted whole; the command line ends by printing `exit <code>`.
 */
import { execFileSync, spawn } from 'node:child_process';
import os from 'node:os';

export interface TerminalRun {
  /** Everything written to the terminal, up to the cap. */
  output: string;
  /** How much was written in all. */
  bytes: number;
  timedOut: boolean;
}

export function runOnTerminal(
  command: string,
  {
    cols,
    env,
    timeoutMs = 30_000,
    cap = 1_000_000,
    ci = false,
  }: { cols: number; env: NodeJS.ProcessEnv; timeoutMs?: number; cap?: number; ci?: boolean },
): Promise<TerminalRun> {
  // A person at a terminal: no CI variable and a terminal that can draw (with either, ora
  // would draw nothing, and a test of drawing could not fail), unless `ci` asks for CI's.
  const { CI: _ci, ...rest } = env;
  const terminal = ci ? { ...env, CI: env.CI ?? 'true' } : { ...rest, TERM: !rest.TERM || rest.TERM === 'dumb' ? 'xterm' : rest.TERM };
  return new Promise((resolve) => {
    const child = spawn('script', ['-qfec', `stty cols ${cols} rows 24; ${command}; echo "exit $?"`, '/dev/null'], {
      env: terminal,
      cwd: os.tmpdir(),
    });
    let output = '';
    let bytes = 0;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      // The command runs in a session of its own (script's): kill it with all it started,
      // so that a command that hangs does not spin on after the test.
      for (const pid of [child.pid!, ...descendantsOf(child.pid!)]) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }, timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      bytes += c.length;
      if (output.length < cap) output += c;
    });
    child.stderr.on('data', () => {});
    child.on('close', () => {
      clearTimeout(timer);
      resolve({ output, bytes, timedOut });
    });
  });
}

/** Every process below `pid`, from `ps`. */
function descendantsOf(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const line of execFileSync('ps', ['-eo', 'pid=,ppid='], { encoding: 'utf8' }).trim().split('\n')) {
    const [child, parent] = line.trim().split(/\s+/).map(Number);
    children.set(parent, [...(children.get(parent) ?? []), child]);
  }
  const found: number[] = [];
  for (let queue = [pid]; queue.length > 0; ) {
    const next = children.get(queue.shift()!) ?? [];
    found.push(...next);
    queue.push(...next);
  }
  return found;
}
