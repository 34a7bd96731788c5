// Named check passes over the parsed policy set. Each returns diagnostics and never mutates the AST.
import { sortDiagnostics, type Diagnostic } from '../diagnostics';
import type { PolicyFile } from '../syntax';
import { checkLint } from './passes/lint';
import { checkReferences } from './passes/references';
import { checkStrings } from './passes/strings';
import { checkStructure } from './passes/structure';
import { checkValues } from './passes/values';

export interface CheckPass {
  name: string;
  run(files: readonly PolicyFile[]): Diagnostic[];
}

export const PASSES: readonly CheckPass[] = [
  { name: 'structure', run: checkStructure },
  { name: 'strings', run: checkStrings },
  { name: 'values', run: checkValues },
  { name: 'references', run: checkReferences },
  { name: 'lint', run: checkLint },
];

/** The passes that find errors; loading for serving needs only these (lint adds warnings). */
export const ERROR_PASSES: readonly CheckPass[] = PASSES.filter((p) => p.name !== 'lint');

export function checkPolicySet(files: readonly PolicyFile[], passes: readonly CheckPass[] = PASSES): Diagnostic[] {
  return sortDiagnostics(passes.flatMap((pass) => pass.run(files)));
}

export * from './schema';
export { LINT_CODES, type LintCode } from './passes/lint';
