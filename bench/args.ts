// The flags of a standalone benchmark script, through the CLI's parser (src/cli/args.ts: node:util
// parseArgs, strict): `--help` prints the script's usage, and a flag it does not know is refused
// before any work starts, since a misspelt flag used to be ignored and a full run of minutes began.
// A script that only works forked (a worker of another) says so when run by hand (forkedOnly).
import path from 'node:path';
import { parse, type Options } from '../src/cli/args';
import { UsageError } from '../src/cli/io';

type Parsed<T extends Options> = ReturnType<typeof parse<T>>;

/**
 * The parsed flags, or `{ exit }` when the script is to stop without running: 0 after `--help`/`-h`
 * (usage on stdout), 2 after a bad flag (the reason on stderr, with a pointer to `--help`).
 * `script` is the file's name in dist/bench/, as the messages show it.
 */
export function benchArgs<T extends Options>(script: string, usage: string, argv: string[], options: T, allowPositionals = false): Parsed<T> | { exit: number } {
  let parsed: Parsed<T>;
  try {
    parsed = parse(argv, options, allowPositionals);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    return refuse(script, e.message);
  }
  if ((parsed.values as { help?: boolean }).help) {
    process.stdout.write(usage);
    return { exit: 0 };
  }
  return parsed;
}

/** A bad value for a flag the parser accepted (an unknown suite, a count that is not one): exit 2. */
export function refuse(script: string, message: string): { exit: number } {
  process.stderr.write(`${path.basename(script)}: ${message}\nRun \`node dist/bench/${script} --help\` for usage.\n`);
  return { exit: 2 };
}

/**
 * For a script another bench script forks, which takes its task over the IPC channel: `{ exit: 2 }`
 * when it was started without one (by hand), after saying which script forks it and what to run
 * instead; undefined when forked. Without this it waited for no message and exited silently.
 * `script` is the file's name in dist/bench/, `forkedBy` the forking script's source, `instead` a command.
 */
export function forkedOnly(script: string, forkedBy: string, instead: string): { exit: number } | undefined {
  if (process.send) return undefined;
  process.stderr.write(`${script} is forked by ${forkedBy} (it needs an IPC channel); run \`${instead}\` instead\n`);
  return { exit: 2 };
}
