// One (engine or peer, N) measurement in its own process: forked by bench/engine.ts, which enforces
// the load and run budgets from the outside (a synchronous load cannot be interrupted from inside)
// and survives a crash here (cedar-wasm 4.13 can take Node 20 down with a V8 fatal error).
//
// Protocol: the parent sends one WorkerTask; this process answers with {type:'loaded'}, then
// {type:'agreed'}, then {type:'result'} (or {type:'error'}) and exits.
import {
  CASBIN_MODEL, CASL_ALIASES, CEDAR_SCHEMA, EXTRA_SERVICES, cedarCommonPolicies, cedarEntitiesFor, cedarPolicySet, cedarServicePolicies,
  casbinPolicyLines, caslGlobalRules, caslRulesByIdentity, floorKey, floorMap, hclSources, makeFamily, sampleRequests,
  type Family, type SampleRequest,
} from './policy-family';
import { forkedOnly } from './args';
import { loadedEngineHash } from './code-hash';

export const PEERS = [
  'ours-decide',
  'ours-evaluate',
  'map-prebuilt',
  'map-key',
  'casl-identity',
  'casl-global',
  'casbin',
  'cedar-sliced',
  'cedar-whole',
] as const;
export type PeerId = (typeof PEERS)[number];

export interface WorkerTask {
  peer: PeerId;
  n: number;
  sampleSize: number;
  /** How many sample requests the agreement check decides (≥ 200). */
  agreeCount: number;
  /** Our engine's allow/deny on the first agreeCount requests; absent for our own runs. */
  expected?: boolean[];
  warmupMs: number;
  /** Measure at least this long and at least minDecisions, but never longer than runCapMs. */
  runMs: number;
  minDecisions: number;
  runCapMs: number;
  /** Our engine only: also time parse / check / compile separately (a second build). */
  phases?: boolean;
}

export interface Disagreement {
  index: number;
  kind: string;
  request: string;
  expected: boolean;
  got: boolean | string;
}

export interface WorkerResult {
  peer: PeerId;
  n: number;
  ruleCount: number;
  loadMs: number;
  /** CPU time (user + system, GC threads included) of the load: what an unshared machine would see, roughly. */
  loadCpuMs?: number;
  rssBeforeMB: number;
  rssAfterMB: number;
  heapAfterMB: number;
  agreement: { checked: number; disagreements: Disagreement[]; errors: number };
  /** Our engine: its allow/deny on the agreement slice. */
  decisions?: boolean[];
  /** Our engine's run: the family's hand-derived intent on the agreement slice, the reference every peer is checked against. */
  intents?: boolean[];
  /** Our engine: disagreements with the hand-derived intent of each request. */
  intentMismatches?: Disagreement[];
  decisionsMeasured: number;
  measuredMs: number;
  /** Decisions per wall-clock second over the timed run (includes time the process was not scheduled). */
  opsPerSec: number;
  /** Decisions per second of this process's CPU time (user + system, GC threads included). */
  opsPerCpuSec: number;
  /** CPU time ÷ wall time during the run: below 1 when the shared machine did not schedule us. */
  cpuShare: number;
  meanNs: number;
  p50Ns: number;
  p99Ns: number;
  blockSize: number;
  /** Median cost of the two clock reads around a block, subtracted from each block. */
  timerOverheadNs?: number;
  cappedByTime: boolean;
  /** Our engine: fingerprint of the compiled engine code this process loaded. */
  engineHash?: string;
  phasesMs?: { parse: number; check: number; compile: number; total: number; totalCpu?: number; files: number };
  notes: string[];
}

interface Subject<P> {
  load(): void | Promise<void>;
  /** Untimed checks after the load (e.g. schema validation). */
  afterLoad?(): void;
  prepare(r: SampleRequest): P;
  decide(p: P): boolean;
  notes: string[];
}

const describe = (r: SampleRequest) => `${r.identity} ${r.action} service:${r.service} ns=${r.namespace}`;
const mb = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10;
const gc = () => (globalThis as { gc?: () => void }).gc?.();

// ---- the subjects ----------------------------------------------------------------------------------

