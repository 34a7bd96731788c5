// The identity-pattern sub-language (policy-language.md, "Identity patterns"):
// exact strings, `*` (no `/`), `**` (anything), `*` alone (any authenticated identity),
// `role:NAME`, and the `{service}` / `{namespace}` placeholders.

import { closest } from '../diagnostics';
import { describeCharacter, unseenIdentityCharacter } from './characters';

export type PatternPart =
  | { kind: 'literal'; text: string }
  | { kind: 'star' }
  | { kind: 'doubleStar' }
  | { kind: 'placeholder'; name: 'service' | 'namespace' };

export type IdentityPattern =
  | { kind: 'exact'; source: string; value: string }
  | { kind: 'anyAuthenticated'; source: string }
  | { kind: 'role'; source: string; role: string }
  | { kind: 'glob'; source: string; parts: PatternPart[]; placeholders: boolean };

export type PatternResult = { ok: true; pattern: IdentityPattern } | { ok: false; message: string; hint?: string };

export const ANONYMOUS = 'anonymous';
export const NAME_RE = /^[A-Za-z0-9._-]{1,253}$/;
const ROLE_NAME_RE = /^[A-Za-z0-9._-]{1,253}$/;
const SPIFFE_TRUST_DOMAIN_RE = /^[a-z0-9._-]+$/;
const SPIFFE_SEGMENT_RE = /^(?:[A-Za-z0-9._-]|\*|\{(?:service|namespace)\})+$/;

// Pure and called by several passes for every identity: memoised (bounded).
const patternCache = new Map<string, PatternResult>();

export function parseIdentityPattern(source: string): PatternResult {
  let result = patternCache.get(source);
  if (result === undefined) {
    if (patternCache.size >= 200_000) patternCache.clear();
    result = parsePatternUncached(source);
    patternCache.set(source, result);
  }
  return result;
}

function parsePatternUncached(source: string): PatternResult {
  if (source.length === 0) return { ok: false, message: 'an identity pattern cannot be empty' };
  if (source === '*') return { ok: true, pattern: { kind: 'anyAuthenticated', source } };
  if (source.startsWith('role:')) {
    const role = source.slice(5);
    if (!ROLE_NAME_RE.test(role)) return { ok: false, message: `invalid role reference \`${source}\``, hint: 'role names use letters, digits, `.`, `_` and `-`' };
    return { ok: true, pattern: { kind: 'role', source, role } };
  }
  // No identity a caller can present holds whitespace, control or invisible format characters
  // (SPIFFE IDs cannot, token identities may not: docs/identity.md), so such a pattern could never
  // match; it is a typo, and an invisible one would let a deny silently do nothing.
  const unseen = unseenIdentityCharacter(source);
  if (unseen?.kind === 'invisible') {
    return { ok: false, message: `an identity pattern cannot contain the invisible character ${describeCharacter(unseen.char)}`, hint: 'remove it (your editor may not show it); no identity holds it, so the pattern would never match' };
  }
  if (unseen) {
    return { ok: false, message: 'an identity pattern cannot contain whitespace or control characters', hint: 'remove them; identities are written without spaces' };
  }
  if (/\*{3,}/.test(source)) return { ok: false, message: `\`***\` in identity pattern \`${source}\` has no meaning`, hint: 'use `*` (one segment) or `**` (any run, `/` included)' };
  // Placeholders first, so a misspelt one reads the same inside a `spiffe://` pattern as elsewhere.
  if (source.includes('{') || source.includes('}')) {
    const placeholder = placeholderError(source);
    if (placeholder) return { ok: false, ...placeholder };
  }
  if (source.startsWith('spiffe://') || /^spiffe:/i.test(source)) {
    const spiffeError = checkSpiffePattern(source);
    if (spiffeError) return { ok: false, ...spiffeError };
  }
  const parts: PatternPart[] = [];
  let literal = '';
  let placeholders = false;
  for (let i = 0; i < source.length; ) {
    const ch = source[i]!;
    if (ch === '*') {
      if (literal) parts.push({ kind: 'literal', text: literal });
      literal = '';
      if (source[i + 1] === '*') { parts.push({ kind: 'doubleStar' }); i += 2; } else { parts.push({ kind: 'star' }); i += 1; }
      continue;
    }
    if (ch === '{') {
      // placeholderError has vouched for every `{…}`: each is `{service}` or `{namespace}`.
      const close = source.indexOf('}', i);
      const name = source.slice(i + 1, close) as 'service' | 'namespace';
      if (literal) parts.push({ kind: 'literal', text: literal });
      literal = '';
      parts.push({ kind: 'placeholder', name });
      placeholders = true;
      i = close + 1;
      continue;
    }
    literal += ch;
    i++;
  }
  if (literal) parts.push({ kind: 'literal', text: literal });
  if (parts.length === 1 && parts[0]!.kind === 'literal') return { ok: true, pattern: { kind: 'exact', source, value: source } };
  return { ok: true, pattern: { kind: 'glob', source, parts, placeholders } };
}

