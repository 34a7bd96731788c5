// `pdp fmt [PATH…] [--check] [--diff] [--format text|json]`: rewrites policy files in the canonical
// layout (docs/fmt.md). Files are only written when their text changes, through a temporary file in
// the same directory and a rename, so a crash never leaves a half-written policy behind.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { diagnosticToJson, error, renderDiagnostic, sortDiagnostics, type Diagnostic } from '../diagnostics';
import { errnoText, listPolicyFiles, readPolicyFile, type ListedFile, type PolicySource } from '../engine';
import { formatPolicy } from '../fmt/format';
import { formatOption, parse, refuseEmptyPaths } from './args';
import { EXIT_FINDING, EXIT_OK, UsageError, type Command } from './io';
import { policyPathError } from './policy-input';

export const HELP = `usage: pdp fmt [PATH…] [--check] [--diff] [--format text|json]

Rewrites policy files in the canonical layout (see docs/fmt.md). Each PATH is a file or a
directory; directories are searched recursively for \`*.hcl\` files, in sorted order. With no
PATH: $PDP_POLICIES, or ./policies.

Only files whose text changes are written (the names of those files are printed). A file with
syntax errors is never rewritten: its errors are printed on stderr.

  --check           write nothing; print the files that are not formatted; exit 1 if any
  --diff            print a unified diff of each change instead of the file names
  --format FORMAT   text (default) or json: {"changed": [...], "errors": [...]}

Exit codes: 0 all files formatted (with --check: all already formatted), 1 syntax errors, a file
that could not be read or written, or with --check a file that is not formatted, 2 bad usage, a
PATH that does not exist or is empty, or a directory with no \`*.hcl\` files.
`;

interface PolicyFileRef {
  /** The path as shown to the user (relative to where the command runs, as they named it). */
  display: string;
  absolute: string;
  /** A path that could not be used (a dangling link, an unlistable directory). */
  problem?: PolicySource;
}

export const run: Command = async (args, io) => {
  const { values, positionals } = parse(args, { check: { type: 'boolean' }, diff: { type: 'boolean' }, format: { type: 'string' } });
  refuseEmptyPaths(positionals);
  const format = formatOption(values.format, ['text', 'json'], 'text');
  const check = values.check === true;
  const diff = values.diff === true;
  if (diff && format === 'json') throw new UsageError('`--diff` cannot be combined with `--format json`');
  const paths = positionals.length ? positionals : [io.env.PDP_POLICIES || 'policies'];
  const files = policyFiles(paths, io.cwd);

  const changed: string[] = [];
  const errors: Diagnostic[] = [];
  const sources = new Map<string, string>();
  for (const file of files) {
    const source = file.problem ?? readPolicyFile(file.absolute, file.display);
    if (source.problem) {
      // Unreadable or not UTF-8: reported, and never rewritten (a rewrite would lose the bytes). An
      // unreadable file has no text to show under its diagnostic (as in `pdp check`).
      if (source.problem.code !== 'read-error') sources.set(file.display, source.text);
      errors.push(source.problem);
      continue;
    }
    const text = source.text;
    const result = formatPolicy(text, file.display);
    if (!result.ok) {
      sources.set(file.display, text);
      for (const d of sortDiagnostics(result.diagnostics)) errors.push(d);
      continue;
    }
    // The canonical form has no byte-order mark: a file that starts with one is rewritten without it.
    if (result.output === text && !source.bom) continue;
    if (!check) {
      try {
        writeAtomically(file.absolute, result.output);
      } catch (e) {
        errors.push(fileError('write-error', `cannot write \`${file.display}\`: ${errnoText(e)}`, file.display));
        continue;
      }
    }
    changed.push(file.display);
    if (diff && format === 'text') io.stdout.write(unifiedDiff(file.display, source.bom ? `\uFEFF${text}` : text, result.output));
  }

  if (format === 'json') {
    io.stdout.write(`${JSON.stringify({ changed, errors: errors.map(diagnosticToJson) }, null, 2)}\n`);
  } else {
    if (!diff) for (const name of changed) io.stdout.write(`${name}\n`);
    for (const d of errors) io.stderr.write(`${renderDiagnostic(d, (f) => sources.get(f))}\n\n`);
    const failed = new Set(errors.map((d) => d.span.file)).size;
    if (failed) io.stderr.write(`fmt: ${failed} file${failed === 1 ? '' : 's'} left unformatted because of errors\n`);
  }
  return errors.length > 0 || (check && changed.length > 0) ? EXIT_FINDING : EXIT_OK;
};

