/**
 * `stockctl completion bash|zsh|fish`: a completion script generated from the declared
 * commands and flags themselves, so it never falls behind them.
 */
import type { CommandUnknownOpts } from '@commander-js/extra-typings';
import type { CommandContext } from '../run.js';

interface Node {
  /** The command path after `stockctl`, e.g. "stock set". */
  path: string;
  subcommands: string[];
  /** Long flags, with the choices of those that take one of a fixed set. */
  flags: { name: string; takesValue: boolean; choices: string[] }[];
}

function walk(command: CommandUnknownOpts, path: string, inherited: Node['flags'], out: Node[]): void {
  const own = command.options
    .filter((o) => o.long && !o.hidden)
    .map((o) => ({ name: o.long!, takesValue: o.required || o.optional, choices: o.argChoices ?? [] }));
  const flags = [...inherited, ...own, { name: '--help', takesValue: false, choices: [] }];
  const subcommands = command.commands.filter((c) => !c.name().startsWith('help')).map((c) => c.name());
  out.push({ path, subcommands, flags });
  for (const sub of command.commands) walk(sub, path ? `${path} ${sub.name()}` : sub.name(), path ? inherited : own, out);
}

const words = (n: Node) => [...n.subcommands, ...n.flags.map((f) => f.name)].join(' ');

function bash(nodes: Node[]): string {
  const cases = (pick: (n: Node) => string) =>
    nodes.map((n) => `    ${JSON.stringify(n.path)}) echo ${JSON.stringify(pick(n))} ;;`).join('\n');
  // After a flag that takes a value: its choices, or nothing (a value is the user's to type).
  const values = nodes.flatMap((n) =>
    n.flags
      .filter((f) => f.takesValue)
      .map((f) => `    ${JSON.stringify(`${n.path}:${f.name}`)}) COMPREPLY=($(compgen -W "${f.choices.join(' ')}" -- "$cur")); return ;;`),
  );
  return `# stockctl completion for bash: eval "$(stockctl completion bash)", or save it under
# /etc/bash_completion.d/stockctl
_stockctl_subcommands() {
  case "$1" in
${cases((n) => n.subcommands.join(' '))}
  esac
}
_stockctl_words() {
  case "$1" in
${cases(words)}
  esac
}
_stockctl() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}" path="" word i
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    case " $(_stockctl_subcommands "$path") " in
      *" $word "*) path="\${path:+$path }$word" ;;
    esac
  done
  case "$path:$prev" in
${values.join('\n')}
  esac
  COMPREPLY=($(compgen -W "$(_stockctl_words "$path")" -- "$cur"))
}
# -o default: where stockctl offers nothing (a file for --from-file, --report), the shell's own file names.
complete -o default -F _stockctl stockctl
`;
}

function fish(nodes: Node[]): string {
  const lines = ['# stockctl completion for fish: stockctl completion fish > ~/.config/fish/completions/stockctl.fish', 'complete -c stockctl -f'];
  for (const n of nodes) {
    const parts = n.path ? n.path.split(' ') : [];
    // Top level: no subcommand yet. Deeper: every word of the path typed (`token list` is
    // not `orders list`), and none of this command's own subcommands yet (`stock`, not `stock set`).
    // Nor the commands under which all these words also make a path (`cancel` is not `transfer cancel`).
    const under = new Set(
      nodes
        .map((o) => (o.path ? o.path.split(' ') : []))
        .filter((q) => q.length > parts.length && q[0] !== parts[0] && parts.every((p) => q.includes(p)))
        .map((q) => q[0]),
    );
    const condition =
      parts.length === 0
        ? '__fish_use_subcommand'
        : [
            ...parts.map((p) => `__fish_seen_subcommand_from ${p}`),
            ...(n.subcommands.length ? [`not __fish_seen_subcommand_from ${n.subcommands.join(' ')}`] : []),
            ...(under.size ? [`not __fish_seen_subcommand_from ${[...under].join(' ')}`] : []),
          ].join('; and ');
    if (n.subcommands.length) lines.push(`complete -c stockctl -n '${condition}' -a '${n.subcommands.join(' ')}'`);
    for (const f of n.flags) {
      const value = f.choices.length ? ` -x -a '${f.choices.join(' ')}'` : f.takesValue ? ' -r' : '';
      lines.push(`complete -c stockctl -n '${condition}' -l ${f.name.slice(2)}${value}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

export function completionScript(shell: 'bash' | 'zsh' | 'fish', program: CommandUnknownOpts): string {
  const nodes: Node[] = [];
  walk(program, '', [], nodes);
  if (shell === 'fish') return fish(nodes);
  const script = bash(nodes);
  // zsh runs bash completion functions through its own compatibility layer.
  return shell === 'zsh' ? `# stockctl completion for zsh: eval "$(stockctl completion zsh)"\nautoload -U +X bashcompinit && bashcompinit\n${script}` : script;
}

export default async function completion(ctx: CommandContext, shell: 'bash' | 'zsh' | 'fish', program: CommandUnknownOpts) {
  const script = completionScript(shell, program);
  ctx.out.result({ shell, script }, () => process.stdout.write(script));
}
