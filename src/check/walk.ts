// Read-only traversal helpers for check passes.
import type { Attribute, Block, BodyItem, PolicyFile, StringLiteral, Value } from '../syntax';

export interface BlockVisit {
  block: Block;
  parent: Block | null;
  file: PolicyFile;
}

export function* blocks(files: readonly PolicyFile[]): Generator<BlockVisit> {
  for (const file of files) {
    const stack: { block: Block; parent: Block | null }[] = [];
    for (const item of file.body) if (item.kind === 'block') stack.push({ block: item, parent: null });
    // Depth-first, in source order.
    stack.reverse();
    while (stack.length) {
      const { block, parent } = stack.pop()!;
      yield { block, parent, file };
      for (let i = block.body.length - 1; i >= 0; i--) {
        const child = block.body[i]!;
        if (child.kind === 'block') stack.push({ block: child, parent: block });
      }
    }
  }
}

export function attributes(block: Block): Attribute[] {
  return block.body.filter((i): i is Attribute => i.kind === 'attribute');
}

/** The first attribute of that name (duplicates are reported by the structure pass). */
export function attribute(block: Block, name: string): Attribute | undefined {
  return block.body.find((i): i is Attribute => i.kind === 'attribute' && i.name.name === name);
}

export function stringValue(block: Block, name: string): StringLiteral | undefined {
  const a = attribute(block, name);
  return a?.value.kind === 'string' ? a.value : undefined;
}

/** The strings of `identity = "x"` or `identities = [...]`, whichever the block has. */
export function identityStrings(block: Block): StringLiteral[] {
  const single = stringValue(block, 'identity');
  if (single) return [single];
  const list = attribute(block, 'identities')?.value;
  return list?.kind === 'list' ? list.items.filter((i): i is StringLiteral => i.kind === 'string') : [];
}

export function* allStrings(files: readonly PolicyFile[]): Generator<StringLiteral> {
  // Order does not matter (diagnostics are sorted), so a plain stack keeps this linear.
  const stack: Value[] = [];
  const items: BodyItem[] = [];
  for (const file of files) for (const item of file.body) items.push(item);
  while (items.length) {
    const item = items.pop()!;
    if (item.kind === 'attribute') stack.push(item.value);
    else {
      if (item.label) yield item.label;
      for (const child of item.body) items.push(child);
    }
    while (stack.length) {
      const v = stack.pop()!;
      if (v.kind === 'string') yield v;
      else if (v.kind === 'list') for (const i of v.items) stack.push(i);
    }
  }
}

/** The policy set's `settings` block (the first one; a second is an error of its own). */
export function settingsBlock(files: readonly PolicyFile[]): Block | undefined {
  for (const file of files) {
    for (const item of file.body) if (item.kind === 'block' && item.type.name === 'settings') return item;
  }
  return undefined;
}

/** `settings { anonymous = true }`: whether the set decides requests for unauthenticated subjects. */
export function anonymousAllowed(files: readonly PolicyFile[]): boolean {
  const settings = settingsBlock(files);
  const value = settings === undefined ? undefined : attribute(settings, 'anonymous')?.value;
  return value?.kind === 'boolean' && value.value;
}
