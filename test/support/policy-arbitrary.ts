// fast-check arbitraries for policy SOURCE TEXT, for property tests of anything that reads policies
// (the formatter, the parser, the checker).
//
// `policySource()` generates files that always parse without diagnostics, laid out in every way
// the grammar allows: one-line blocks, odd spacing and tabs, blank lines, trailing whitespace, lists
// with and without a trailing comma over several lines, all three comment kinds wherever a comment
// may go (before and after items, inside headers, inside lists, at the end of a block), strings with
// the escapes `\" \\ \n \t \uXXXX`, and CRLF line endings in some files.
//
// Block contents are plausible for each block type (rule attributes on rules, `identities` on roles,
// ...) but semantic validity is not guaranteed: roles referenced may not exist, there may be two
// `settings` blocks, a rule may have both `identity` and `identities`. With `exotic: true` it also
// generates things only the grammar accepts: unknown blocks, top-level attributes, nested lists,
// numbers and booleans in odd places.
import fc from 'fast-check';

export interface PolicySourceOptions {
  /** Also generate syntactically valid but semantically meaningless input (see above). Default false. */
  exotic?: boolean;
  /** Generate comments. Default true. */
  comments?: boolean;
  /** Let some files use CRLF line endings. Default true. */
  crlf?: boolean;
  /** Most top-level blocks in one file. Default 6. */
  maxBlocks?: number;
}

/** A deep copy of an AST (or anything) with every `span` property removed, for comparing trees. */
export function stripSpans<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v) => stripSpans(v)) as unknown as T;
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value as Record<string, unknown>)) if (key !== 'span') out[key] = stripSpans(v);
    return out as T;
  }
  return value;
}

/**
 * A comment's text as the formatter keeps it: CRLF line endings become LF and trailing whitespace
 * is removed from every line. Compare comment texts through this.
 */
export function normalizeCommentText(text: string): string {
  return text.replace(/\r\n/g, '\n').replace(/[ \t\r]+$/gm, '');
}

// ---------------------------------------------------------------------------------------------
// Layout: what goes between tokens.

type Style = 'compact' | 'expanded' | 'chaotic';

const commentChars = fc.constantFrom(
  ...'abcxyz ABC 0123 -_:./'.split(''),
  '#', '//', '/*', '*', '"', '\\', '{', '}', '[', ']', '=', ',', '\t', 'é', '€', '  ',
);

const lineCommentText = fc.array(commentChars, { maxLength: 12 }).map((cs) => cs.join(''));

const blockCommentText = fc
  .array(fc.oneof({ weight: 6, arbitrary: commentChars }, { weight: 1, arbitrary: fc.constantFrom('\n', '\n  ', ' \n\t', '\n * ') }), { maxLength: 16 })
  // `*/` would end the comment early; a trailing `*` would end it as `**/`, which is fine, but
  // `/` right after the opening `*` is fine too: only the closing sequence matters.
  .map((cs) => cs.join('').replace(/\*\//g, '* /').replace(/\*$/, '* '));

/** One comment, with the newline a line comment needs after it. */
export const commentArb: fc.Arbitrary<string> = fc.oneof(
  lineCommentText.map((t) => `#${t}\n`),
  lineCommentText.map((t) => `//${t}\n`),
  blockCommentText.map((t) => `/*${t}*/`),
);

const spaces = fc.constantFrom(' ', '  ', '\t', ' \t ', '    ');
const newline = fc.constantFrom('\n', '\n  ', '\n\t', '\n    ', ' \n', '\n\n', '\n\n\n  ', '\n \t\n');

function piece(comments: boolean): fc.Arbitrary<string> {
  const plain = [
    { weight: 3, arbitrary: spaces },
    { weight: 3, arbitrary: newline },
  ];
  return comments ? fc.oneof(...plain, { weight: 3, arbitrary: commentArb }) : fc.oneof(...plain);
}

/**
 * What goes between two tokens. `needed`: the tokens would run together without something between
 * them (a name or number followed by a name), so the result is never empty.
 */
function gap(style: Style, comments: boolean, needed: boolean): fc.Arbitrary<string> {
  const chaotic = fc.array(piece(comments), { minLength: needed ? 1 : 0, maxLength: 4 }).map((ps) => ps.join(''));
  switch (style) {
    case 'compact':
      return fc.oneof({ weight: 8, arbitrary: fc.constant(' ') }, { weight: needed ? 0 : 2, arbitrary: fc.constant('') }, { weight: 1, arbitrary: chaotic });
    case 'expanded':
      return fc.oneof({ weight: 6, arbitrary: fc.constantFrom('\n  ', '\n    ', '\n') }, { weight: 2, arbitrary: fc.constant(' ') }, { weight: 2, arbitrary: chaotic });
    case 'chaotic':
      return chaotic.map((s) => (needed && s === '' ? ' ' : s));
  }
}

/** Gaps between tokens inside one item: usually a single space, sometimes anything. */
function innerGap(style: Style, comments: boolean): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 6, arbitrary: fc.constant(' ') },
    { weight: style === 'compact' ? 2 : 1, arbitrary: fc.constant('') },
    { weight: style === 'chaotic' ? 4 : 1, arbitrary: gap('chaotic', comments, false) },
  );
}

