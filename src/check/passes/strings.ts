// Strings: no `${` interpolation (it is an error, not a literal) and only the escapes the
// language defines; a `\uXXXX` escape names a Unicode scalar value (a surrogate only as one half
// of a pair).
import { error, type Diagnostic, type Span } from '../../diagnostics';
import type { PolicyFile, StringLiteral } from '../../syntax';
import { allStrings } from '../walk';

/** The span of `length` characters starting `index` characters into the string's raw text. */
function innerSpan(s: StringLiteral, index: number, length: number): Span {
  // +1 for the opening quote; strings never span lines.
  const start = { offset: s.span.start.offset + 1 + index, line: s.span.start.line, column: s.span.start.column + 1 + index };
  return { file: s.span.file, start, end: { offset: start.offset + length, line: start.line, column: start.column + length } };
}

export function checkStrings(files: readonly PolicyFile[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const s of allStrings(files)) {
    const interpolation = s.raw.indexOf('${');
    if (interpolation >= 0) {
      // HCL writes a literal `${` as `$${`; here `${` may not appear at all (the contract), escaped or not.
      const escaped = s.raw[interpolation - 1] === '$';
      out.push(error('interpolation', 'interpolation is not supported', innerSpan(s, escaped ? interpolation - 1 : interpolation, escaped ? 3 : 2),
        escaped
          ? "HCL's `$${` escape is not supported either: a policy string cannot hold `${`"
          : 'policy strings are literal; for the requested service or namespace in an identity, use `{service}` or `{namespace}`'));
    }
    for (const e of escapeErrors(s)) out.push(e);
  }
  return out;
}

/** The `invalid-escape` errors of one string (none when every escape is one the language defines). */
function escapeErrors(s: StringLiteral): Diagnostic[] {
  const out: Diagnostic[] = [];
  if (!s.raw.includes('\\')) return out; // every escape, valid or not, starts with a backslash
  const escape = /\\(u[0-9A-Fa-f]{4}|["\\nt])|\\(u[^"]{0,4}|.?)/g;
  for (let m = escape.exec(s.raw); m; m = escape.exec(s.raw)) {
    if (m[1] !== undefined) {
      if (m[1][0] !== 'u') continue;
      const unit = parseInt(m[1].slice(1), 16);
      if (unit < 0xd800 || unit > 0xdfff) continue;
      // A surrogate is only half a character: a high one must be followed at once by a low one
      // (`\ud83d\ude00`, as in JSON); either one alone is not a Unicode scalar value.
      const next = /^\\u(d[c-f][0-9a-f]{2})/i.exec(s.raw.slice(escape.lastIndex));
      if (unit <= 0xdbff && next) {
        escape.lastIndex += next[0].length;
        continue;
      }
      out.push(error('invalid-escape', `invalid escape \`${m[0]}\`: U+${m[1].slice(1).toUpperCase()} is a surrogate, not a Unicode scalar value`, innerSpan(s, m.index, m[0].length),
        unit <= 0xdbff ? 'a high surrogate must be followed by a low one (`\\uDC00`-`\\uDFFF`), or write the character itself'
          : 'a low surrogate must follow a high one (`\\uD800`-`\\uDBFF`), or write the character itself'));
      continue;
    }
    out.push(error('invalid-escape', `invalid escape \`${m[0]}\``, innerSpan(s, m.index, m[0].length),
      'the escapes are `\\"`, `\\\\`, `\\n`, `\\t` and `\\uXXXX`'));
  }
  return out;
}

/**
 * Whether a string has an escape the language does not define. Its decoded value then keeps the
 * escape as written (`\u{41}`), so another pass reading it as an identity would report a second,
 * confusing error (`unknown placeholder {41}`) for the same mistake: such passes skip it.
 */
export function hasInvalidEscape(s: StringLiteral): boolean {
  return s.raw.includes('\\') && escapeErrors(s).length > 0;
}