/* eslint-disable @typescript-eslint/no-require-imports */
function ours(family: Family, mode: 'decide' | 'evaluate'): Subject<unknown> {
  const engine = require('../src/engine') as typeof import('../src/engine');
  const evalMod = require('../src/eval') as typeof import('../src/eval');
  const sources = hclSources(family);
  let policy: import('../src/engine').LoadedPolicy | undefined;
  const notes: string[] = [`${sources.length} files`];
  return {
    notes,
    load() {
      const built = engine.buildPolicySet(sources);
      const errors = built.diagnostics.filter((d) => d.severity === 'error');
      if (!built.policy) throw new Error(`policy set did not build: ${errors.slice(0, 3).map((d) => d.message).join('; ')}`);
      if (built.policy.ruleCount !== family.ruleCount) throw new Error(`expected ${family.ruleCount} rules, compiled ${built.policy.ruleCount}`);
      policy = built.policy;
    },
    prepare(r) {
      const raw = { identity: r.identity, action: r.action, resource: `service:${r.service}`, namespace: r.namespace };
      if (mode === 'decide') return raw;
      const prepared = evalMod.prepareRequest(raw);
      if (!prepared.ok) throw new Error(`request refused: ${prepared.error.message}`);
      return prepared.request;
    },
    decide: mode === 'decide'
      ? (raw) => {
        const d = engine.decideWith(policy!, raw as import('../src/eval').RawRequest);
        return d.ok && d.decision.allow;
      }
      : (req) => evalMod.evaluate(policy!.compiled, req as import('../src/eval').Request, (req as import('../src/eval').Request).identity!).allow,
  };
}

function timePhases(sources: import('../src/engine').PolicySource[]): NonNullable<WorkerResult['phasesMs']> {
  const { parsePolicy } = require('../src/syntax') as typeof import('../src/syntax');
  const { checkPolicySet } = require('../src/check') as typeof import('../src/check');
  const { compilePolicySet } = require('../src/compile') as typeof import('../src/compile');
  const { buildDecisionTable } = require('../src/eval') as typeof import('../src/eval');
  gc();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const files = sources.map((s) => parsePolicy(s.text, s.path).file);
  const t1 = performance.now();
  checkPolicySet(files);
  const t2 = performance.now();
  const compiled = compilePolicySet(files);
  buildDecisionTable(compiled.index, compiled.settings); // part of compiling, as buildPolicySet does it
  const t3 = performance.now();
  const c = process.cpuUsage(c0);
  return { parse: t1 - t0, check: t2 - t1, compile: t3 - t2, total: t3 - t0, totalCpu: (c.user + c.system) / 1000, files: sources.length };
}

function mapFloor(family: Family, prebuilt: boolean): Subject<unknown> {
  let map: Map<string, boolean> | undefined;
  return {
    notes: [prebuilt ? 'key string built before timing' : 'key string built per decision from the four fields'],
    load() {
      map = floorMap(family, EXTRA_SERVICES);
    },
    prepare(r) {
      return prebuilt ? floorKey(r.identity, r.action, r.service, r.namespace) : r;
    },
    decide: prebuilt
      ? (key) => map!.get(key as string) === true
      : (p) => {
        const r = p as SampleRequest;
        return map!.get(`${r.identity}|${r.action}|${r.service}|${r.namespace}`) === true;
      },
  };
}

function casl(family: Family, mode: 'identity' | 'global'): Subject<unknown> {
  const { createMongoAbility, createAliasResolver, subject } = require('@casl/ability') as typeof import('@casl/ability');
  const resolveAction = createAliasResolver(CASL_ALIASES as unknown as Record<string, string>);
  type Ability = ReturnType<typeof createMongoAbility>;
  if (mode === 'identity') {
    const byIdentity = caslRulesByIdentity(family);
    const abilities = new Map<string, Ability>();
    const nobody = createMongoAbility([], { resolveAction });
    return {
      notes: [`${byIdentity.size} Ability objects (one per identity)`],
      load() {
        for (const [identity, rules] of byIdentity) abilities.set(identity, createMongoAbility(rules as never, { resolveAction }));
      },
      prepare(r) {
        return { identity: r.identity, action: r.action, subject: subject('Service', { name: r.service, namespace: r.namespace }) };
      },
      decide(p) {
        const q = p as { identity: string; action: string; subject: object };
        return (abilities.get(q.identity) ?? nobody).can(q.action, q.subject as never);
      },
    };
  }
  const rules = caslGlobalRules(family);
  let ability: { can(action: string, subject: never): boolean } | undefined;
  return {
    notes: [`one Ability, ${rules.length} rules; the subject carries principal and roles`],
    load() {
      ability = createMongoAbility(rules as never, { resolveAction });
    },
    prepare(r) {
      return {
        action: r.action,
        subject: subject('Service', { name: r.service, namespace: r.namespace, principal: r.identity, roles: family.roles.get(r.identity) ?? [] }),
      };
    },
    decide(p) {
      const q = p as { action: string; subject: object };
      return ability!.can(q.action, q.subject as never);
    },
  };
}

