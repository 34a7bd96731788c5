// What each block may hold: the table the structure pass checks against and the source of
// did-you-mean candidates.
import type { Value } from '../syntax';

export type ValueType = 'string' | 'list of strings' | 'boolean';

export interface BlockSchema {
  label: 'required' | 'none';
  /** Block types allowed directly inside this one. */
  children: readonly string[];
  attributes: Readonly<Record<string, ValueType>>;
  /** Attributes that must be present (each entry: any one of the names). */
  required: readonly (readonly string[])[];
  /** Attribute pairs that may not appear together. */
  exclusive: readonly (readonly [string, string])[];
}

const RULE_ATTRIBUTES = {
  policy: 'string',
  identity: 'string',
  identities: 'list of strings',
  cidrs: 'list of strings',
  description: 'string',
} as const;

const RULE_SCHEMA = {
  label: 'required',
  children: [],
  attributes: RULE_ATTRIBUTES,
  required: [['policy'], ['identity', 'identities']],
  exclusive: [['identity', 'identities']],
} as const satisfies BlockSchema;

const NAMESPACE_SCHEMA = { ...RULE_SCHEMA, children: ['service', 'service_prefix'], required: [] } as const satisfies BlockSchema;

export const BLOCKS: Readonly<Record<string, BlockSchema>> = {
  service: RULE_SCHEMA,
  service_prefix: RULE_SCHEMA,
  namespace: NAMESPACE_SCHEMA,
  namespace_prefix: NAMESPACE_SCHEMA,
  role: { label: 'required', children: [], attributes: { identities: 'list of strings', description: 'string' }, required: [['identities']], exclusive: [] },
  settings: {
    label: 'none',
    children: [],
    attributes: { default_policy: 'string', anonymous: 'boolean', trust_domain: 'string' },
    required: [],
    exclusive: [],
  },
  api: { label: 'required', children: [], attributes: { identity: 'string', identities: 'list of strings', description: 'string' }, required: [['identity', 'identities']], exclusive: [['identity', 'identities']] },
  test: {
    label: 'required',
    children: [],
    attributes: { identity: 'string', action: 'string', resource: 'string', namespace: 'string', source_ip: 'string', expect: 'string', description: 'string' },
    required: [['action'], ['resource'], ['expect']],
    exclusive: [],
  },
};

export const TOP_LEVEL_BLOCKS = Object.keys(BLOCKS);
export const RULE_BLOCKS = ['service', 'service_prefix', 'namespace', 'namespace_prefix'] as const;
export type RuleBlockType = (typeof RULE_BLOCKS)[number];
export const API_SCOPES = ['authorize', 'admin', 'audit'] as const;
export type ApiScope = (typeof API_SCOPES)[number];
export const DEFAULT_POLICIES = ['deny', 'allow'] as const;

export function isRuleBlock(type: string): type is RuleBlockType {
  return (RULE_BLOCKS as readonly string[]).includes(type);
}

export function valueType(value: Value): string {
  switch (value.kind) {
    case 'string': return 'a string';
    case 'number': return 'a number';
    case 'boolean': return 'a boolean';
    case 'list': return 'a list';
  }
}

export function matchesType(value: Value, type: ValueType): boolean {
  switch (type) {
    case 'string': return value.kind === 'string';
    case 'boolean': return value.kind === 'boolean';
    case 'list of strings': return value.kind === 'list' && value.items.every((i) => i.kind === 'string');
  }
}
