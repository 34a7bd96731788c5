// Identity patterns → matchers, compiled once per policy version.
// Wildcards never match `anonymous`: only a rule that names `anonymous` exactly grants to it.
import { ANONYMOUS, type IdentityPattern, type PatternPart } from '../syntax';
import type { IdentityMatcher } from './model';

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

export function compileMatcher(pattern: IdentityPattern): IdentityMatcher {
  const source = pattern.source;
  switch (pattern.kind) {
    case 'exact':
      return { source, test: (identity) => identity === pattern.value };
    case 'anyAuthenticated':
      return { source, test: (identity) => identity !== ANONYMOUS };
    case 'role':
      // Roles are expanded before matchers are built; an unexpanded role matches nothing.
      return { source, test: () => false };
    case 'glob': {
      if (!pattern.placeholders) {
        const re = new RegExp(`^${pattern.parts.map(partToRegExp).join('')}$`, 's');
        return { source, test: (identity) => identity !== ANONYMOUS && re.test(identity) };
      }
      const parts = pattern.parts;
      return {
        source,
        test: (identity, service, namespace) => identity !== ANONYMOUS && matchParts(parts, 0, identity, 0, service, namespace),
      };
    }
  }
}

function partToRegExp(part: PatternPart): string {
  switch (part.kind) {
    case 'literal': return escapeRegExp(part.text);
    case 'star': return '[^/]*';
    case 'doubleStar': return '.*';
    case 'placeholder': throw new Error('placeholders are matched without a regular expression');
  }
}

/** Backtracking glob match with `{service}`/`{namespace}` substituted by the request's values. */
function matchParts(parts: PatternPart[], i: number, text: string, pos: number, service: string | undefined, namespace: string): boolean {
  if (i === parts.length) return pos === text.length;
  const part = parts[i]!;
  switch (part.kind) {
    case 'literal':
      return text.startsWith(part.text, pos) && matchParts(parts, i + 1, text, pos + part.text.length, service, namespace);
    case 'placeholder': {
      const value = part.name === 'service' ? service : namespace;
      return value !== undefined && text.startsWith(value, pos) && matchParts(parts, i + 1, text, pos + value.length, service, namespace);
    }
    case 'star': {
      const slash = text.indexOf('/', pos);
      const limit = slash < 0 ? text.length : slash;
      for (let end = limit; end >= pos; end--) if (matchParts(parts, i + 1, text, end, service, namespace)) return true;
      return false;
    }
    case 'doubleStar':
      for (let end = text.length; end >= pos; end--) if (matchParts(parts, i + 1, text, end, service, namespace)) return true;
      return false;
  }
}
