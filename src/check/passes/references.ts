// References: every `role:NAME` names a role defined somewhere in the policy set, and an `api` block
// never reaches `{service}`/`{namespace}` through a role (they have no meaning for a caller of the PDP).
import { closest, error, type Diagnostic } from '../../diagnostics';
import { parseIdentityPattern, type PolicyFile } from '../../syntax';
import { blocks, identityStrings } from '../walk';

export function checkReferences(files: readonly PolicyFile[]): Diagnostic[] {
  const roles = new Set<string>();
  /** Roles with a member that uses `{service}` or `{namespace}`. */
  const placeholderRoles = new Set<string>();
  for (const { block, parent } of blocks(files)) {
    if (block.type.name === 'role' && !parent && block.label) {
      roles.add(block.label.value);
      for (const s of identityStrings(block)) {
        const member = parseIdentityPattern(s.value);
        if (member.ok && member.pattern.kind === 'glob' && member.pattern.placeholders) placeholderRoles.add(block.label.value);
      }
    }
  }
  const out: Diagnostic[] = [];
  for (const { block } of blocks(files)) {
    if (block.type.name === 'role') continue;
    for (const s of identityStrings(block)) {
      if (!s.value.startsWith('role:')) continue; // only a `role:` string parses to a role reference
      const parsed = parseIdentityPattern(s.value);
      if (parsed.ok && parsed.pattern.kind === 'role' && block.type.name === 'api' && placeholderRoles.has(parsed.pattern.role)) {
        out.push(error('invalid-identity', `role \`${parsed.pattern.role}\` has members with \`{service}\` or \`{namespace}\`, which have no meaning in an \`api\` block`, s.span,
          'name the callers directly here, or use a role whose members have no placeholders'));
      }
      if (parsed.ok && parsed.pattern.kind === 'role' && !roles.has(parsed.pattern.role)) {
        const suggestion = closest(parsed.pattern.role, roles);
        out.push(error('undefined-role', `role \`${parsed.pattern.role}\` is not defined`, s.span,
          suggestion ? `did you mean \`role:${suggestion}\`?` : `define it with \`role "${parsed.pattern.role}" { identities = [...] }\``));
      }
    }
  }
  return out;
}
