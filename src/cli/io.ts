// What every command gets instead of touching process globals, so tests can run commands in-process
// and the binary can run them for real.
export interface Writer {
  write(chunk: string): unknown;
  /** True when output goes to a terminal (progress bars, colour). */
  isTTY?: boolean;
}

export interface CliIo {
  stdout: Writer;
  stderr: Writer;
  env: NodeJS.ProcessEnv;
  cwd: string;
}

/** A command: arguments after its name in, exit code out (0 ok, 1 finding/failure, 2 bad usage). */
export type Command = (args: string[], io: CliIo) => Promise<number>;

export const EXIT_OK = 0;
export const EXIT_FINDING = 1;
export const EXIT_USAGE = 2;

/** Thrown by argument handling; main prints the message and exits 2. */
export class UsageError extends Error {}

/**
 * `word` as one POSIX shell word, for a command a message suggests: as is when it holds only
 * characters no shell treats specially, else in single quotes, so a suggested command pastes as is
 * for a path with spaces or `$` in it.
 */
export function shellWord(word: string): string {
  if (/^[A-Za-z0-9_./:@%+=,-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