// ---------------------------------------------------------------------------------------------
// Values.

const escapes = fc.constantFrom('\\"', '\\\\', '\\n', '\\t', '\\u00e9', '\\u00E9', '\\u0041');

/** The text between the quotes of a string literal (escapes as written). */
export const stringRawArb: fc.Arbitrary<string> = fc
  .array(
    fc.oneof(
      { weight: 8, arbitrary: fc.constantFrom(...'abcdefghxyz0123456789-_.:/*{} '.split('')) },
      { weight: 2, arbitrary: escapes },
      { weight: 1, arbitrary: fc.constantFrom('é', '€', '#', '//', '/*', '*/', '\t', '[', ']', '=', ',') },
    ),
    { maxLength: 14 },
  )
  .map((cs) => cs.join(''));

const names = ['payment', 'order-service', 'inventory', 'cart', 'billing-keys', 'db_1', 'web.frontend', 'x'];
const namespaces = ['default', 'prod', 'staging', 'shop', 'sandbox-1'];

export const identityPatternArb: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(fc.constantFrom('cluster', 'acme'), fc.constantFrom(...namespaces, '*', '{namespace}'), fc.constantFrom(...names, '*', '**', '{service}')).map(
    ([trust, ns, sa]) => `spiffe://${trust}/ns/${ns}/sa/${sa}`,
  ),
  fc.constantFrom('team:ops', 'team:finance', 'team:release', 'role:deployers', 'role:admins', '*', 'anonymous'),
  fc.constantFrom('spiffe://cluster/ns/prod/sa/a-rather-long-service-account-name-that-pushes-lists-past-the-line-limit'),
);

const cidrArb = fc.constantFrom('10.0.0.0/8', '192.168.10.0/24', '2001:db8::/32', '127.0.0.1/32', '0.0.0.0/0');

const quote = (raw: string) => `"${raw}"`;

/** A list literal over item texts, with the layout left to `style`. */
function listText(items: fc.Arbitrary<string>[], style: Style, comments: boolean): fc.Arbitrary<string> {
  const g = () => (style === 'compact' ? innerGap('compact', comments) : gap(style, comments, false));
  return fc
    .tuple(
      fc.tuple(...items.map((item) => fc.tuple(g(), item, g()))),
      fc.boolean(),
      g(),
      fc.constantFrom(', ', ','),
    )
    .map(([parts, trailingComma, end, comma]) => {
      if (parts.length === 0) return `[${end}]`;
      const body = parts.map(([before, item, after]) => `${before}${item}${after}`).join(comma);
      return `[${body}${trailingComma ? ',' : ''}${end}]`;
    });
}

function listOf(item: fc.Arbitrary<string>, style: Style, comments: boolean, minLength: number, maxLength: number): fc.Arbitrary<string> {
  return fc.integer({ min: minLength, max: maxLength }).chain((n) => listText(Array.from({ length: n }, () => item), style, comments));
}

// ---------------------------------------------------------------------------------------------
// Items and blocks.

interface Ctx {
  style: Style;
  comments: boolean;
  exotic: boolean;
}

/** `name = value`, as text. */
function attribute(name: string, value: fc.Arbitrary<string>, ctx: Ctx): fc.Arbitrary<string> {
  return fc.tuple(innerGap(ctx.style, ctx.comments), innerGap(ctx.style, ctx.comments), value).map(([a, b, v]) => `${name}${a}=${b}${v}`);
}

function identityValue(ctx: Ctx): fc.Arbitrary<string> {
  return identityPatternArb.map(quote);
}