function fileError(code: string, message: string, file: string): Diagnostic {
  const start = { offset: 0, line: 1, column: 1 };
  return error(code, message, { file, start, end: start });
}

/**
 * The files PATHs name, in order, each once. A directory contributes its `*.hcl` files as a policy
 * set is loaded (engine/files.ts: recursively, sorted, symbolic links within it followed, `.` names skipped).
 * A file named explicitly is formatted whatever its name.
 */
export function policyFiles(paths: string[], cwd: string): PolicyFileRef[] {
  const out: PolicyFileRef[] = [];
  const seen = new Set<string>();
  const add = (display: string, absolute: string, problem?: PolicySource) => {
    let real = absolute;
    try {
      real = fs.realpathSync(absolute);
    } catch {
      // reading it reports why
    }
    if (seen.has(real)) return;
    seen.add(real);
    out.push(problem ? { display, absolute, problem: { ...problem, problem: problem.problem && { ...problem.problem, span: { ...problem.problem.span, file: display } } } } : { display, absolute });
  };
  for (const p of paths) {
    const absolute = path.resolve(cwd, p);
    let stat: fs.Stats;
    try {
      stat = fs.statSync(absolute);
    } catch (e) {
      throw policyPathError(p, e);
    }
    if (!stat.isDirectory()) {
      add(p, absolute);
      continue;
    }
    let listed: ListedFile[];
    try {
      listed = listPolicyFiles(absolute);
    } catch (e) {
      throw policyPathError(p, e);
    }
    // As check and test say: a mistyped directory in `pdp fmt --check` in CI must not pass silently.
    if (listed.length === 0) throw new UsageError(`no \`*.hcl\` files in \`${p}\``);
    for (const f of listed) add(path.join(p, f.rel), f.absolute, f.problem);
  }
  return out;
}

/**
 * Replaces a file's contents all at once: the text goes to a temporary file next to it (same
 * directory, so the rename cannot cross file systems; not named `*.hcl`, so a policy loader never
 * reads it), which then takes the file's place. Keeps the file's permissions and, where it may (as
 * root), its owner, and writes through a symbolic link to its target rather than replacing the link.
 * A file the user may not write is refused (EACCES), as writing it in place would be: a rename needs
 * only the directory, and would have replaced a read-only file with one the user owns.
 */
export function writeAtomically(file: string, text: string): void {
  const target = fs.realpathSync(file);
  const stat = fs.statSync(target);
  const mode = stat.mode & 0o7777;
  fs.accessSync(target, fs.constants.W_OK);
  const temp = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const fd = fs.openSync(temp, 'wx', mode);
    try {
      fs.writeFileSync(fd, text);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (process.getuid?.() === 0 && (stat.uid !== 0 || stat.gid !== 0)) fs.chownSync(temp, stat.uid, stat.gid);
    fs.chmodSync(temp, mode);
    fs.renameSync(temp, target);
  } catch (e) {
    fs.rmSync(temp, { force: true });
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Unified diffs (for --diff), by Myers' algorithm over lines.

const CONTEXT = 3;
const NO_NEWLINE = '\\ No newline at end of file';

interface Line {
  text: string;
  /** The file's last line, with no newline after it. */
  unterminated: boolean;
}

function splitLines(text: string): Line[] {
  if (text === '') return [];
  const parts = text.split('\n');
  const terminated = parts[parts.length - 1] === '';
  if (terminated) parts.pop();
  return parts.map((t, i) => ({ text: t, unterminated: !terminated && i === parts.length - 1 }));
}

type Op = { kind: ' ' | '-' | '+'; line: Line };

/** The edit script from `a` to `b`, or null when it would take more than `limit` edits to find. */
function editScript(a: Line[], b: Line[], limit: number): Op[] | null {
  const same = (x: Line, y: Line) => x.text === y.text && x.unterminated === y.unterminated;
  const n = a.length;
  const m = b.length;
  const max = Math.min(n + m, limit);
  const offset = max + 1;
  const v = new Int32Array(2 * max + 3);
  const trace: Int32Array[] = [];
  for (let d = 0; d <= max; d++) {
    trace.push(v.slice());
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && v[offset + k - 1]! < v[offset + k + 1]!) ? v[offset + k + 1]! : v[offset + k - 1]! + 1;
      let y = x - k;
      while (x < n && y < m && same(a[x]!, b[y]!)) {
        x++;
        y++;
      }
      v[offset + k] = x;
      if (x >= n && y >= m) return backtrack(trace, a, b, offset);
    }
  }
  return null;
}

