// AST constructors used by the grammar's postprocessors. The file name comes from the parse in
// progress (parsing is synchronous, so one module-level slot is enough).
import type { Position, Span } from '../diagnostics';
import type { Attribute, Block, BodyItem, BooleanLiteral, Identifier, ListLiteral, NumberLiteral, StringLiteral, Value } from './ast';

export interface Token {
  type?: string;
  value: string;
  text: string;
  offset: number;
  line: number;
  col: number;
  lineBreaks: number;
}

let currentFile = '<input>';

export function setCurrentFile(file: string): void {
  currentFile = file;
}

export function startOf(token: Token): Position {
  return { offset: token.offset, line: token.line, column: token.col };
}

/** The position just after a token (tokens that reach here never span lines, except block comments). */
export function endOf(token: Token): Position {
  if (token.lineBreaks === 0) return { offset: token.offset + token.text.length, line: token.line, column: token.col + token.text.length };
  const lastBreak = token.text.lastIndexOf('\n');
  return {
    offset: token.offset + token.text.length,
    line: token.line + token.lineBreaks,
    column: token.text.length - lastBreak,
  };
}

export function tokenSpan(token: Token, file = currentFile): Span {
  return { file, start: startOf(token), end: endOf(token) };
}

function join(a: Span, b: Span): Span {
  return { file: a.file, start: a.start, end: b.end };
}

export function identifier(token: Token): Identifier {
  return { kind: 'identifier', name: token.text, span: tokenSpan(token) };
}

/** Decodes `\" \\ \n \t \uXXXX`; anything else is left as written (the check reports it). */
export function decodeString(raw: string): string {
  return raw.replace(/\\(u[0-9A-Fa-f]{4}|.)/g, (whole, esc: string) => {
    switch (esc[0]) {
      case '"': return '"';
      case '\\': return '\\';
      case 'n': return '\n';
      case 't': return '\t';
      case 'u': return esc.length === 5 ? String.fromCharCode(parseInt(esc.slice(1), 16)) : whole;
      default: return whole;
    }
  });
}

export function stringLiteral(token: Token): StringLiteral {
  const raw = token.text.slice(1, -1);
  return { kind: 'string', value: decodeString(raw), raw, span: tokenSpan(token) };
}

export function numberLiteral(token: Token): NumberLiteral {
  return { kind: 'number', value: Number(token.text), raw: token.text, span: tokenSpan(token) };
}

export function booleanLiteral(token: Token): BooleanLiteral {
  return { kind: 'boolean', value: token.text === 'true', span: tokenSpan(token) };
}

export function listLiteral(open: Token, items: Value[], close: Token): ListLiteral {
  return { kind: 'list', items, span: join(tokenSpan(open), tokenSpan(close)) };
}

export function attribute(name: Token, value: Value): Attribute {
  const id = identifier(name);
  return { kind: 'attribute', name: id, value, span: join(id.span, value.span) };
}

export function block(type: Token, label: StringLiteral | null, body: BodyItem[], close: Token): Block {
  const id = identifier(type);
  return { kind: 'block', type: id, label, body, span: join(id.span, tokenSpan(close)) };
}
