// Naming characters an author cannot see: shared by the parser's `invalid-character` errors, the
// identity-pattern check and `pdp token create`, so one invisible character reads the same everywhere.

/** Names of the invisible and look-alike characters an author cannot see in an editor. */
export const CHARACTER_NAMES: Record<number, string> = {
  0x00: 'null', 0x09: 'tab', 0x0b: 'vertical tab', 0x0c: 'form feed', 0x0d: 'carriage return', 0x1b: 'escape', 0x7f: 'delete',
  0xa0: 'no-break space', 0xad: 'soft hyphen', 0x061c: 'arabic letter mark', 0x180e: 'mongolian vowel separator',
  0x200b: 'zero-width space', 0x200c: 'zero-width non-joiner', 0x200d: 'zero-width joiner',
  0x200e: 'left-to-right mark', 0x200f: 'right-to-left mark', 0x2028: 'line separator', 0x2029: 'paragraph separator',
  0x202a: 'left-to-right embedding', 0x202b: 'right-to-left embedding', 0x202c: 'pop directional formatting',
  0x202d: 'left-to-right override', 0x202e: 'right-to-left override', 0x202f: 'narrow no-break space',
  0x2060: 'word joiner', 0x2066: 'left-to-right isolate', 0x2067: 'right-to-left isolate',
  0x2068: 'first strong isolate', 0x2069: 'pop directional isolate', 0x3000: 'ideographic space', 0xfeff: 'byte-order mark',
};

/**
 * How an unexpected character is named in a message: itself in backticks when it is visible,
 * otherwise its code point and name (`U+FEFF (byte-order mark)`), never an invisible character.
 */
export function describeCharacter(ch: string): string {
  if (ch === '\n') return 'newline';
  const cp = ch.codePointAt(0)!;
  const name = CHARACTER_NAMES[cp] ?? (/^[\p{Cc}\p{Cf}\p{Zs}\p{Zl}\p{Zp}\p{Co}\p{Cn}\p{Cs}\p{M}]$/u.test(ch) ? genericName(ch) : undefined);
  if (name === undefined) return `\`${ch}\``;
  return `U+${cp.toString(16).toUpperCase().padStart(4, '0')} (${name})`;
}

function genericName(ch: string): string {
  if (/\p{Cc}/u.test(ch)) return 'control character';
  if (/\p{Cf}/u.test(ch)) return 'format character';
  if (/[\p{Zs}\p{Zl}\p{Zp}]/u.test(ch)) return 'space character';
  if (/\p{M}/u.test(ch)) return 'combining mark';
  if (/\p{Cs}/u.test(ch)) return 'lone surrogate';
  return /\p{Co}/u.test(ch) ? 'private-use character' : 'unassigned character';
}

/**
 * The first character of an identity (or identity pattern) that no identity a caller can present
 * holds, or undefined: whitespace, a control character (Unicode Cc), or an invisible format
 * character (Unicode Cf: zero-width spaces and joiners, bidirectional controls, the soft hyphen,
 * U+180E, the byte-order mark, …). A pattern holding one is a typo that can never match, and one an
 * editor may not show: a deny written with it would silently do nothing.
 */
export function unseenIdentityCharacter(identity: string): { char: string; kind: 'whitespace' | 'control' | 'invisible' } | undefined {
  const m = /[\s\p{Cc}\p{Cf}]/u.exec(identity);
  if (!m) return undefined;
  const char = String.fromCodePoint(m[0].codePointAt(0)!);
  return { char, kind: /\p{Cf}/u.test(char) ? 'invisible' : /\p{Cc}/u.test(char) ? 'control' : 'whitespace' };
}

/**
 * The first character of a *presented* identity (a request's, not a pattern) that would disguise it
 * in the audit log, with its position, or undefined: a control (Unicode Cc: NUL, ESC, DEL, C1), an
 * invisible format character (Cf) or a line or paragraph separator. The `sqlite3` shell prints text
 * only up to a NUL, so `team:ops\u0000-forged` reads as `team:ops`; zero-width and bidi characters make
 * two identities look alike in any viewer. Spaces are not refused here: one is visible in a quoted
 * value and cannot make one identity pass for another. (No pattern can match any of these.)
 */
export function disguisingIdentityCharacter(identity: string): { char: string; index: number } | undefined {
  const m = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.exec(identity);
  return m ? { char: m[0], index: m.index } : undefined;
}

/** Why `identity` is refused, in words (the character named, never printed), or undefined. */
export function disguisedIdentityProblem(identity: string): string | undefined {
  const found = disguisingIdentityCharacter(identity);
  return found && `holds ${describeCharacter(found.char)} at position ${found.index}; identities are printable text without controls, zero-width or bidi characters`;
}
