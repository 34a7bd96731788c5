// A recursive-descent recogniser for grammar/policy.ne that builds the AST with the same
// constructors as the grammar's postprocessors, used before nearley on every token run.
//
// Why: nearley's Earley chart costs tens of microseconds per rule, and almost every policy file is
// valid. The grammar is LL(2) (an item is `identifier =` or `identifier string? {`) and
// unambiguous, so for a token run in the language there is exactly one parse and this function
// builds it, node for node. For anything outside the language it returns null without reporting,
// and the caller runs nearley, which owns every syntax diagnostic and the ambiguity guard; the
// fast path never decides what an error looks like.
//
// test/fast-parse.test.ts compares the two on the corpus and on generated inputs.
import type { BodyItem, StringLiteral, Value } from './ast';
import { attribute, block, booleanLiteral, listLiteral, numberLiteral, stringLiteral, type Token } from './build';

/** Deeper nesting than this goes to nearley (whose chart needs no call stack) instead of recursing. */
const MAX_DEPTH = 200;

/**
 * Parses `tokens[from, to)` as the grammar's `body`. Returns the items, or null when the run is not
 * exactly one `body` (the caller then asks nearley, which reports why).
 */
export function fastParseBody(tokens: readonly Token[], from = 0, to = tokens.length): BodyItem[] | null {
  let pos = from;
  const typeAt = (i: number): string | undefined => (i < to ? tokens[i]!.type : undefined);

  // body -> item:*   (stops before a `}` or the end; the caller checks which is allowed)
  const body = (depth: number): BodyItem[] | null => {
    const items: BodyItem[] = [];
    while (typeAt(pos) === 'identifier') {
      const name = tokens[pos]!;
      const next = typeAt(pos + 1);
      if (next === 'equals') {
        // attribute -> %identifier %equals value
        pos += 2;
        const v = value(depth);
        if (!v) return null;
        items.push(attribute(name, v));
        continue;
      }
      // block -> %identifier label:? %lbrace body %rbrace
      if (depth >= MAX_DEPTH) return null;
      pos++;
      let label: StringLiteral | null = null;
      if (next === 'string') label = stringLiteral(tokens[pos++]!);
      if (typeAt(pos) !== 'lbrace') return null;
      pos++;
      const inner = body(depth + 1);
      if (!inner || typeAt(pos) !== 'rbrace') return null;
      items.push(block(name, label, inner, tokens[pos++]!));
    }
    return items;
  };

  // value -> %string | %number | %kwTrue | %kwFalse | list
  const value = (depth: number): Value | null => {
    const t = tokens[pos];
    switch (typeAt(pos)) {
      case 'string': pos++; return stringLiteral(t!);
      case 'number': pos++; return numberLiteral(t!);
      case 'kwTrue':
      case 'kwFalse': pos++; return booleanLiteral(t!);
      case 'lbracket': return depth >= MAX_DEPTH ? null : list(depth + 1);
      default: return null;
    }
  };

  // list -> %lbracket %rbracket | %lbracket values %comma:? %rbracket
  // values -> value | values %comma value
  const list = (depth: number): Value | null => {
    const open = tokens[pos++]!;
    const items: Value[] = [];
    while (typeAt(pos) !== 'rbracket') {
      const v = value(depth);
      if (!v) return null;
      items.push(v);
      if (typeAt(pos) === 'comma') pos++;
      else if (typeAt(pos) !== 'rbracket') return null;
    }
    // `[,]` is not a list: a comma needs a value before it, which the loop above guarantees.
    return listLiteral(open, items, tokens[pos++]!);
  };

  const items = body(0);
  return items && pos === to ? items : null;
}
