// The moo lexer shared by the grammar (for parsing) and the formatter (for comments).
import moo from 'moo';

// A line break is LF, CRLF or a bare CR (old Mac line endings, a stray CR), as editors and GitHub
// show them: a `#` or `//` comment ends at any of them, and a string may not span one. moo counts
// lines by `\n` only, so text is passed through `normalizeLineBreaks` before it is lexed (a bare CR
// becomes LF, one character for one, so offsets and columns do not move); the patterns below stop
// at `\r` as well, so a caller that forgets cannot have a comment swallow the next line.
export const lexer = moo.compile({
  whitespace: /[ \t]+/,
  newline: { match: /\r\n|\r|\n/, lineBreaks: true },
  comment: /#[^\r\n]*|\/\/[^\r\n]*/,
  blockComment: { match: /\/\*[^]*?\*\//, lineBreaks: true },
  unterminatedComment: { match: /\/\*[^]*/, lineBreaks: true },
  string: /"(?:\\[^\r\n]|[^"\\\r\n])*"/,
  unterminatedString: /"(?:\\[^\r\n]|[^"\\\r\n])*/,
  // Not followed by a letter or a digit: `123abc` is no number, and without the digit here moo would
  // backtrack to `12` and report the `3`.
  number: /-?[0-9]+(?![A-Za-z_0-9])/,
  identifier: {
    match: /[A-Za-z_][A-Za-z0-9_-]*/,
    type: moo.keywords({ kwTrue: 'true', kwFalse: 'false' }),
  },
  lbrace: '{',
  rbrace: '}',
  lbracket: '[',
  rbracket: ']',
  equals: '=',
  comma: ',',
  // A character outside BMP is one invalid token (both halves of its surrogate pair), not two.
  invalid: { match: /[\uD800-\uDBFF][\uDC00-\uDFFF]|[^]/, lineBreaks: true },
});

/** Tokens the grammar never sees. */
export const TRIVIA = new Set(['whitespace', 'newline', 'comment', 'blockComment']);

/** How each token type is named in an error message. */
export const TOKEN_WORDS: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  identifier: 'a name',
  kwTrue: '`true`',
  kwFalse: '`false`',
  lbrace: '`{`',
  rbrace: '`}`',
  lbracket: '`[`',
  rbracket: '`]`',
  equals: '`=`',
  comma: '`,`',
};

/**
 * `text` with every bare CR (one not followed by LF) turned into LF: the same length, so every
 * offset and column is unchanged, and every line break one moo counts. CRLF is left as it is.
 */
export function normalizeLineBreaks(text: string): string {
  return text.includes('\r') ? text.replace(/\r(?!\n)/g, '\n') : text;
}

