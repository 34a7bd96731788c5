// One policy family, generated for N ≈ rules, expressed natively for our engine (HCL) and for each
// peer (Cedar, casbin, CASL), plus a deterministic request sample that mixes hits and misses.
//
// The family, for S = N/2 services `svc-i` (every 5th one, i % 5 == 4, in `staging`, the rest in `prod`):
//   - writer `spiffe://cluster/ns/<ns>/sa/svc-i`    may write (and so read) service svc-i in <ns>
//   - reader `spiffe://cluster/ns/<ns>/sa/client-i` may read service svc-i in <ns>
//   - role `ops` = [`team:ops`] has admin on namespace `prod` (every service in it)
//   - `team:finance` may read every `billing-*` service in `prod`            (one prefix rule)
//   - `team:finance` is explicitly denied on `billing-keys` in `prod`       (one deny rule)
// Rules: 2·S + 3, i.e. N + 3 for even N (10 → 13, 1,000 → 1,003, 10,000 → 10,003, 100,000 → 100,003).
import type { PolicySource } from '../src/engine';

export const NAMESPACES = ['prod', 'staging'] as const;
export type Action = 'read' | 'write' | 'admin';

export interface Service {
  index: number;
  name: string;
  namespace: string;
  writer: string;
  reader: string;
}

export interface Family {
  /** The requested size (≈ rules). */
  n: number;
  services: Service[];
  /** Exactly how many rules the family has (same count for every representation). */
  ruleCount: number;
  /** Identity → roles it belongs to (only `team:ops` → `ops`). */
  roles: Map<string, string[]>;
}

export const OPS = 'team:ops';
export const FINANCE = 'team:finance';
export const OPS_ROLE = 'ops';
export const BILLING_PREFIX = 'billing-';
export const BILLING_KEYS = 'billing-keys';
export const UNKNOWN = 'spiffe://cluster/ns/prod/sa/intruder';

export function serviceCountFor(n: number): number {
  return Math.max(1, Math.floor(n / 2));
}

export function makeFamily(n: number): Family {
  const count = serviceCountFor(n);
  const services: Service[] = [];
  for (let i = 0; i < count; i++) {
    const namespace = i % 5 === 4 ? 'staging' : 'prod';
    services.push({
      index: i,
      name: `svc-${i}`,
      namespace,
      writer: `spiffe://cluster/ns/${namespace}/sa/svc-${i}`,
      reader: `spiffe://cluster/ns/${namespace}/sa/client-${i}`,
    });
  }
  return { n, services, ruleCount: 2 * count + 3, roles: new Map([[OPS, [OPS_ROLE]]]) };
}

// ---- our HCL ------------------------------------------------------------------------------------

/** Services per generated file: a policy directory split the way a team would split it. */
export const SERVICES_PER_FILE = 500;

/** `common.hcl` (role, ops, finance) plus `services-NNNN.hcl` files of up to SERVICES_PER_FILE services. */
export function hclSources(family: Family, servicesPerFile = SERVICES_PER_FILE): PolicySource[] {
  const sources: PolicySource[] = [{
    path: 'common.hcl',
    text: `role "${OPS_ROLE}" {
  identities = ["${OPS}"]
}

namespace "prod" {
  policy   = "admin"
  identity = "role:${OPS_ROLE}"

  service_prefix "${BILLING_PREFIX}" {
    policy   = "read"
    identity = "${FINANCE}"
  }

  service "${BILLING_KEYS}" {
    policy   = "deny"
    identity = "${FINANCE}"
  }
}
`,
  }];
  for (let start = 0, file = 0; start < family.services.length; start += servicesPerFile, file++) {
    const chunk = family.services.slice(start, start + servicesPerFile);
    const parts: string[] = [];
    for (const ns of NAMESPACES) {
      const inNs = chunk.filter((s) => s.namespace === ns);
      if (!inNs.length) continue;
      parts.push(`namespace "${ns}" {`);
      for (const s of inNs) {
        parts.push(`  service "${s.name}" {\n    policy   = "write"\n    identity = "${s.writer}"\n  }`);
        parts.push(`  service "${s.name}" {\n    policy   = "read"\n    identity = "${s.reader}"\n  }`);
      }
      parts.push('}\n');
    }
    sources.push({ path: `services-${String(file).padStart(4, '0')}.hcl`, text: parts.join('\n') });
  }
  return sources;
}

