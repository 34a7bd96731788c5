// The request vocabulary shared by eval, the CLI, `test` blocks and the server: actions, resources,
// names and source addresses. Pure parsing; no policy knowledge.
import ipaddr from 'ipaddr.js';
import { quote } from '../diagnostics';
import { disguisedIdentityProblem } from './characters';
import { NAME_RE } from './identity-pattern';

export const ACTIONS = ['read', 'write', 'admin'] as const;
export type Action = (typeof ACTIONS)[number];
export const LEVELS = ['read', 'write', 'admin', 'deny'] as const;
export type Level = (typeof LEVELS)[number];
export const RESULTS = ['ALLOW', 'ALLOW_DEFAULT', 'DENY'] as const;
export type DecisionResult = (typeof RESULTS)[number];

/** read < write < admin (the seed's HasPermission). */
export const ACTION_RANK: Record<Action, number> = { read: 1, write: 2, admin: 3 };

export function isAction(value: string): value is Action {
  return (ACTIONS as readonly string[]).includes(value);
}

export function isValidName(value: string): boolean {
  return NAME_RE.test(value);
}

/**
 * The longest identity a request may hold, in characters (code points, as the server schema's
 * `maxLength` counts them). The schema refuses a longer one; `pdp eval` and `test` blocks take the
 * limit from here, so neither decides a request the server would refuse.
 */
export const IDENTITY_MAX_LENGTH = 2048;

