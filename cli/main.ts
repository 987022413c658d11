// `pixelfly` command-line entry: a table of sub-commands, each in cli/commands/<name>.ts.
// Every command returns its exit status; errors go to stderr with a non-zero status.
import { CliError, type Command } from './commands/command';
import { layoutCommand } from './commands/layout';
import { planCommand } from './commands/plan';
import { daemonCommand } from './commands/daemon';
import { trainCommand } from './commands/train';
import { analyzeCommand } from './commands/analyze';
import { torchCommand } from './commands/torch';

const commands: Record<string, Command> = {
  layout: layoutCommand,
  plan: planCommand,
  daemon: daemonCommand,
  train: trainCommand,
  analyze: analyzeCommand,
  torch: torchCommand,
};

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  const rows = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `usage: pixelfly <command> [options]\n\ncommands:\n${rows.join('\n')}\n\n'pixelfly <command> --help' shows a command's options.\n`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`pixelfly: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`usage: pixelfly ${name} ${command.usage}\n`);
    return 0;
  }
  return command.run(rest);
}

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
  },
  (err: unknown) => {
    const message = err instanceof CliError || err instanceof Error ? err.message : String(err);
    process.stderr.write(`pixelfly: ${message}\n`);
    process.exitCode = err instanceof CliError ? err.status : 1;
  },
);