// ---- Cedar --------------------------------------------------------------------------------------
// Principals are `User::"<identity>"` (in `Role::"ops"` for team:ops), resources are
// `Service::"<ns>/<name>"` with attributes name/namespace and parent `Namespace::"<ns>"`, and the
// level order is the action hierarchy: read ∈ write ∈ admin, so `action in Action::"write"` covers read.

export const CEDAR_SCHEMA = `entity Role;
entity User in [Role];
entity Namespace;
entity Service in [Namespace] { name: String, namespace: String };
action admin appliesTo { principal: User, resource: Service };
action write in [admin] appliesTo { principal: User, resource: Service };
action read in [write] appliesTo { principal: User, resource: Service };
`;

const cedarStr = (s: string) => JSON.stringify(s);

export function cedarCommonPolicies(): Record<string, string> {
  return {
    'ops-admin-prod': `permit (principal in Role::"${OPS_ROLE}", action in Action::"admin", resource in Namespace::"prod");`,
    'finance-billing-read': `permit (principal == User::${cedarStr(FINANCE)}, action in Action::"read", resource in Namespace::"prod") when { resource.name like "${BILLING_PREFIX}*" };`,
    'finance-billing-keys-deny': `forbid (principal == User::${cedarStr(FINANCE)}, action, resource == Service::"prod/${BILLING_KEYS}");`,
  };
}

export function cedarServicePolicies(s: Service): Record<string, string> {
  const resource = `Service::${cedarStr(`${s.namespace}/${s.name}`)}`;
  return {
    [`w-${s.namespace}-${s.name}`]: `permit (principal == User::${cedarStr(s.writer)}, action in Action::"write", resource == ${resource});`,
    [`r-${s.namespace}-${s.name}`]: `permit (principal == User::${cedarStr(s.reader)}, action in Action::"read", resource == ${resource});`,
  };
}

/** The whole family as one static policy set (id → policy text). */
export function cedarPolicySet(family: Family): Record<string, string> {
  const all: Record<string, string> = { ...cedarCommonPolicies() };
  for (const s of family.services) Object.assign(all, cedarServicePolicies(s));
  return all;
}

export interface CedarEntityJson {
  uid: { type: string; id: string };
  attrs: Record<string, string>;
  parents: { type: string; id: string }[];
}

/** The action hierarchy as entities (so authorization needs no schema at request time). */
export const CEDAR_ACTION_ENTITIES: CedarEntityJson[] = [
  { uid: { type: 'Action', id: 'admin' }, attrs: {}, parents: [] },
  { uid: { type: 'Action', id: 'write' }, attrs: {}, parents: [{ type: 'Action', id: 'admin' }] },
  { uid: { type: 'Action', id: 'read' }, attrs: {}, parents: [{ type: 'Action', id: 'write' }] },
];

/** The entity slice one request needs: principal (with its roles), resource (with its namespace), actions. */
export function cedarEntitiesFor(family: Family, r: SampleRequest): CedarEntityJson[] {
  return [
    { uid: { type: 'User', id: r.identity }, attrs: {}, parents: (family.roles.get(r.identity) ?? []).map((id) => ({ type: 'Role', id })) },
    { uid: { type: 'Service', id: `${r.namespace}/${r.service}` }, attrs: { name: r.service, namespace: r.namespace }, parents: [{ type: 'Namespace', id: r.namespace }] },
    ...CEDAR_ACTION_ENTITIES,
  ];
}

// ---- casbin -------------------------------------------------------------------------------------
// RBAC with two role graphs: g for identity → role, g2 for the level order (admin → write → read),
// keyMatch for `billing-*` and namespace-wide `*`, and deny-override as the policy effect.

export const CASBIN_MODEL = `[request_definition]
r = sub, ns, obj, act

[policy_definition]
p = sub, ns, obj, act, eft

[role_definition]
g = _, _
g2 = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = g(r.sub, p.sub) && r.ns == p.ns && keyMatch(r.obj, p.obj) && (p.act == "*" || g2(p.act, r.act))
`;

