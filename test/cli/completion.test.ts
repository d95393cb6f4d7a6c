/**
 * `stockctl completion bash|zsh|fish`: generated from the declared commands and flags,
 * and loaded by a real bash, which then completes commands, flags and flag values.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';

/** Source the script in bash and ask it to complete `line` (a trailing space: a new word). */
function complete(script: string, line: string): string[] {
  const probe = `
    source /dev/stdin <<'SCRIPT'
${script}
SCRIPT
    read -ra COMP_WORDS <<<"$LINE"
    [[ "$LINE" == *" " ]] && COMP_WORDS+=("")
    COMP_CWORD=$((\${#COMP_WORDS[@]} - 1))
    _stockctl
    printf '%s\\n' "\${COMPREPLY[@]}"`;
  const res = spawnSync('bash', ['-c', probe], { env: { ...process.env, LINE: line }, encoding: 'utf8' });
  expect(res.stderr).toBe('');
  return res.stdout.split('\n').filter(Boolean);
}

describe('stockctl completion', () => {
  it('bash: the script loads and completes commands, subcommands, flags and flag values', async () => {
    const res = await runCli(['completion', 'bash'], { databaseUrl: null });
    expect(res.code, res.stderr).toBe(0);
    expect(complete(res.stdout, 'stockctl res')).toEqual(['reserve']);
    expect(complete(res.stdout, 'stockctl stock ')).toEqual(expect.arrayContaining(['set', 'adjust', '--low', '--watch']));
    expect(complete(res.stdout, 'stockctl cancel --from')).toEqual(['--from-file']);
    expect(complete(res.stdout, 'stockctl reserve TEE:1 --strategy ')).toEqual(['guarded', 'optimistic', 'locking', 'batched']);
    expect(complete(res.stdout, 'stockctl loadtest --strategy a')).toEqual(['all']);
    expect(complete(res.stdout, 'stockctl db d')).toEqual(['destroy']);
    expect(complete(res.stdout, 'stockctl orders show --js')).toEqual(['--json']);
    expect(complete(res.stdout, 'stockctl tra')).toEqual(['transfer']);
    expect(complete(res.stdout, 'stockctl location ')).toEqual(expect.arrayContaining(['add', 'list', 'set']));
    expect(complete(res.stdout, 'stockctl location add STORE --kind ')).toEqual(['warehouse', 'store']);
    expect(complete(res.stdout, 'stockctl reserve TEE:1 --split ')).toEqual(['units', 'lines', 'never']);
    // `transfer cancel` is not `cancel`: its own flags only.
    expect(complete(res.stdout, 'stockctl transfer cancel 7 --')).not.toContain('--from-file');
    expect(complete(res.stdout, 'stockctl transfer cancel 7 --re')).toEqual(['--reason']);
  });

  it('zsh loads the same functions through bashcompinit; fish gets complete lines', async () => {
    const zsh = await runCli(['completion', 'zsh'], { databaseUrl: null });
    expect(zsh.code).toBe(0);
    expect(zsh.stdout).toMatch(/^# stockctl completion for zsh[^\n]*\nautoload -U \+X bashcompinit && bashcompinit\n/);
    expect(zsh.stdout).toContain('complete -o default -F _stockctl stockctl');
    const fish = await runCli(['completion', 'fish'], { databaseUrl: null });
    expect(fish.code).toBe(0);
    expect(fish.stdout).toContain("complete -c stockctl -n '__fish_use_subcommand' -a 'migrate product location transfer stock reserve");
    expect(fish.stdout).toContain("complete -c stockctl -n '__fish_seen_subcommand_from reserve' -l split -x -a 'units lines never'");
    // `cancel`'s flags are not offered after `transfer cancel`, whose own are.
    expect(fish.stdout).toContain("complete -c stockctl -n '__fish_seen_subcommand_from cancel; and not __fish_seen_subcommand_from transfer' -l from-file -r");
    expect(fish.stdout).not.toMatch(/-n '__fish_seen_subcommand_from cancel' /);
    expect(fish.stdout).toContain("complete -c stockctl -n '__fish_seen_subcommand_from transfer; and __fish_seen_subcommand_from cancel' -l reason -r");
    expect(fish.stdout).toContain("complete -c stockctl -n '__fish_seen_subcommand_from reserve' -l strategy -x -a 'guarded optimistic locking batched'");
    // A flag belongs to its own command only: `token list` is not `orders list`, `stock set` is not `stock`.
    expect(fish.stdout).toContain("complete -c stockctl -n '__fish_seen_subcommand_from orders; and __fish_seen_subcommand_from list' -l status -r");
    expect(fish.stdout).not.toMatch(/__fish_seen_subcommand_from token; and __fish_seen_subcommand_from list' -l status/);
    expect(fish.stdout).toMatch(/-n '__fish_seen_subcommand_from stock; and not __fish_seen_subcommand_from set adjust[^']*' -l low/);
    expect(fish.stdout).not.toMatch(/__fish_seen_subcommand_from stock; and __fish_seen_subcommand_from set' -l low/);
  });

  it('an unknown shell is exit 2 naming the choices', async () => {
    const res = await runCli(['completion', 'tcsh'], { databaseUrl: null });
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/Allowed choices are bash, zsh, fish/);
  });
});