function casbin(family: Family): Subject<unknown> {
  const lib = require('casbin') as typeof import('casbin');
  const lines = casbinPolicyLines(family).join('\n');
  let enforcer: import('casbin').Enforcer | undefined;
  return {
    notes: ['newEnforcer(model, StringAdapter) then enforceSync'],
    async load() {
      enforcer = await lib.newEnforcer(lib.newModelFromString(CASBIN_MODEL), new lib.StringAdapter(lines));
    },
    prepare(r) {
      return [r.identity, r.namespace, r.service, r.action];
    },
    decide(p) {
      const [sub, ns, obj, act] = p as string[];
      return enforcer!.enforceSync(sub, ns, obj, act);
    },
  };
}

function cedar(family: Family, mode: 'sliced' | 'whole'): Subject<unknown> {
  const c = require('@cedar-policy/cedar-wasm/nodejs') as typeof import('@cedar-policy/cedar-wasm/nodejs');
  const sliceIds = new Map<string, string>();
  const notes: string[] = [`cedar-wasm ${c.getCedarVersion()}`, 'preparsePolicySet once, statefulIsAuthorized per decision; entities for the request built before timing'];
  const fail = (what: string, answer: { type: string; errors?: { message: string }[] }) => {
    if (answer.type !== 'success') throw new Error(`${what}: ${(answer.errors ?? []).map((e) => e.message).slice(0, 3).join('; ')}`);
  };
  let wholeText: Record<string, string> | undefined;
  if (mode === 'whole') wholeText = cedarPolicySet(family);
  return {
    notes,
    load() {
      if (mode === 'whole') {
        fail('preparsePolicySet', c.preparsePolicySet('whole', { staticPolicies: wholeText! }));
        return;
      }
      const common = cedarCommonPolicies();
      fail('preparsePolicySet', c.preparsePolicySet('common', { staticPolicies: common }));
      for (const s of family.services) {
        const id = `${s.namespace}/${s.name}`;
        fail('preparsePolicySet', c.preparsePolicySet(id, { staticPolicies: { ...common, ...cedarServicePolicies(s) } }));
        sliceIds.set(id, id);
      }
      notes.push(`${family.services.length + 1} preparsed policy sets (one per service + the common slice)`);
    },
    afterLoad() {
      if (mode !== 'whole' || family.services.length > 500) return;
      const v = c.validate({ schema: CEDAR_SCHEMA, policies: { staticPolicies: wholeText! } });
      notes.push(v.type === 'success' && v.validationErrors.length === 0 ? 'the policy set validates against the schema (strict)' : `schema validation: ${JSON.stringify(v).slice(0, 300)}`);
    },
    prepare(r) {
      return {
        key: `${r.namespace}/${r.service}`,
        principal: { type: 'User', id: r.identity },
        action: { type: 'Action', id: r.action },
        resource: { type: 'Service', id: `${r.namespace}/${r.service}` },
        entities: cedarEntitiesFor(family, r),
      };
    },
    decide(p) {
      const q = p as { key: string; principal: { type: string; id: string }; action: { type: string; id: string }; resource: { type: string; id: string }; entities: never };
      const answer = c.statefulIsAuthorized({
        principal: q.principal,
        action: q.action,
        resource: q.resource,
        context: {},
        preparsedPolicySetId: mode === 'whole' ? 'whole' : sliceIds.get(q.key) ?? 'common',
        entities: q.entities,
      });
      if (answer.type !== 'success') throw new Error(`isAuthorized failed: ${answer.errors.map((e) => e.message).join('; ')}`);
      return answer.response.decision === 'allow';
    },
  };
}

