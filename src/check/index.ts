// Named check passes over the parsed policy set. Each returns diagnostics and never mutates the AST.
import { sortDiagnostics, type Diagnostic } from '../diagnostics';
import type { PolicyFile } from '../syntax';
import { applyAcknowledgements, type Acknowledged } from './acknowledge';
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
  return checkPolicySetAcknowledging(files, passes).diagnostics;
}

/**
 * The passes' diagnostics, less the lint warnings a `# pdp:allow CODE -- why` comment acknowledges
 * (returned apart, with their reasons). Acknowledgements are read only when the lint pass runs.
 */
export function checkPolicySetAcknowledging(files: readonly PolicyFile[], passes: readonly CheckPass[] = PASSES): { diagnostics: Diagnostic[]; acknowledged: Acknowledged[] } {
  const found = passes.flatMap((pass) => pass.run(files));
  if (!passes.some((p) => p.name === 'lint')) return { diagnostics: sortDiagnostics(found), acknowledged: [] };
  const { diagnostics, acknowledged } = applyAcknowledgements(files, found);
  return { diagnostics: sortDiagnostics(diagnostics), acknowledged };
}

export * from './schema';
export { LINT_CODES, type LintCode } from './passes/lint';
export { ACKNOWLEDGEMENT_CODES, type Acknowledged } from './acknowledge';