export function casbinPolicyLines(family: Family): string[] {
  const lines = [
    `p, role:${OPS_ROLE}, prod, *, admin, allow`,
    `p, ${FINANCE}, prod, ${BILLING_PREFIX}*, read, allow`,
    `p, ${FINANCE}, prod, ${BILLING_KEYS}, *, deny`,
  ];
  for (const s of family.services) {
    lines.push(`p, ${s.writer}, ${s.namespace}, ${s.name}, write, allow`);
    lines.push(`p, ${s.reader}, ${s.namespace}, ${s.name}, read, allow`);
  }
  lines.push(`g, ${OPS}, role:${OPS_ROLE}`, 'g2, admin, write', 'g2, write, read');
  return lines;
}

// ---- CASL ---------------------------------------------------------------------------------------
// Subject type `Service` with fields name/namespace; the level order through an alias resolver
// (admin ⊃ write ⊃ read); the deny as an inverted `manage` rule placed last (CASL: later rules win).

export const CASL_ALIASES = { admin: 'write', write: 'read' } as const;

export interface CaslRawRule {
  action: string;
  subject: string;
  conditions?: Record<string, unknown>;
  inverted?: boolean;
}

function caslCommonFor(identity: string, roles: string[]): { grants: CaslRawRule[]; denies: CaslRawRule[] } {
  const grants: CaslRawRule[] = [];
  const denies: CaslRawRule[] = [];
  if (roles.includes(OPS_ROLE)) grants.push({ action: 'admin', subject: 'Service', conditions: { namespace: 'prod' } });
  if (identity === FINANCE) {
    grants.push({ action: 'read', subject: 'Service', conditions: { namespace: 'prod', name: { $regex: `^${BILLING_PREFIX}` } } });
    denies.push({ action: 'manage', subject: 'Service', conditions: { namespace: 'prod', name: BILLING_KEYS }, inverted: true });
  }
  return { grants, denies };
}

/** Identity → its own rules (the idiomatic CASL shape: one Ability per user). */
export function caslRulesByIdentity(family: Family): Map<string, CaslRawRule[]> {
  const out = new Map<string, CaslRawRule[]>();
  const push = (id: string, rule: CaslRawRule) => {
    const list = out.get(id);
    if (list) list.push(rule);
    else out.set(id, [rule]);
  };
  for (const s of family.services) {
    push(s.writer, { action: 'write', subject: 'Service', conditions: { namespace: s.namespace, name: s.name } });
    push(s.reader, { action: 'read', subject: 'Service', conditions: { namespace: s.namespace, name: s.name } });
  }
  for (const identity of [OPS, FINANCE]) {
    const { grants, denies } = caslCommonFor(identity, family.roles.get(identity) ?? []);
    for (const r of [...grants, ...denies]) push(identity, r);
  }
  return out;
}

/** One rules array for everyone: the subject carries `principal` and `roles` and rules condition on them. */
export function caslGlobalRules(family: Family): CaslRawRule[] {
  const rules: CaslRawRule[] = [
    { action: 'admin', subject: 'Service', conditions: { namespace: 'prod', roles: OPS_ROLE } },
    { action: 'read', subject: 'Service', conditions: { principal: FINANCE, namespace: 'prod', name: { $regex: `^${BILLING_PREFIX}` } } },
  ];
  for (const s of family.services) {
    rules.push({ action: 'write', subject: 'Service', conditions: { principal: s.writer, namespace: s.namespace, name: s.name } });
    rules.push({ action: 'read', subject: 'Service', conditions: { principal: s.reader, namespace: s.namespace, name: s.name } });
  }
  rules.push({ action: 'manage', subject: 'Service', conditions: { principal: FINANCE, namespace: 'prod', name: BILLING_KEYS }, inverted: true });
  return rules;
}

// ---- the Map.get floor ----------------------------------------------------------------------------

export const floorKey = (identity: string, action: string, service: string, namespace: string) => `${identity}|${action}|${service}|${namespace}`;

/**
 * Every (identity, action, service, namespace) the family grants, as keys of a Map → true, for the
 * services in the family plus the extra service names the sample asks about (the prefix rule cannot
 * be enumerated; the floor only has to agree on the sample). A missing key is a deny.
 */