function backtrack(trace: Int32Array[], a: Line[], b: Line[], offset: number): Op[] {
  const ops: Op[] = [];
  let x = a.length;
  let y = b.length;
  for (let d = trace.length - 1; d >= 0; d--) {
    const v = trace[d]!;
    const k = x - y;
    const prevK = k === -d || (k !== d && v[offset + k - 1]! < v[offset + k + 1]!) ? k + 1 : k - 1;
    const prevX = v[offset + prevK]!;
    const prevY = prevX - prevK;
    while (x > prevX && y > prevY) {
      ops.push({ kind: ' ', line: a[--x]! });
      y--;
    }
    if (d > 0) {
      if (x === prevX) ops.push({ kind: '+', line: b[--y]! });
      else ops.push({ kind: '-', line: a[--x]! });
    }
  }
  return ops.reverse();
}

export function unifiedDiff(file: string, before: string, after: string): string {
  const a = splitLines(before);
  const b = splitLines(after);
  const ops =
    editScript(a, b, 1000) ?? [...a.map((line) => ({ kind: '-' as const, line })), ...b.map((line) => ({ kind: '+' as const, line }))];
  const out = [`--- a/${file}`, `+++ b/${file}`];
  // Positions (1-based) in each file before every op.
  const oldAt: number[] = [];
  const newAt: number[] = [];
  let oldLine = 1;
  let newLine = 1;
  for (const op of ops) {
    oldAt.push(oldLine);
    newAt.push(newLine);
    if (op.kind !== '+') oldLine++;
    if (op.kind !== '-') newLine++;
  }
  let i = 0;
  while (i < ops.length) {
    if (ops[i]!.kind === ' ') {
      i++;
      continue;
    }
    // A hunk: from CONTEXT lines before this change to CONTEXT lines after the last change that is
    // no more than 2 * CONTEXT unchanged lines away from the one before it.
    const start = Math.max(0, i - CONTEXT);
    let end = i;
    let j = i;
    while (j < ops.length) {
      if (ops[j]!.kind !== ' ') {
        end = j;
        j++;
        continue;
      }
      let run = j;
      while (run < ops.length && ops[run]!.kind === ' ') run++;
      if (run < ops.length && run - j <= 2 * CONTEXT) j = run;
      else break;
    }
    const stop = Math.min(ops.length, end + 1 + CONTEXT);
    const hunk = ops.slice(start, stop);
    const oldCount = hunk.filter((op) => op.kind !== '+').length;
    const newCount = hunk.filter((op) => op.kind !== '-').length;
    const oldStart = oldCount ? oldAt[start]! : oldAt[start]! - 1;
    const newStart = newCount ? newAt[start]! : newAt[start]! - 1;
    out.push(`@@ -${oldStart},${oldCount} +${newStart},${newCount} @@`);
    for (const op of hunk) {
      out.push(`${op.kind}${op.line.text}`);
      if (op.line.unterminated) out.push(NO_NEWLINE);
    }
    i = stop;
  }
  return `${out.join('\n')}\n`;
}
