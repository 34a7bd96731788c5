// The moo lexer shared by the grammar (for parsing) and the formatter (for comments).
import moo from 'moo';

export const lexer = moo.compile({
  whitespace: /[ \t\r]+/,
  newline: { match: /\n/, lineBreaks: true },
  comment: /#[^\n]*|\/\/[^\n]*/,
  blockComment: { match: /\/\*[^]*?\*\//, lineBreaks: true },
  unterminatedComment: { match: /\/\*[^]*/, lineBreaks: true },
  string: /"(?:\\[^\n]|[^"\\\n])*"/,
  unterminatedString: /"(?:\\[^\n]|[^"\\\n])*/,
  number: /-?[0-9]+(?![A-Za-z_])/,
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