export function floorMap(family: Family, extraServices: readonly string[]): Map<string, boolean> {
  const m = new Map<string, boolean>();
  for (const s of family.services) {
    m.set(floorKey(s.writer, 'write', s.name, s.namespace), true);
    m.set(floorKey(s.writer, 'read', s.name, s.namespace), true);
    m.set(floorKey(s.reader, 'read', s.name, s.namespace), true);
    if (s.namespace === 'prod') for (const a of ['read', 'write', 'admin']) m.set(floorKey(OPS, a, s.name, s.namespace), true);
  }
  for (const name of extraServices) {
    for (const a of ['read', 'write', 'admin']) m.set(floorKey(OPS, a, name, 'prod'), true);
    if (name.startsWith(BILLING_PREFIX) && name !== BILLING_KEYS) m.set(floorKey(FINANCE, 'read', name, 'prod'), true);
  }
  return m;
}

// ---- the request sample -------------------------------------------------------------------------

export interface SampleRequest {
  /** What the request exercises (for disagreement reports). */
  kind: string;
  identity: string;
  action: Action;
  service: string;
  namespace: string;
  /** What the family means (hand-derived), checked against our engine before any timing. */
  intended: boolean;
}

/** Names outside the family that the sample asks about. */
export const EXTRA_SERVICES = ['billing-ledger', 'billing-invoices', BILLING_KEYS];

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const KINDS = [
  'writer writes own service',
  'reader reads',
  'reader writes (deny)',
  'writer reads own service',
  'ops admin in prod',
  'ops admin in staging (deny)',
  'finance reads billing-* (prefix)',
  'finance reads billing-keys (explicit deny)',
  'unknown identity writes (deny)',
  'writer writes another service (deny)',
  'finance writes billing-* (deny)',
  'reader in the wrong namespace (deny)',
] as const;

/** `count` requests cycling through every kind, services drawn at random (seeded) from the family. */
export function sampleRequests(family: Family, count: number, seed = 42): SampleRequest[] {
  const rand = mulberry32(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
  const prod = family.services.filter((s) => s.namespace === 'prod');
  const staging = family.services.filter((s) => s.namespace === 'staging');
  const out: SampleRequest[] = [];
  for (let i = 0; i < count; i++) {
    const kind = KINDS[i % KINDS.length]!;
    const s = pick(family.services);
    const r = (identity: string, action: Action, service: string, namespace: string, intended: boolean): SampleRequest =>
      ({ kind, identity, action, service, namespace, intended });
    switch (kind) {
      case 'writer writes own service': out.push(r(s.writer, 'write', s.name, s.namespace, true)); break;
      case 'reader reads': out.push(r(s.reader, 'read', s.name, s.namespace, true)); break;
      case 'reader writes (deny)': out.push(r(s.reader, 'write', s.name, s.namespace, false)); break;
      case 'writer reads own service': out.push(r(s.writer, 'read', s.name, s.namespace, true)); break;
      case 'ops admin in prod': {
        const p = prod.length ? pick(prod) : s;
        out.push(r(OPS, pick(['admin', 'write', 'read'] as const), p.name, 'prod', true));
        break;
      }
      case 'ops admin in staging (deny)': {
        const st = staging.length ? pick(staging) : s;
        out.push(r(OPS, 'admin', st.name, 'staging', false));
        break;
      }
      case 'finance reads billing-* (prefix)': out.push(r(FINANCE, 'read', pick(['billing-ledger', 'billing-invoices']), 'prod', true)); break;
      case 'finance reads billing-keys (explicit deny)': out.push(r(FINANCE, 'read', BILLING_KEYS, 'prod', false)); break;
      case 'unknown identity writes (deny)': out.push(r(UNKNOWN, 'write', s.name, s.namespace, false)); break;
      case 'writer writes another service (deny)': {
        const other = family.services[(s.index + 1) % family.services.length]!;
        out.push(r(s.writer, 'write', other.name, other.namespace, other === s));
        break;
      }
      case 'finance writes billing-* (deny)': out.push(r(FINANCE, 'write', 'billing-ledger', 'prod', false)); break;
      case 'reader in the wrong namespace (deny)': out.push(r(s.reader, 'read', s.name, s.namespace === 'prod' ? 'staging' : 'prod', false)); break;
    }
  }
  return out;
}
