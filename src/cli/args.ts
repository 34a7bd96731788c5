// Argument parsing over node:util parseArgs (the standard library's parser), with errors in words.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from './io';

export type Options = NonNullable<ParseArgsConfig['options']>;

export function parse<T extends Options>(args: string[], options: T, allowPositionals = true) {
  try {
    return parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals, strict: true });
  } catch (e) {
    // parseArgs quotes with '…'; every other message of pdp quotes input in backticks.
    const message = (e as Error).message
      .replace(/\. To specify a positional argument.*$/s, '')
      .replace(/^Option '(-[^' ]+)(?: <value>)?' argument missing$/, 'option `$1` expects a value')
      .replace(/\. This command does not take positional arguments$/, '; this command takes no positional arguments')
      .replace(/'([^'\n]*)'/g, '`$1`');
    throw new UsageError(message.charAt(0).toLowerCase() + message.slice(1));
  }
}

/**
 * Refuses an empty path, given as an argument or as the value of a flag: `pdp check "$POLICY_DIR"`
 * with the variable unset would otherwise check the current directory (or the default) without a
 * word. (An empty environment variable, such as `PDP_POLICIES=`, is still treated as unset.)
 */
export function refuseEmptyPaths(positionals: readonly string[], flags: Record<string, string | undefined> = {}): void {
  if (positionals.includes('')) throw new UsageError('an empty path argument; name a file or directory (is a variable unset?)');
  for (const [flag, value] of Object.entries(flags)) {
    if (value === '') throw new UsageError(`\`--${flag}\` is empty; name a path (is a variable unset?)`);
  }
}

export function formatOption(value: string | undefined, allowed: readonly string[], fallback: string): string {
  const format = value ?? fallback;
  if (!allowed.includes(format)) throw new UsageError(`--format must be one of ${allowed.map((f) => `\`${f}\``).join(', ')}; got \`${format}\``);
  return format;
}

/** The longest duration any flag accepts unless it names its own bound: 100 years. */
const MAX_ANY_DURATION_MS = 100 * 365 * 86_400_000;

/**
 * Parses durations like `90s`, `30m`, `1h`, `7d` into milliseconds. `max` (ms, with the text shown
 * for it) bounds the value; without it anything over 100 years is refused too, so no flag ever
 * turns into an overflowing timer or a `Retry-After` of 19 digits.
 */
export function parseDuration(text: string, flag: string, max?: { ms: number; text: string }): number {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(text);
  if (!m) throw new UsageError(`${flag} expects a duration like \`30s\`, \`15m\`, \`1h\` or \`7d\`; got \`${text}\``);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
  const ms = Number(m[1]) * unit;
  const limit = max ?? { ms: MAX_ANY_DURATION_MS, text: '100 years' };
  if (!Number.isSafeInteger(ms) || ms > limit.ms) throw new UsageError(`${flag} must be at most ${limit.text}; got \`${text}\``);
  return ms;
}
