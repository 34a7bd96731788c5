// Identity patterns → matchers, compiled once per policy version.
// Wildcards never match `anonymous`: only a rule that names `anonymous` exactly grants to it.
// The identity comes from the caller, so matching must stay linear: a pattern with one wildcard
// becomes a regular expression (which cannot backtrack badly with a single star); anything else
// runs through a set-of-states simulation, O(identity length × pattern length).
import { ANONYMOUS, type IdentityPattern, type PatternPart } from '../syntax';
import type { IdentityMatcher } from './model';

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

export function compileMatcher(pattern: IdentityPattern): IdentityMatcher {
  const source = pattern.source;
  switch (pattern.kind) {
    case 'exact':
      return { source, usesService: false, test: (identity) => identity === pattern.value };
    case 'anyAuthenticated':
      return { source, usesService: false, test: (identity) => identity !== ANONYMOUS };
    case 'role':
      // Roles are expanded before matchers are built; an unexpanded role matches nothing.
      return { source, usesService: false, test: () => false };
    case 'glob': {
      const usesService = pattern.parts.some((p) => p.kind === 'placeholder' && p.name === 'service');
      const wildcards = pattern.parts.filter((p) => p.kind === 'star' || p.kind === 'doubleStar').length;
      if (!pattern.placeholders && wildcards <= 1) {
        const re = new RegExp(`^${pattern.parts.map(partToRegExp).join('')}$`, 's');
        return { source, usesService, test: (identity) => identity !== ANONYMOUS && re.test(identity) };
      }
      const parts = pattern.parts;
      const fixed = pattern.placeholders ? undefined : toTokens(parts, undefined, '');
      return {
        source,
        usesService,
        test: (identity, service, namespace) => {
          if (identity === ANONYMOUS) return false;
          const tokens = fixed ?? toTokens(parts, service, namespace);
          return tokens !== undefined && simulate(tokens, identity);
        },
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

const STAR = -1;
const DOUBLE_STAR = -2;

/** Pattern → one token per character (its char code) or wildcard; undefined if a placeholder has no value. */
function toTokens(parts: PatternPart[], service: string | undefined, namespace: string): Int32Array | undefined {
  const out: number[] = [];
  for (const part of parts) {
    if (part.kind === 'star') out.push(STAR);
    else if (part.kind === 'doubleStar') out.push(DOUBLE_STAR);
    else {
      const text = part.kind === 'literal' ? part.text : part.name === 'service' ? service : namespace;
      if (text === undefined) return undefined;
      for (let i = 0; i < text.length; i++) out.push(text.charCodeAt(i));
    }
  }
  return Int32Array.from(out);
}

const SLASH = '/'.charCodeAt(0);

/** Thompson-style simulation: `active[j]` says the first j tokens can match the text read so far. */
function simulate(tokens: Int32Array, text: string): boolean {
  const m = tokens.length;
  let active = new Uint8Array(m + 1);
  let next = new Uint8Array(m + 1);
  const closeOver = (states: Uint8Array) => {
    // A wildcard may match the empty run.
    for (let j = 0; j < m; j++) if (states[j] && tokens[j]! < 0) states[j + 1] = 1;
  };
  active[0] = 1;
  closeOver(active);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    next.fill(0);
    let any = false;
    for (let j = 0; j < m; j++) {
      if (!active[j]) continue;
      const t = tokens[j]!;
      if (t === DOUBLE_STAR || (t === STAR && c !== SLASH)) { next[j] = 1; any = true; }
      else if (t === c) { next[j + 1] = 1; any = true; }
    }
    if (!any) return false;
    closeOver(next);
    [active, next] = [next, active];
  }
  return active[m] === 1;
}
