// Structure: known block types in allowed places, labels, known attributes of the right type,
// no duplicates, required attributes present; one `settings` block per policy set.
import { closest, error, type Diagnostic } from '../../diagnostics';
import type { Attribute, Block, PolicyFile } from '../../syntax';
import { BLOCKS, TOP_LEVEL_BLOCKS, matchesType, valueType } from '../schema';
import { attributes, blocks } from '../walk';

export function checkStructure(files: readonly PolicyFile[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  let firstSettings: Block | undefined;
  const roleNames = new Map<string, Block>();
  const testNames = new Map<string, Block>();

  for (const file of files) {
    for (const item of file.body) {
      if (item.kind === 'attribute') {
        out.push(error('misplaced-attribute', `attribute \`${item.name.name}\` is outside any block`, item.name.span,
          'attributes belong inside a block such as `service "NAME" { ... }`'));
      }
    }
  }

  for (const { block, parent } of blocks(files)) {
    const type = block.type.name;
    const schema = BLOCKS[type];
    const allowedHere = parent ? BLOCKS[parent.type.name]?.children ?? [] : TOP_LEVEL_BLOCKS;
    if (!schema) {
      const suggestion = closest(type, allowedHere.length ? allowedHere : TOP_LEVEL_BLOCKS);
      out.push(error('unknown-block', `unknown block type \`${type}\``, block.type.span,
        suggestion ? `did you mean \`${suggestion}\`?` : `the block types are ${TOP_LEVEL_BLOCKS.map((b) => `\`${b}\``).join(', ')}`));
      continue;
    }
    // Inside an unknown block (already an error) nothing can be said about where a block may go.
    const parentUnknown = parent !== null && BLOCKS[parent.type.name] === undefined;
    if (!parentUnknown && !allowedHere.includes(type)) {
      const where = parent ? `inside ${aBlock(parent.type.name)}` : 'at the top level';
      out.push(error('misplaced-block', `${aBlock(type)} is not allowed ${where}`, block.type.span,
        parent && allowedHere.length ? `only ${allowedHere.map((b) => `\`${b}\``).join(' and ')} blocks may be nested here` : parent ? `\`${parent.type.name}\` blocks hold attributes only` : undefined));
      continue;
    }
    if (schema.label === 'required' && !block.label) {
      out.push(error('missing-label', `${aBlock(type)} needs a label`, block.type.span, `write \`${type} "NAME" { ... }\``));
    } else if (schema.label === 'none' && block.label) {
      out.push(error('unexpected-label', `${aBlock(type)} takes no label`, block.label.span, `write \`${type} { ... }\``));
    }

    const seen = new Map<string, Attribute>();
    /** Did-you-mean suggestions of this block's unknown attributes: each already names a missing attribute. */
    const suggested = new Set<string>();
    for (const attr of attributes(block)) {
      const name = attr.name.name;
      const expected = schema.attributes[name];
      if (!expected) {
        const suggestion = closest(name, Object.keys(schema.attributes));
        if (suggestion) suggested.add(suggestion);
        out.push(error('unknown-attribute', `unknown attribute \`${name}\` in ${aBlock(type)}`, attr.name.span,
          suggestion ? `did you mean \`${suggestion}\`?` : `\`${type}\` blocks take ${Object.keys(schema.attributes).map((a) => `\`${a}\``).join(', ')}`));
        continue;
      }
      const previous = seen.get(name);
      if (previous) {
        out.push(error('duplicate-attribute', `attribute \`${name}\` is set twice in this \`${type}\` block`, attr.name.span,
          `the first is at line ${previous.name.span.start.line}; keep one`));
        continue;
      }
      seen.set(name, attr);
      if (expected === 'list of strings' && attr.value.kind === 'list') {
        // The list itself is right: name each element that is not a string, where it is.
        attr.value.items.forEach((item, i) => {
          if (item.kind === 'string') return;
          out.push(error('invalid-type', `element ${i + 1} of \`${name}\` must be a string, found ${valueType(item)}`, item.span,
            item.kind === 'list' ? 'lists do not nest; write the strings in one list' : item.kind === 'number' ? `strings are quoted: \`"${item.raw}"\`` : undefined));
        });
      } else if (!matchesType(attr.value, expected)) {
        out.push(error('invalid-type', `\`${name}\` must be ${expected === 'list of strings' ? 'a list of strings' : `a ${expected}`}, found ${valueType(attr.value)}`, attr.value.span,
          expected === 'list of strings' && attr.value.kind === 'string' ? `write \`${name} = ["${attr.value.raw}"]\`` : expected === 'string' && attr.value.kind === 'list' && name === 'identity' ? 'use `identities = [...]` for several identities' : undefined));
      }
    }
    for (const [a, b] of schema.exclusive) {
      if (seen.has(a) && seen.has(b)) {
        out.push(error('conflicting-attributes', `${aBlock(type)} cannot set both \`${a}\` and \`${b}\``, seen.get(b)!.name.span,
          `put every identity in \`${b}\``));
      }
    }
    // A namespace block that only holds nested blocks is a container; once it grants anything
    // itself it is a rule and needs both `policy` and an identity.
    const required = (type === 'namespace' || type === 'namespace_prefix') && ['policy', 'identity', 'identities', 'cidrs'].some((n) => seen.has(n))
      ? BLOCKS.service!.required
      : schema.required;
    for (const names of required) {
      // A misspelt required attribute (`polcy`) is one mistake: its unknown-attribute error already
      // says `did you mean \`policy\`?`, so no missing-policy error on top.
      if (!names.some((n) => seen.has(n) || suggested.has(n))) {
        const code = names.includes('policy') ? 'missing-policy' : names.includes('identity') || names.includes('identities') ? 'missing-identity' : 'missing-attribute';
        const what = names.map((n) => `\`${n}\``).join(' or ');
        out.push(error(code, `this \`${type}\` block has no ${what}`, block.type.span, missingHint(type, names)));
      }
    }

    if (type === 'settings' && !parent) {
      if (firstSettings) {
        out.push(error('duplicate-settings', 'a second `settings` block; a policy set has at most one', block.type.span,
          `the first is at ${firstSettings.span.file}:${firstSettings.span.start.line}; merge them`));
      } else firstSettings = block;
    }
    if (type === 'test' && !parent && block.label && block.label.value.trim() === '') {
      // `pdp test` prints the name on each PASS/FAIL line and matches duplicates by it.
      out.push(error('invalid-test', block.label.value === '' ? 'a test needs a name; `test ""` has none' : 'a test needs a name; this one is only whitespace', block.label.span,
        'say what the test checks, e.g. `test "payment may register itself" { ... }`: `pdp test` prints the name on its PASS or FAIL line'));
    } else if ((type === 'role' || type === 'test') && block.label) {
      const names = type === 'role' ? roleNames : testNames;
      const first = names.get(block.label.value);
      if (first) {
        out.push(error(`duplicate-${type}`, `${type} \`${block.label.value}\` is defined twice`, block.label.span,
          `the first is at ${first.span.file}:${first.span.start.line}`));
      } else names.set(block.label.value, block);
    }
  }
  return out;
}

function missingHint(type: string, names: readonly string[]): string | undefined {
  if (names.includes('policy')) return 'add `policy = "read"`, `"write"`, `"admin"` or `"deny"`';
  if (names.includes('identity')) return type === 'api' ? 'add `identities = [...]` naming the callers allowed' : 'add `identity = "..."` or `identities = [...]`';
  if (type === 'test') return `a test needs \`action\`, \`resource\` and \`expect\``;
  return undefined;
}

/**
 * "a `service` block", "an `api` block": the article goes by the sound of the type's name. A vowel
 * letter sounds as a vowel except in `u` + consonant + vowel (`user`, `unit`), `eu` and `one`.
 */
function aBlock(type: string): string {
  const vowelSound = /^[aeiou]/i.test(type) && !/^(?:u[^aeiou\W_][aeiou]|eu|one)/i.test(type);
  return `${vowelSound ? 'an' : 'a'} \`${type}\` block`;
}
