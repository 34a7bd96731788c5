// Shared by commands that read policy files: turning PATH arguments into policy sets, and printing
// diagnostics with their source lines.
import fs from 'node:fs';
import path from 'node:path';
import { diagnosticToJson, renderDiagnostic, type Diagnostic } from '../diagnostics';
import { readPolicyDir, type PolicySource } from '../engine';
import { UsageError, type CliIo } from './io';

export interface PolicyInput {
  /** What the user named: a directory, or the loose files given together. */
  label: string;
  /** Directory the rule names are relative to (diagnostics show paths as the user would open them). */
  base: string;
  sources: PolicySource[];
}

/**
 * Each directory is its own policy set; loose files given together form one set (so roles and
 * settings resolve across them).
 */
export function readPolicyInputs(paths: string[], io: CliIo): PolicyInput[] {
  const inputs: PolicyInput[] = [];
  const loose: PolicySource[] = [];
  for (const p of paths) {
    const absolute = path.resolve(io.cwd, p);
    let stat: fs.Stats;
    try {
      stat = fs.statSync(absolute);
    } catch {
      throw new UsageError(`no such file or directory: \`${p}\``);
    }
    if (stat.isDirectory()) {
      const sources = readPolicyDir(absolute);
      if (sources.length === 0) throw new UsageError(`no \`*.hcl\` files in \`${p}\``);
      inputs.push({ label: p, base: p, sources });
    } else {
      loose.push({ path: p, text: fs.readFileSync(absolute, 'utf8') });
    }
  }
  if (loose.length) inputs.push({ label: loose.map((s) => s.path).join(' '), base: '', sources: loose });
  return inputs;
}

/** Paths in diagnostics are shown relative to where the user ran the command. */
export function displayPath(base: string, file: string): string {
  return base ? path.join(base, file) : file;
}

export function withDisplayPaths(input: PolicyInput, diagnostics: Diagnostic[]): Diagnostic[] {
  return diagnostics.map((d) => ({ ...d, span: { ...d.span, file: displayPath(input.base, d.span.file) } }));
}

export function sourceLookup(inputs: PolicyInput[]): (file: string) => string | undefined {
  const map = new Map<string, string>();
  for (const input of inputs) for (const s of input.sources) map.set(displayPath(input.base, s.path), s.text);
  return (file) => map.get(file);
}

export function printDiagnostics(diagnostics: Diagnostic[], inputs: PolicyInput[], io: CliIo): void {
  const lookup = sourceLookup(inputs);
  for (const d of diagnostics) io.stderr.write(`${renderDiagnostic(d, lookup)}\n\n`);
}

export { diagnosticToJson };
