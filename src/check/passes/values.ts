// Values: policy levels, names in labels, identity patterns (SPIFFE IDs included), CIDRs,
// settings, `api` scopes, and the fields of `test` blocks.
import { closest, error, quote, type Diagnostic } from '../../diagnostics';
import {
  LEVELS, RESULTS, isAction, isValidName, normalizeIp, parseCidrText, parseIdentityPattern, parseResource, requestIdentityProblem,
  type Block, type PolicyFile, type StringLiteral,
} from '../../syntax';
import { prepareRequest, subjectIdentity } from '../../syntax/prepare-request';
import { API_SCOPES, DEFAULT_POLICIES, isRuleBlock } from '../schema';
import { anonymousAllowed, attribute, blocks, identityStrings, stringValue } from '../walk';
import { hasInvalidEscape } from './strings';

function oneOf(code: string, what: string, value: StringLiteral, allowed: readonly string[]): Diagnostic {
  const suggestion = closest(value.value, allowed);
  return error(code, `invalid ${what} ${quote(value.value)}; expected ${allowed.map((a) => `\`${a}\``).join(', ')}`, value.span,
    suggestion ? `did you mean \`${suggestion}\`?` : undefined);
}

export function checkValues(files: readonly PolicyFile[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  const anonymous = anonymousAllowed(files);
  for (const { block, parent } of blocks(files)) {
    const type = block.type.name;
    if (isRuleBlock(type)) checkRule(block, out);
    else if (type === 'role' && !parent) checkRole(block, out);
    else if (type === 'settings' && !parent) checkSettings(block, out);
    else if (type === 'api' && !parent) {
      if (block.label && !(API_SCOPES as readonly string[]).includes(block.label.value)) out.push(oneOf('unknown-api', '`api` scope', block.label, API_SCOPES));
      checkIdentities(block, out);
    } else if (type === 'test' && !parent) checkTest(block, out, anonymous);
  }
  return out;
}

function checkRule(block: Block, out: Diagnostic[]): void {
  const type = block.type.name;
  const label = block.label;
  if (label) {
    const prefix = type.endsWith('_prefix');
    if (!(prefix && label.value === '') && !isValidName(label.value) && !label.raw.includes('${')) {
      out.push(error('invalid-name', `invalid ${type.startsWith('namespace') ? 'namespace' : 'service'} ${prefix ? 'prefix' : 'name'} ${quote(label.value)}`, label.span,
        `names are 1-253 characters of A-Z a-z 0-9 . _ -${prefix ? ' (a prefix may also be `""`, meaning all)' : ''}`));
    }
  }
  const policy = stringValue(block, 'policy');
  if (policy && !policy.raw.includes('${') && !(LEVELS as readonly string[]).includes(policy.value)) out.push(oneOf('invalid-level', 'policy level', policy, LEVELS));
  checkIdentities(block, out);
  const cidrs = attribute(block, 'cidrs')?.value;
  if (cidrs?.kind === 'list') {
    if (cidrs.items.length === 0) {
      out.push(error('empty-cidrs', '`cidrs` is empty, so this rule can never apply', cidrs.span, 'list at least one network, or remove `cidrs`'));
    }
    for (const item of cidrs.items) {
      if (item.kind !== 'string') continue;
      const parsed = parseCidrText(item.value);
      if (!parsed.ok) out.push(error('invalid-cidr', parsed.message, item.span, parsed.hint));
    }
  }
}

function checkIdentities(block: Block, out: Diagnostic[], allowRoles = true): void {
  const list = attribute(block, 'identities')?.value;
  if (list?.kind === 'list' && list.items.length === 0) {
    out.push(error('missing-identity', '`identities` is empty', list.span, 'name at least one identity'));
  }
  for (const s of identityStrings(block)) {
    if (s.raw.includes('${') || hasInvalidEscape(s)) continue; // reported as interpolation, or as an invalid escape
    const parsed = parseIdentityPattern(s.value);
    if (!parsed.ok) {
      const code = parsed.message.startsWith('malformed SPIFFE ID') ? 'invalid-spiffe-id' : 'invalid-identity';
      out.push(error(code, parsed.message, s.span, parsed.hint));
    } else if (!allowRoles && parsed.pattern.kind === 'role') {
      out.push(error('nested-role', `a role cannot contain another role (\`${s.value}\`)`, s.span, 'list that role\'s identities here instead'));
    } else if (block.type.name === 'api' && parsed.pattern.kind === 'glob' && parsed.pattern.placeholders) {
      out.push(error('invalid-identity', '`{service}` and `{namespace}` have no meaning in an `api` block', s.span));
    }
  }
}

function checkRole(block: Block, out: Diagnostic[]): void {
  if (block.label && !isValidName(block.label.value)) {
    out.push(error('invalid-name', `invalid role name ${quote(block.label.value)}`, block.label.span, 'role names are 1-253 characters of A-Z a-z 0-9 . _ -'));
  }
  checkIdentities(block, out, false);
}

function checkSettings(block: Block, out: Diagnostic[]): void {
  const defaultPolicy = stringValue(block, 'default_policy');
  if (defaultPolicy && !(DEFAULT_POLICIES as readonly string[]).includes(defaultPolicy.value)) {
    out.push(oneOf('invalid-setting', '`default_policy`', defaultPolicy, DEFAULT_POLICIES));
  }
  const trustDomain = stringValue(block, 'trust_domain');
  if (trustDomain && !/^[a-z0-9._-]+$/.test(trustDomain.value)) {
    out.push(error('invalid-setting', `invalid \`trust_domain\` ${quote(trustDomain.value)}`, trustDomain.span, 'a trust domain is lowercase letters, digits, `.`, `_` and `-`, without `spiffe://`'));
  }
}

function checkTest(block: Block, out: Diagnostic[], anonymous: boolean): void {
  const before = out.length;
  const identity = stringValue(block, 'identity');
  if (identity && identity.value === '') out.push(error('invalid-test', '`identity` is empty', identity.span, 'omit `identity` to test an anonymous request'));
  // A test states a request the server could be sent, so its identity is held to the server's rule
  // (the function `pdp eval` calls, on the server's limits), not to the stricter one for patterns: a
  // space is accepted (the lint pass warns: `test-identity-space`), a control or invisible character
  // or more than IDENTITY_MAX_LENGTH characters is not.
  const refused = identity && requestIdentityProblem(identity.value);
  if (identity && refused) {
    const [message, ...hint] = refused.split('; ');
    out.push(error('invalid-test', `this test's request would be refused: \`identity\` ${message}`, identity.span, hint.length ? hint.join('; ') : undefined));
  }
  const action = stringValue(block, 'action');
  if (action && !isAction(action.value)) out.push(oneOf('invalid-test', 'action', action, ['read', 'write', 'admin']));
  const resource = stringValue(block, 'resource');
  if (resource) {
    const parsed = parseResource(resource.value);
    if (!parsed.ok) out.push(error('invalid-test', parsed.message, resource.span));
  }
  const namespace = stringValue(block, 'namespace');
  if (namespace && !isValidName(namespace.value)) out.push(error('invalid-test', `invalid namespace ${quote(namespace.value)}`, namespace.span, 'names are 1-253 characters of A-Z a-z 0-9 . _ -'));
  const sourceIp = stringValue(block, 'source_ip');
  if (sourceIp && normalizeIp(sourceIp.value) === undefined) out.push(error('invalid-test', `invalid \`source_ip\` ${quote(sourceIp.value)}; expected an IPv4 or IPv6 address`, sourceIp.span));
  const expect = stringValue(block, 'expect');
  if (expect && !(RESULTS as readonly string[]).includes(expect.value)) out.push(oneOf('invalid-test', 'expected result', expect, RESULTS));
  if (out.length > before || !action || !resource) return; // each field has its own error (or is missing: structure)

  // Each field is fine on its own; now the request as a whole, validated exactly as `pdp test` (the
  // engine) will: a test that passes the check must be one the engine can decide.
  const prepared = prepareRequest({
    identity: identity?.value, action: action.value, resource: resource.value, namespace: namespace?.value, sourceIp: sourceIp?.value,
  });
  if (!prepared.ok) {
    const fields: Record<string, StringLiteral | undefined> = { identity, action, resource, namespace, source_ip: sourceIp };
    const field = fields[prepared.error.field];
    const [message, ...hint] = prepared.error.message.split('; ');
    out.push(error('invalid-test', `this test's request would be refused: ${message}`, field?.span ?? block.type.span, hint.length ? hint.join('; ') : undefined));
    return;
  }
  if (subjectIdentity(prepared.request.identity, anonymous) === undefined) {
    if (identity !== undefined) {
      out.push(error('invalid-test', 'this test\'s `identity` is `anonymous`, the identity of unauthenticated subjects, and the policy set does not allow anonymous requests', identity.span,
        'test a real identity, or allow anonymous requests with `settings { anonymous = true }`'));
    } else {
      out.push(error('invalid-test', 'this test has no `identity`, and the policy set does not allow anonymous requests', block.label?.span ?? block.type.span,
        'add `identity = "..."`, or allow anonymous requests with `settings { anonymous = true }`'));
    }
  }
}