function ruleAttributes(ctx: Ctx): fc.Arbitrary<string>[] {
  const items: fc.Arbitrary<string>[] = [];
  items.push(attribute('policy', fc.constantFrom('read', 'write', 'admin', 'deny').map(quote), ctx));
  items.push(
    fc.oneof(
      attribute('identity', identityValue(ctx), ctx),
      attribute('identities', listOf(identityValue(ctx), ctx.style, ctx.comments, 0, 5), ctx),
    ),
  );
  return items;
}

const optional = (a: fc.Arbitrary<string>) => fc.option(a, { nil: undefined });

function optionalRuleAttributes(ctx: Ctx): fc.Arbitrary<string | undefined>[] {
  return [
    optional(attribute('cidrs', listOf(cidrArb.map(quote), ctx.style, ctx.comments, 1, 4), ctx)),
    optional(attribute('description', stringRawArb.map(quote), ctx)),
  ];
}

function exoticValue(depth: number, ctx: Ctx): fc.Arbitrary<string> {
  const scalar = fc.oneof(
    stringRawArb.map(quote),
    fc.integer({ min: -1000, max: 100000 }).map(String),
    fc.constantFrom('007', '-0', 'true', 'false'),
  );
  if (depth >= 2) return scalar;
  return fc.oneof({ weight: 3, arbitrary: scalar }, { weight: 1, arbitrary: listOf(exoticValue(depth + 1, ctx), ctx.style, ctx.comments, 0, 3) });
}

/** Shuffles required items together with the optional ones that were generated. */
function items(required: fc.Arbitrary<string>[], optionalItems: fc.Arbitrary<string | undefined>[], ctx: Ctx, extra: fc.Arbitrary<string[]> = fc.constant([])): fc.Arbitrary<string[]> {
  const exotic = ctx.exotic
    ? fc.array(attribute('x_extra', exoticValue(0, ctx), ctx), { maxLength: 2 })
    : fc.constant<string[]>([]);
  return fc
    .tuple(fc.tuple(...required), fc.tuple(...optionalItems), extra, exotic)
    .chain(([req, opt, more, ex]) => {
      const all = [...req, ...opt.filter((o): o is string => o !== undefined), ...more, ...ex];
      return fc.shuffledSubarray(all, { minLength: all.length, maxLength: all.length });
    });
}

/** `type "label" { items }`, laid out in `ctx.style`. */
function blockText(type: string, label: fc.Arbitrary<string | null> | null, body: fc.Arbitrary<string[]>, ctx: Ctx): fc.Arbitrary<string> {
  const { style, comments } = ctx;
  return fc
    .tuple(label ?? fc.constant(null), innerGap(style, comments), innerGap(style, comments), body)
    .chain(([labelText, g1, g2, its]) =>
      fc
        .tuple(
          gap(style, comments, false),
          fc.tuple(...its.map((_, i) => (i === 0 ? fc.constant('') : gap(style, comments, true)))),
          gap(style, comments, false),
        )
        .map(([open, seps, close]) => {
          const header = labelText === null ? `${type}${g1}` : `${type}${g1}${quote(labelText)}${g2}`;
          if (its.length === 0) return `${header}{${open}${close}}`;
          return `${header}{${open}${its.map((it, i) => `${seps[i]}${it}`).join('')}${close}}`;
        }),
    );
}

const styleArb = fc.constantFrom<Style>('compact', 'expanded', 'chaotic');

function withStyle(ctx: Omit<Ctx, 'style'>, f: (ctx: Ctx) => fc.Arbitrary<string>): fc.Arbitrary<string> {
  return styleArb.chain((style) => f({ ...ctx, style }));
}

const labelArb = (values: string[]) => fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...values) }, { weight: 1, arbitrary: stringRawArb });

function ruleBlock(type: 'service' | 'service_prefix', ctx: Ctx): fc.Arbitrary<string> {
  const label = type === 'service' ? labelArb(names) : labelArb(['', 'billing-', 'web', 'order']);
  return blockText(type, label, items(ruleAttributes(ctx), optionalRuleAttributes(ctx), ctx), ctx);
}

function namespaceBlock(type: 'namespace' | 'namespace_prefix', base: Omit<Ctx, 'style'>): fc.Arbitrary<string> {
  return withStyle(base, (ctx) => {
    const nested = fc.array(
      fc.constantFrom<'service' | 'service_prefix'>('service', 'service_prefix').chain((t) => withStyle(base, (inner) => ruleBlock(t, inner))),
      { maxLength: 3 },
    );
    const own = fc.option(fc.tuple(...ruleAttributes(ctx)), { nil: undefined }).map((a) => a ?? []);
    const body = fc.tuple(own, nested).chain(([attrs, blocks]) =>
      items([], [...attrs.map((a) => fc.constant(a)), ...optionalRuleAttributes(ctx)], ctx, fc.constant(blocks)),
    );
    return blockText(type, labelArb(type === 'namespace' ? namespaces : ['', 'sandbox-', 'team-']), body, ctx);
  });
}