function subjectFor(task: WorkerTask, family: Family): Subject<unknown> {
  switch (task.peer) {
    case 'ours-decide': return ours(family, 'decide');
    case 'ours-evaluate': return ours(family, 'evaluate');
    case 'map-prebuilt': return mapFloor(family, true);
    case 'map-key': return mapFloor(family, false);
    case 'casl-identity': return casl(family, 'identity');
    case 'casl-global': return casl(family, 'global');
    case 'casbin': return casbin(family);
    case 'cedar-sliced': return cedar(family, 'sliced');
    case 'cedar-whole': return cedar(family, 'whole');
  }
}

// ---- measuring ----------------------------------------------------------------------------------------

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

async function main(task: WorkerTask): Promise<WorkerResult> {
  const send = (m: unknown) => process.send?.(m);
  const family = makeFamily(task.n);
  const sample = sampleRequests(family, task.sampleSize);
  const subject = subjectFor(task, family);
  gc();
  const rssBefore = process.memoryUsage().rss;

  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await subject.load();
  const loadMs = performance.now() - t0;
  const lc = process.cpuUsage(c0);
  const loadCpuMs = (lc.user + lc.system) / 1000;
  gc();
  const mem = process.memoryUsage();
  send({ type: 'loaded', loadMs });
  subject.afterLoad?.();
  const engineHash = task.peer.startsWith('ours') ? loadedEngineHash() : undefined;

  const inputs = sample.map((r) => subject.prepare(r));

  // Agreement before timing.
  const agreeCount = Math.min(task.agreeCount, sample.length);
  const disagreements: Disagreement[] = [];
  const decisions: boolean[] = [];
  const intentMismatches: Disagreement[] = [];
  let errors = 0;
  for (let i = 0; i < agreeCount; i++) {
    const r = sample[i]!;
    let got: boolean | string;
    try {
      got = subject.decide(inputs[i]);
    } catch (e) {
      got = `error: ${(e as Error).message}`;
      errors++;
    }
    if (task.expected) {
      if (got !== task.expected[i]) disagreements.push({ index: i, kind: r.kind, request: describe(r), expected: task.expected[i]!, got });
      if ((i + 1) % 10 === 0) send({ type: 'progress', checked: i + 1, disagreements: disagreements.length });
    } else {
      decisions.push(got === true);
      if (got !== r.intended) intentMismatches.push({ index: i, kind: r.kind, request: describe(r), expected: r.intended, got });
    }
  }
  send({ type: 'agreed', disagreements: disagreements.length });

  const base: Omit<WorkerResult, 'decisionsMeasured' | 'measuredMs' | 'opsPerSec' | 'opsPerCpuSec' | 'cpuShare' | 'meanNs' | 'p50Ns' | 'p99Ns' | 'blockSize' | 'cappedByTime'> = {
    peer: task.peer,
    n: task.n,
    ruleCount: family.ruleCount,
    loadMs,
    loadCpuMs,
    rssBeforeMB: mb(rssBefore),
    rssAfterMB: mb(mem.rss),
    heapAfterMB: mb(mem.heapUsed),
    agreement: { checked: agreeCount, disagreements, errors },
    notes: subject.notes,
    ...(engineHash ? { engineHash } : {}),
    ...(task.expected ? {} : { decisions, intents: sample.slice(0, agreeCount).map((r) => r.intended), intentMismatches }),
  };
  if (errors > 0 || disagreements.length > 0 || intentMismatches.length > 0) {
    // An engine that decides wrongly (a peer against the intent, pdp against the intent) is reported as such, not timed.
    return { ...base, decisionsMeasured: 0, measuredMs: 0, opsPerSec: NaN, opsPerCpuSec: NaN, cpuShare: NaN, meanNs: NaN, p50Ns: NaN, p99Ns: NaN, blockSize: 0, cappedByTime: false };
  }

  const decide = subject.decide;
  const mask = inputs.length - 1; // sampleSize is a power of two
  let sink = 0;
  let k = 0;

  // Warmup in blocks of 10, and a first estimate of the cost of one decision: the median block of the
  // second half (after the JIT has settled; the median ignores blocks the scheduler interrupted).
  const warmStart = process.hrtime.bigint();
  const warmEnd = warmStart + BigInt(Math.round(task.warmupMs * 1e6));
  const warmMid = warmStart + (warmEnd - warmStart) / 2n;
  const late: number[] = [];
  let now = warmStart;
  while (now < warmEnd || late.length < 3) {
    const b0 = now;
    for (let j = 0; j < 10; j++) {
      if (decide(inputs[k & mask])) sink++;
      k++;
    }
    now = process.hrtime.bigint();
    if (now >= warmMid && late.length < 100_000) late.push(Number(now - b0) / 10);
    if (Number(now - warmStart) / 1e6 > task.runCapMs) break;
  }
  late.sort((a, b) => a - b);
  const estimateNs = late.length ? late[late.length >> 1]! : Number(now - warmStart) / 10;
  // Blocks of ~20 µs (at most 100 decisions, at least 1): per-decision latency = block time / block size.
  const blockSize = Math.max(1, Math.min(100, Math.round(20_000 / Math.max(estimateNs, 1))));
  // The cost of reading the clock twice, subtracted from every block.
  const overheads: number[] = [];
  for (let i = 0; i < 2001; i++) {
    const a = process.hrtime.bigint();
    overheads.push(Number(process.hrtime.bigint() - a));
  }
  overheads.sort((a, b) => a - b);
  const timerOverheadNs = overheads[1000]!;

  const maxBlocks = 2_000_000;
  const perDecision = new Float64Array(maxBlocks);
  let blocks = 0;
  let decided = 0;
  const cpu0 = process.cpuUsage();
  const start = process.hrtime.bigint();
  const minEnd = start + BigInt(Math.round(task.runMs * 1e6));
  const capEnd = start + BigInt(Math.round(task.runCapMs * 1e6));
  let cappedByTime = false;
  let t = start;
  for (;;) {
    const b0 = process.hrtime.bigint();
    for (let j = 0; j < blockSize; j++) {
      if (decide(inputs[k & mask])) sink++;
      k++;
    }
    t = process.hrtime.bigint();
    perDecision[blocks++] = Math.max(0, Number(t - b0) - timerOverheadNs) / blockSize;
    decided += blockSize;
    if (t >= minEnd && decided >= task.minDecisions) break;
    if (t >= capEnd) {
      cappedByTime = decided < task.minDecisions;
      break;
    }
    if (blocks === maxBlocks) break;
  }
  const totalNs = Number(t - start);
  const cpu = process.cpuUsage(cpu0);
  const cpuNs = (cpu.user + cpu.system) * 1000;
  // After timing: parse / check / compile separately (a second build of the same sources).
  const phasesMs = task.phases && task.peer.startsWith('ours') ? timePhases(hclSources(family)) : undefined;
  const sorted = perDecision.slice(0, blocks).sort();
  if (sink === -1) console.log('unreachable');
  return {
    ...base,
    decisionsMeasured: decided,
    measuredMs: totalNs / 1e6,
    opsPerSec: decided / (totalNs / 1e9),
    opsPerCpuSec: decided / (cpuNs / 1e9),
    cpuShare: cpuNs / totalNs,
    meanNs: totalNs / decided,
    p50Ns: percentile(sorted, 0.5),
    p99Ns: percentile(sorted, 0.99),
    blockSize,
    timerOverheadNs,
    cappedByTime,
    ...(phasesMs ? { phasesMs } : {}),
  };
}

if (require.main === module) {
  const unforked = forkedOnly('engine-worker.js', 'bench/engine.ts', 'node dist/bench/run.js --only engine');
  if (unforked) process.exit(unforked.exit);
  process.once('message', (task: WorkerTask) => {
    main(task).then(
      (result) => process.send!({ type: 'result', result }, () => process.exit(0)),
      (e: Error) => process.send!({ type: 'error', message: e.stack ?? e.message }, () => process.exit(1)),
    );
  });
}