const PLACEHOLDERS = ['service', 'namespace'];

/** The first unclosed `{`, unmatched `}` or unknown `{name}` of a pattern, if any. */
function placeholderError(source: string): { message: string; hint?: string } | undefined {
  for (let i = 0; i < source.length; i++) {
    if (source[i] === '}') return { message: `unmatched \`}\` in identity pattern \`${source}\`` };
    if (source[i] !== '{') continue;
    const close = source.indexOf('}', i);
    if (close < 0) return { message: `unclosed \`{\` in identity pattern \`${source}\``, hint: 'the placeholders are `{service}` and `{namespace}`' };
    const name = source.slice(i + 1, close);
    if (!PLACEHOLDERS.includes(name)) {
      const suggestion = closest(name, PLACEHOLDERS);
      return { message: `unknown placeholder \`{${name}}\` in identity pattern \`${source}\``,
        hint: suggestion ? `did you mean \`{${suggestion}}\`?` : 'the placeholders are `{service}` and `{namespace}`' };
    }
    i = close;
  }
  return undefined;
}

/** A SPIFFE ID (or a pattern of one) must keep the SPIFFE ID grammar: `spiffe://trust-domain/path`. */
function checkSpiffePattern(source: string): { message: string; hint?: string } | undefined {
  const bad = (why: string, hint?: string) => ({ message: `malformed SPIFFE ID \`${source}\`: ${why}`, hint });
  if (!source.startsWith('spiffe://')) return bad('the scheme must be `spiffe://` in lowercase');
  const rest = source.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? '' : rest.slice(slash);
  if (trustDomain.length === 0) return bad('the trust domain is empty', 'write `spiffe://TRUST-DOMAIN/path`');
  if (!SPIFFE_TRUST_DOMAIN_RE.test(trustDomain)) {
    return bad(`the trust domain \`${trustDomain}\` may only hold lowercase letters, digits, \`.\`, \`_\` and \`-\``,
      /[A-Z]/.test(trustDomain) ? `write \`${trustDomain.toLowerCase()}\`` : 'ports, user info and wildcards are not allowed in a trust domain');
  }
  if (/[?#]/.test(path)) return bad('a SPIFFE ID has no query or fragment');
  if (path === '') return undefined;
  if (path.endsWith('/')) return bad('the path ends with `/`', 'remove the trailing `/`');
  for (const segment of path.slice(1).split('/')) {
    if (segment === '') return bad('the path has an empty segment (`//`)');
    if (segment === '.' || segment === '..') return bad('`.` and `..` are not allowed as path segments');
    if (!SPIFFE_SEGMENT_RE.test(segment)) return bad(`the path segment \`${segment}\` may only hold letters, digits, \`.\`, \`_\` and \`-\``);
  }
  return undefined;
}

/** Strict SPIFFE ID (no wildcards, no placeholders), as found in a certificate's URI SAN. */
export function isSpiffeId(value: string): boolean {
  if (!value.startsWith('spiffe://') || /[*{}]/.test(value)) return false;
  return checkSpiffePattern(value) === undefined;
}

export function spiffeTrustDomain(value: string): string | undefined {
  if (!value.startsWith('spiffe://')) return undefined;
  const rest = value.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  return slash < 0 ? rest : rest.slice(0, slash);
}
