// Shared by commands that read policy files: turning PATH arguments into policy sets, and printing
// diagnostics with their source lines.
import fs from 'node:fs';
import path from 'node:path';
import { diagnosticToJson, quote, renderDiagnostic, type Diagnostic } from '../diagnostics';
import { errnoWords, readPolicyDir, readPolicyFile, type PolicySource } from '../engine';
import { UsageError, type CliIo } from './io';

export interface PolicyInput {
  /** What the user named: a directory, or the loose files given together. */
  label: string;
  /** Directory the rule names are relative to (diagnostics show paths as the user would open them). */
  base: string;
  sources: PolicySource[];
}

/**
 * Why a policy path the user named (an argument, `--policies`) cannot be used: one wording for every
 * command, naming the path as it was typed and the reason in words. `given` is that text.
 */
export function policyPathProblem(given: string, e: unknown): string {
  return `cannot read ${quote(given)}: ${errnoWords(e)}`;
}

export function policyPathError(given: string, e: unknown): UsageError {
  return new UsageError(policyPathProblem(given, e));
}

/**
 * The policy set in the directory a flag names (`--policies` of eval, serve and `check --replay`),
 * read; `given` is the flag's text, resolved against the working directory. A path that cannot be
 * read is bad usage, worded as readPolicyInputs words it; an empty set is left to the caller, as
 * the commands treat it differently.
 */
export function readPolicyDirectory(given: string, io: CliIo): PolicySource[] {
  try {
    return readPolicyDir(path.resolve(io.cwd, given));
  } catch (e) {
    const notDir = (e as NodeJS.ErrnoException).code === 'ENOTDIR';
    // eval and serve decide with one set, which is a directory; check and test also take files.
    throw new UsageError(`${policyPathProblem(given, e)}${notDir ? '; --policies names a directory of `*.hcl` files' : ''}`);
  }
}

/**
 * Each directory is its own policy set; loose files given together form one set (so roles and
 * settings resolve across them), read in sorted path order as a directory's files are.
 */
export function readPolicyInputs(paths: string[], io: CliIo): PolicyInput[] {
  const inputs: PolicyInput[] = [];
  const loose: PolicySource[] = [];
  // A path named twice (or two names for one file, as overlapping shell globs give) is read once:
  // reading a file twice would report its own blocks as duplicates of themselves.
  const seen = new Set<string>();
  for (const p of paths) {
    const absolute = path.resolve(io.cwd, p);
    let stat: fs.Stats;
    try {
      stat = fs.statSync(absolute);
    } catch (e) {
      throw policyPathError(p, e);
    }
    const real = fs.realpathSync(absolute);
    if (seen.has(real)) continue;
    seen.add(real);
    if (stat.isDirectory()) {
      let sources: PolicySource[];
      try {
        sources = readPolicyDir(absolute);
      } catch (e) {
        throw policyPathError(p, e);
      }
      if (sources.length === 0) throw new UsageError(`no \`*.hcl\` files in \`${p}\``);
      inputs.push({ label: p, base: p, sources });
    } else {
      loose.push(readPolicyFile(absolute, p));
    }
  }
  // The contract reads a set's files in sorted path order, whatever order they were named in: it
  // decides which of two equally specific rules is cited and which `settings` block is the second.
  loose.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  if (loose.length) inputs.push({ label: loose.map((s) => s.path).join(' '), base: '', sources: loose });
  return inputs;
}

/** Paths in diagnostics are shown relative to where the user ran the command. */
export function displayPath(base: string, file: string): string {
  return base ? path.join(base, file) : file;
}

export function withDisplayPaths(input: PolicyInput, diagnostics: Diagnostic[]): Diagnostic[] {
  return diagnostics.map((d) => ({
    ...d,
    message: withDisplayLocations(input, d.message),
    ...(d.hint === undefined ? {} : { hint: withDisplayLocations(input, d.hint) }),
    span: { ...d.span, file: displayPath(input.base, d.span.file) },
  }));
}

const setFiles = new WeakMap<PolicyInput, Set<string>>();

/**
 * `text` (a diagnostic's message or hint, a decision's reason) with every `file:line` that names a
 * file of the set written as displayPath writes it, so that the location in a hint (`the first is
 * at a.hcl:1`) can be opened from where the command ran, like the primary location. The engine
 * names files relative to the policy set (rule ids, the server's and the audit log's reasons keep
 * that form); only the CLI's text is rewritten here. A quoted location starts the text or follows a
 * space, `(` or a backtick, and its file is one of the set's (a name with a space in it is left as is).
 */
export function withDisplayLocations(input: PolicyInput, text: string): string {
  if (!input.base || !text.includes('.hcl:')) return text;
  let files = setFiles.get(input);
  if (!files) setFiles.set(input, (files = new Set(input.sources.map((s) => s.path))));
  const known = files;
  return text.replace(/(^|[\s(`])([^\s(`:]+\.hcl):(?=\d)/g, (m, before: string, file: string) => (known.has(file) ? `${before}${displayPath(input.base, file)}:` : m));
}

export function sourceLookup(inputs: PolicyInput[]): (file: string) => string | undefined {
  const map = new Map<string, string>();
  for (const input of inputs) {
    for (const s of input.sources) {
      // An unreadable file has no text to show under its diagnostic.
      if (s.problem?.code !== 'read-error') map.set(displayPath(input.base, s.path), s.text);
    }
  }
  return (file) => map.get(file);
}

export function printDiagnostics(diagnostics: Diagnostic[], inputs: PolicyInput[], io: CliIo): void {
  const lookup = sourceLookup(inputs);
  for (const d of diagnostics) io.stderr.write(`${renderDiagnostic(d, lookup)}\n\n`);
}

/**
 * Why a command that decides with the set a `--policies` flag names (eval, serve) stops: the set's
 * diagnostics, then one line naming the set as the user typed it (`given`) and what the command does
 * instead (`then`), so that every path and the name read as they were written.
 */
export function printSetErrors(command: string, given: string, sources: PolicySource[], diagnostics: Diagnostic[], then: string, io: CliIo): void {
  const input: PolicyInput = { label: given, base: given, sources };
  printDiagnostics(withDisplayPaths(input, diagnostics), [input], io);
  io.stderr.write(`pdp ${command}: the policy set in ${quote(given)} has errors; ${then}\n`);
}

export { diagnosticToJson };