/** A string's length in code points, as ajv's `maxLength` counts it (an emoji is one), without an array per character. */
export function codePointLength(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/**
 * Why a presented identity (a request's, not a pattern) is refused, in words, or undefined: longer
 * than IDENTITY_MAX_LENGTH, or holding a character that would disguise it in the audit log. What
 * `pdp eval --identity` and a `test` block's `identity` are held to, in the server's order.
 */
export function requestIdentityProblem(identity: string): string | undefined {
  if (identity.length > IDENTITY_MAX_LENGTH) {
    // Code units overcount astral characters; only a string this long can be over in code points.
    const characters = codePointLength(identity);
    if (characters > IDENTITY_MAX_LENGTH) return `is ${characters} characters long, more than the ${IDENTITY_MAX_LENGTH} a request may hold`;
  }
  return disguisedIdentityProblem(identity);
}

export type Resource =
  | { kind: 'service'; service: string; instance?: string }
  | { kind: 'namespace'; namespace: string };

export type ResourceResult = { ok: true; resource: Resource } | { ok: false; message: string };

const RESOURCE_FORMS = 'expected `service:NAME`, `service:NAME/INSTANCE` or `namespace:NS/*`';

/**
 * Instance IDs are whatever the registry uses (`payment-1`, `10.0.0.7:8080`, `[fd00::7]:443`,
 * `pod.abc`): any visible ASCII but `/`, so they never hold spaces or control characters. They are only
 * quoted and audited, never matched (a request is decided as `service:NAME`).
 */
export const INSTANCE_RE = /^[\x21-\x2e\x30-\x7e]{1,253}$/; // visible ASCII but `/`

export function parseResource(text: string): ResourceResult {
  if (text.startsWith('service:')) {
    const rest = text.slice('service:'.length);
    const slash = rest.indexOf('/');
    const service = slash < 0 ? rest : rest.slice(0, slash);
    const instance = slash < 0 ? undefined : rest.slice(slash + 1);
    if (!isValidName(service)) return { ok: false, message: `invalid service name ${quote(service)} in resource; names are 1-253 characters of A-Z a-z 0-9 . _ -` };
    if (instance !== undefined && !INSTANCE_RE.test(instance)) return { ok: false, message: `invalid instance ${quote(instance)} in resource: instance IDs are 1-253 visible ASCII characters other than \`/\` (no spaces)` };
    return { ok: true, resource: instance === undefined ? { kind: 'service', service } : { kind: 'service', service, instance } };
  }
  if (text.startsWith('namespace:')) {
    const rest = text.slice('namespace:'.length);
    if (!rest.endsWith('/*')) return { ok: false, message: `namespace resources end with \`/*\`; ${RESOURCE_FORMS}` };
    const namespace = rest.slice(0, -2);
    if (!isValidName(namespace)) return { ok: false, message: `invalid namespace name ${quote(namespace)} in resource; names are 1-253 characters of A-Z a-z 0-9 . _ -` };
    return { ok: true, resource: { kind: 'namespace', namespace } };
  }
  return { ok: false, message: `unknown resource form; ${RESOURCE_FORMS}` };
}

/** Normalised textual form of an IP address, or undefined when it is not one (IPv4-mapped IPv6 becomes IPv4). */
// A canonical dotted quad (no leading zeros) is already normal: the common case, kept off ipaddr.js.
const CANONICAL_IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

// An IPv6 address ending in a dotted quad (`::ffff:10.0.0.1`, `64:ff9b::10.0.0.1`).
const EMBEDDED_IPV4 = /^(.*:)(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/**
 * Rewrites an IPv6 address's trailing dotted quad as two hex groups. ipaddr.js 2 reads every
 * `::a.b.c.d` as IPv4-mapped (`::ffff:a.b.c.d`), so `::10.0.0.1` and `::a00:1`, one address, would
 * get two answers from a `cidrs` rule; with hex groups there is one reading.
 */
function hexTail(text: string): string {
  const m = EMBEDDED_IPV4.exec(text);
  if (m === null) return text;
  const octets = [m[2], m[3], m[4], m[5]].map(Number);
  if (octets.some((o) => o > 255)) return text; // invalid either way; ipaddr.js refuses it
  return `${m[1]}${((octets[0]! << 8) | octets[1]!).toString(16)}:${((octets[2]! << 8) | octets[3]!).toString(16)}`;
}

export function normalizeIp(text: string): string | undefined {
  if (CANONICAL_IPV4.test(text)) return text;
  // A zone (`fe80::1%eth0`) names an interface of the machine that wrote it; it is not part of an
  // address a policy can reason about, and ipaddr.js would otherwise drop it silently.
  if (text.includes('%')) return undefined;
  if (text.includes(':')) text = hexTail(text);
  if (!ipaddr.isValid(text)) return undefined;
  // ipaddr.isValid accepts legacy forms like `10.1` or `0x0a.0.0.1`; we only take the canonical ones.
  if (!ipaddr.IPv4.isValidFourPartDecimal(text) && !ipaddr.IPv6.isValid(text)) return undefined;
  const parsed = ipaddr.process(text);
  return parsed.toString();
}

export type ParsedCidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

export type CidrResult = { ok: true; cidr: ParsedCidr } | { ok: false; message: string; hint?: string };

const CIDR_EXAMPLE = 'write an IPv4 or IPv6 network like `10.0.0.0/8` or `fd00::/8`';

export function parseCidrText(text: string): CidrResult {
  if (!text.includes('/')) {
    const ip = normalizeIp(text);
    // A bare address lacks only its prefix length; anything else is not a network at all.
    if (ip === undefined) return { ok: false, message: `invalid CIDR ${quote(text)}: not an IPv4 or IPv6 CIDR`, hint: CIDR_EXAMPLE };
    return { ok: false, message: `invalid CIDR \`${text}\`: a prefix length is required`, hint: `for one address write \`${ip}/${ip.includes(':') ? 128 : 32}\`` };
  }
  const [address, bits] = text.split('/', 2) as [string, string];
  if (address.includes('%')) {
    return { ok: false, message: `invalid CIDR \`${text}\`: a zone (\`%…\`) is not part of a network`, hint: CIDR_EXAMPLE };
  }
  if (normalizeIp(address) === undefined) {
    return { ok: false, message: `invalid CIDR \`${text}\`: ${address === '' ? 'the address before `/` is missing' : `\`${address}\` is not an IPv4 or IPv6 address`}`, hint: CIDR_EXAMPLE };
  }
  if (/^0\d/.test(bits)) {
    return { ok: false, message: `invalid CIDR \`${text}\`: the prefix length \`${bits}\` has a leading zero`, hint: `write \`${address}/${Number(bits)}\`` };
  }
  if (!/^\d+$/.test(bits)) {
    const what = bits === '' ? 'the prefix length after `/` is missing' : `the prefix length \`${bits}\` is not a number`;
    return { ok: false, message: `invalid CIDR \`${text}\`: ${what}`, hint: 'IPv4 prefixes are 0-32, IPv6 prefixes 0-128' };
  }
  try {
    const cidr = ipaddr.parseCIDR(address.includes(':') ? `${hexTail(address)}/${bits}` : text) as ParsedCidr;
    if (cidr[0].kind() === 'ipv6' && (cidr[0] as ipaddr.IPv6).isIPv4MappedAddress() && cidr[1] >= 96) {
      return { ok: true, cidr: [(cidr[0] as ipaddr.IPv6).toIPv4Address(), cidr[1] - 96] };
    }
    return { ok: true, cidr };
  } catch {
    return { ok: false, message: `invalid CIDR \`${text}\`: the prefix length \`${bits}\` is out of range`, hint: 'IPv4 prefixes are 0-32, IPv6 prefixes 0-128' };
  }
}

export function parseIp(text: string): ipaddr.IPv4 | ipaddr.IPv6 {
  // The canonical dotted quad (what normalizeIp returns for IPv4) is built directly: ipaddr.process
  // tries every legacy IPv4 form and IPv6 first, about 1.5 µs per cache miss in the server profile.
  if (CANONICAL_IPV4.test(text)) {
    const parts = text.split('.');
    return new ipaddr.IPv4([+parts[0]!, +parts[1]!, +parts[2]!, +parts[3]!]);
  }
  return ipaddr.process(text.includes(':') ? hexTail(text) : text);
}

export function ipInCidr(ip: ipaddr.IPv4 | ipaddr.IPv6, cidr: ParsedCidr): boolean {
  return ip.kind() === cidr[0].kind() && ip.match(cidr);
}
