// References: every `role:NAME` names a role defined somewhere in the policy set.
import { closest, error, type Diagnostic } from '../../diagnostics';
import { parseIdentityPattern, type PolicyFile } from '../../syntax';
import { blocks, identityStrings } from '../walk';

export function checkReferences(files: readonly PolicyFile[]): Diagnostic[] {
  const roles = new Set<string>();
  for (const { block, parent } of blocks(files)) {
    if (block.type.name === 'role' && !parent && block.label) roles.add(block.label.value);
  }
  const out: Diagnostic[] = [];
  for (const { block } of blocks(files)) {
    if (block.type.name === 'role') continue;
    for (const s of identityStrings(block)) {
      if (!s.value.startsWith('role:')) continue; // only a `role:` string parses to a role reference
      const parsed = parseIdentityPattern(s.value);
      if (parsed.ok && parsed.pattern.kind === 'role' && !roles.has(parsed.pattern.role)) {
        const suggestion = closest(parsed.pattern.role, roles);
        out.push(error('undefined-role', `role \`${parsed.pattern.role}\` is not defined`, s.span,
          suggestion ? `did you mean \`role:${suggestion}\`?` : `define it with \`role "${parsed.pattern.role}" { identities = [...] }\``));
      }
    }
  }
  return out;
}
