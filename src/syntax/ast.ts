// The syntax tree of a policy file. Every node carries the span it was parsed from; later stages
// read it and never mutate it.
import type { Span } from '../diagnostics';

export interface Identifier {
  kind: 'identifier';
  name: string;
  span: Span;
}

export interface StringLiteral {
  kind: 'string';
  /** The decoded value (escapes resolved). */
  value: string;
  /** The text between the quotes, exactly as written. */
  raw: string;
  span: Span;
}

export interface NumberLiteral {
  kind: 'number';
  value: number;
  raw: string;
  span: Span;
}

export interface BooleanLiteral {
  kind: 'boolean';
  value: boolean;
  span: Span;
}

export interface ListLiteral {
  kind: 'list';
  items: Value[];
  span: Span;
}

export type Value = StringLiteral | NumberLiteral | BooleanLiteral | ListLiteral;

export interface Attribute {
  kind: 'attribute';
  name: Identifier;
  value: Value;
  span: Span;
}

export interface Block {
  kind: 'block';
  type: Identifier;
  label: StringLiteral | null;
  body: BodyItem[];
  span: Span;
}

export type BodyItem = Block | Attribute;

export type CommentStyle = 'hash' | 'slash' | 'block';

export interface Comment {
  kind: 'comment';
  style: CommentStyle;
  /** The comment exactly as written, delimiters included. */
  text: string;
  span: Span;
}

export interface PolicyFile {
  kind: 'file';
  /** The path diagnostics and rule identities use (relative to the policy directory when loaded as a set). */
  path: string;
  body: BodyItem[];
  comments: Comment[];
  span: Span;
}
