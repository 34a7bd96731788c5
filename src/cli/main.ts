// `pdp <command> …`: dispatches to one file per command. Commands are loaded lazily so that
// `pdp check` never pays for the server's dependencies.
import { EXIT_USAGE, UsageError, type CliIo, type Command } from './io';

interface CommandModule {
  run: Command;
  HELP: string;
}

const COMMANDS: Record<string, { summary: string; load: () => CommandModule }> = {
  serve: { summary: 'run the PDP HTTP server', load: () => require('./serve') },
  check: { summary: 'parse and check policy files; lint them', load: () => require('./check') },
  eval: { summary: 'decide one request from the command line', load: () => require('./eval') },
  fmt: { summary: 'format policy files canonically', load: () => require('./fmt') },
  test: { summary: 'run the `test` blocks of a policy set', load: () => require('./test') },
  audit: { summary: 'query the audit store (anomalies, prune)', load: () => require('./audit') },
  ca: { summary: 'a built-in certificate authority for mTLS with SPIFFE IDs', load: () => require('./ca') },
  token: { summary: 'create, list and revoke short-lived bearer tokens', load: () => require('./token') },
};

/** Commands whose first argument is a subcommand (`pdp audit prune`): `pdp help` takes it too. */
const WITH_SUBCOMMANDS = new Set(['audit', 'ca', 'token']);

export const HELP = `usage: pdp <command> [options]

commands:
${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(8)} ${c.summary}`).join('\n')}

Run \`pdp <command> --help\` (or \`pdp help <command>\`) for a command's options.
Exit codes: 0 success, 1 a finding or failure, 2 bad usage.
`;

export async function main(argv: string[], io: CliIo): Promise<number> {
  // `pdp help CMD` is `pdp CMD --help`, as git and go have it.
  if (argv[0] === 'help' && argv.length > 1) {
    // `pdp help audit prune`: a command with subcommands takes one more word (its help covers them).
    const nested = argv.length === 3 && WITH_SUBCOMMANDS.has(argv[1]!);
    if (argv.length > 2 && !nested) {
      io.stderr.write(`pdp help: expected one command${WITH_SUBCOMMANDS.has(argv[1]!) ? ' and at most one subcommand' : ''}, got ${argv.length - 1} words\n\n${HELP}`);
      return EXIT_USAGE;
    }
    if (nested) return main([argv[1]!, argv[2]!, '--help'], io);
    // An unknown name is reported as by `pdp NAME`, with its did-you-mean.
    return Object.hasOwn(COMMANDS, argv[1]!) ? main([argv[1]!, '--help'], io) : main([argv[1]!], io);
  }
  const [name, ...args] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? io.stderr : io.stdout).write(HELP);
    return name === undefined ? EXIT_USAGE : 0;
  }
  if (name === '--version') {
    io.stdout.write(`${require('../../../package.json').version}\n`);
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    const { didYouMean } = await import('../diagnostics');
    const hint = didYouMean(name, Object.keys(COMMANDS));
    io.stderr.write(`pdp: unknown command \`${name}\`${hint ? `; ${hint}` : ''}\n\n${HELP}`);
    return EXIT_USAGE;
  }
  const mod = command.load();
  if (args.includes('--help') || args.includes('-h')) {
    io.stdout.write(mod.HELP.endsWith('\n') ? mod.HELP : `${mod.HELP}\n`);
    return 0;
  }
  try {
    return await mod.run(args, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`pdp ${name}: ${e.message}\nRun \`pdp ${name} --help\` for usage.\n`);
      return EXIT_USAGE;
    }
    io.stderr.write(`pdp ${name}: internal error: ${(e as Error).message}\n`);
    return EXIT_USAGE;
  }
}