function topBlock(base: Omit<Ctx, 'style'>): fc.Arbitrary<string> {
  const blocks: fc.Arbitrary<string>[] = [
    withStyle(base, (ctx) => ruleBlock('service', ctx)),
    withStyle(base, (ctx) => ruleBlock('service_prefix', ctx)),
    namespaceBlock('namespace', base),
    namespaceBlock('namespace_prefix', base),
    withStyle(base, (ctx) =>
      blockText('role', labelArb(['deployers', 'admins']), items([attribute('identities', listOf(identityValue(ctx), ctx.style, ctx.comments, 0, 6), ctx)], [], ctx), ctx),
    ),
    withStyle(base, (ctx) =>
      blockText(
        'settings',
        null,
        items([], [optional(attribute('default_policy', fc.constantFrom('deny', 'allow').map(quote), ctx)), optional(attribute('anonymous', fc.constantFrom('true', 'false'), ctx))], ctx),
        ctx,
      ),
    ),
    withStyle(base, (ctx) =>
      blockText(
        'api',
        fc.constantFrom('authorize', 'admin', 'audit'),
        items([fc.oneof(attribute('identity', identityValue(ctx), ctx), attribute('identities', listOf(identityValue(ctx), ctx.style, ctx.comments, 1, 3), ctx))], [], ctx),
        ctx,
      ),
    ),
    withStyle(base, (ctx) =>
      blockText(
        'test',
        stringRawArb,
        items(
          [
            attribute('identity', identityValue(ctx), ctx),
            attribute('action', fc.constantFrom('read', 'write', 'admin').map(quote), ctx),
            attribute('resource', fc.constantFrom('service:payment', 'service:cart/cart-7', 'namespace:prod/*').map(quote), ctx),
            attribute('expect', fc.constantFrom('ALLOW', 'ALLOW_DEFAULT', 'DENY').map(quote), ctx),
          ],
          [optional(attribute('namespace', fc.constantFrom(...namespaces).map(quote), ctx)), optional(attribute('source_ip', fc.constantFrom('192.168.10.5', '::1').map(quote), ctx))],
          ctx,
        ),
        ctx,
      ),
    ),
  ];
  if (base.exotic) {
    blocks.push(
      withStyle(base, (ctx) => blockText('unknown_block', fc.option(stringRawArb, { nil: null }), items([], [], ctx), ctx)),
      withStyle(base, (ctx) => blockText('settings', null, fc.constant([]), ctx)),
      withStyle(base, (ctx) => attribute('top_level', exoticValue(0, ctx), ctx)),
      withStyle(base, (ctx) =>
        blockText('namespace', labelArb(namespaces), items([], [], ctx, fc.array(withStyle(base, (inner) => blockText('service', labelArb(names), fc.constant([]), inner)), { maxLength: 2 })), ctx),
      ),
    );
  }
  return fc.oneof(...blocks);
}

/** Syntactically valid policy source text (see the top of this file). */
export function policySource(options: PolicySourceOptions = {}): fc.Arbitrary<string> {
  const base = { comments: options.comments ?? true, exotic: options.exotic ?? false };
  const maxBlocks = options.maxBlocks ?? 6;
  const topGap = (needed: boolean) => fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom('\n', '\n\n', '\n\n\n') },
    { weight: 1, arbitrary: gap('chaotic', base.comments, needed) },
  );
  return fc
    .array(topBlock(base), { maxLength: maxBlocks })
    .chain((blocks) =>
      fc
        .tuple(
          fc.oneof({ weight: 3, arbitrary: fc.constant('') }, { weight: 1, arbitrary: gap('chaotic', base.comments, false) }),
          fc.tuple(...blocks.map(() => topGap(true))),
          fc.oneof({ weight: 3, arbitrary: fc.constant('\n') }, { weight: 1, arbitrary: gap('chaotic', base.comments, false) }),
          options.crlf === false ? fc.constant(false) : fc.boolean(),
        )
        .map(([start, seps, end, crlf]) => {
          const text = start + blocks.map((b, i) => (i === 0 ? b : seps[i] + b)).join('') + end;
          return crlf ? text.replace(/\n/g, '\r\n') : text;
        }),
    );
}
