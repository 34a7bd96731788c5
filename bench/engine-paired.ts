// Paired measurements for the ratio targets: in ONE process, our engine at N, the Map.get floor at N
// and our engine at N = 10 are timed in alternating rounds, so a ratio compares numbers taken seconds
// apart under the same machine load (on a shared 2-core machine, separate processes minutes apart
// can differ by 2× for reasons that have nothing to do with the code).
//
// Every subject gets its own copy of the timing loop (new Function), so each loop's call site stays
// monomorphic, as it is in the one-subject-per-process runs of engine-worker.ts.
import { buildPolicySet, decideWith, type LoadedPolicy } from '../src/engine';
import { evaluate, prepareRequest, type RawRequest, type Request } from '../src/eval';
import { forkedOnly } from './args';
import { loadedEngineHash } from './code-hash';
import { EXTRA_SERVICES, floorKey, floorMap, hclSources, makeFamily, sampleRequests } from './policy-family';

export interface PairedTask {
  n: number;
  sampleSize: number;
  rounds: number;
  roundMs: number;
  warmupMs: number;
}

export type PairedSubject = 'evaluate@N' | 'decide@N' | 'map-prebuilt@N' | 'map-key@N' | 'evaluate@10' | 'decide@10';

export interface PairedResult {
  n: number;
  rounds: number;
  roundMs: number;
  /** Per subject: the p50 (ns per decision) of each round, and their median. */
  p50: Record<string, { rounds: number[]; median: number; blockSize: number }>;
  /** Per ratio: the value in each round (numerator and denominator from the same round) and the median. */
  ratios: Record<string, { rounds: number[]; median: number }>;
  engineHash: string;
}

type Loop = (decide: (x: unknown) => boolean, inputs: unknown[], mask: number, blockSize: number, untilNs: bigint, out: number[], overhead: number) => number;

const LOOP_BODY = `
  let sink = 0, k = 0;
  for (;;) {
    const b0 = process.hrtime.bigint();
    for (let j = 0; j < blockSize; j++) { if (decide(inputs[k & mask])) sink++; k++; }
    const t = process.hrtime.bigint();
    out.push(Math.max(0, Number(t - b0) - overhead) / blockSize);
    if (t >= untilNs) break;
  }
  return sink;
`;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[s.length >> 1]! : NaN;
};

function timerOverhead(): number {
  const o: number[] = [];
  for (let i = 0; i < 2001; i++) {
    const a = process.hrtime.bigint();
    o.push(Number(process.hrtime.bigint() - a));
  }
  return median(o);
}

interface Subject {
  name: PairedSubject;
  decide: (x: unknown) => boolean;
  inputs: unknown[];
  /** The policy family's hand-derived answer for each input: checked before anything is timed. */
  intents: boolean[];
  loop: Loop;
  blockSize: number;
  p50s: number[];
}

function oursSubjects(policy: LoadedPolicy, n: number, sampleSize: number, suffix: '@N' | '@10'): Subject[] {
  const family = makeFamily(n);
  const sample = sampleRequests(family, sampleSize);
  const raws: RawRequest[] = sample.map((r) => ({ identity: r.identity, action: r.action, resource: `service:${r.service}`, namespace: r.namespace }));
  const prepared: Request[] = raws.map((r) => {
    const p = prepareRequest(r);
    if (!p.ok) throw new Error(p.error.message);
    return p.request;
  });
  const compiled = policy.compiled;
  const intents = sample.map((r) => r.intended);
  return [
    { name: `evaluate${suffix}` as PairedSubject, decide: (x) => evaluate(compiled, x as Request, (x as Request).identity!).allow, inputs: prepared, intents, loop: newLoop(), blockSize: 1, p50s: [] },
    { name: `decide${suffix}` as PairedSubject, decide: (x) => { const d = decideWith(policy, x as RawRequest); return d.ok && d.decision.allow; }, inputs: raws, intents, loop: newLoop(), blockSize: 1, p50s: [] },
  ];
}

function newLoop(): Loop {
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  return new Function('decide', 'inputs', 'mask', 'blockSize', 'untilNs', 'out', 'overhead', LOOP_BODY) as Loop;
}

function build(n: number): LoadedPolicy {
  const built = buildPolicySet(hclSources(makeFamily(n)));
  if (!built.policy) throw new Error(`N = ${n}: the policy set did not build`);
  return built.policy;
}

export function runPaired(task: PairedTask): PairedResult {
  const family = makeFamily(task.n);
  const sample = sampleRequests(family, task.sampleSize);
  const map = floorMap(family, EXTRA_SERVICES);
  const keys = sample.map((r) => floorKey(r.identity, r.action, r.service, r.namespace));
  const subjects: Subject[] = [
    ...oursSubjects(build(task.n), task.n, task.sampleSize, '@N'),
    { name: 'map-prebuilt@N', decide: (key) => map.get(key as string) === true, inputs: keys, intents: sample.map((r) => r.intended), loop: newLoop(), blockSize: 100, p50s: [] },
    {
      name: 'map-key@N',
      decide: (x) => {
        const r = x as { identity: string; action: string; service: string; namespace: string };
        return map.get(`${r.identity}|${r.action}|${r.service}|${r.namespace}`) === true;
      },
      inputs: sample,
      intents: sample.map((r) => r.intended),
      loop: newLoop(),
      blockSize: 1,
      p50s: [],
    },
  ];
  subjects.push(...oursSubjects(build(10), 10, task.sampleSize, '@10'));
  // Nothing is timed that decides wrongly: every subject against the family's intent, on every input.
  for (const s of subjects) {
    const wrong = s.inputs.filter((input, i) => s.decide(input) !== s.intents[i]).length;
    if (wrong > 0) throw new Error(`paired subject ${s.name} decides ${wrong} of ${s.inputs.length} requests against the policy family's intent; nothing was timed`);
  }

  const overhead = timerOverhead();
  const mask = task.sampleSize - 1;
  const ns = (ms: number) => process.hrtime.bigint() + BigInt(Math.round(ms * 1e6));
  // Warmup, and a block size of ~20 µs per subject.
  for (const s of subjects) {
    const warm: number[] = [];
    s.loop(s.decide, s.inputs, mask, 10, ns(task.warmupMs), warm, overhead);
    const est = median(warm.slice(warm.length >> 1));
    s.blockSize = Math.max(1, Math.min(100, Math.round(20_000 / Math.max(est, 1))));
  }
  for (let round = 0; round < task.rounds; round++) {
    // Rotate the order each round so no subject always runs first after a pause.
    for (let i = 0; i < subjects.length; i++) {
      const s = subjects[(i + round) % subjects.length]!;
      const out: number[] = [];
      s.loop(s.decide, s.inputs, mask, s.blockSize, ns(task.roundMs), out, overhead);
      s.p50s.push(median(out));
    }
  }
  const by = new Map(subjects.map((s) => [s.name, s]));
  const ratio = (a: PairedSubject, b: PairedSubject) => {
    const x = by.get(a)!.p50s;
    const y = by.get(b)!.p50s;
    const rounds = x.map((v, i) => v / y[i]!);
    return { rounds, median: median(rounds) };
  };
  return {
    n: task.n,
    engineHash: loadedEngineHash(),
    rounds: task.rounds,
    roundMs: task.roundMs,
    p50: Object.fromEntries(subjects.map((s) => [s.name, { rounds: s.p50s, median: median(s.p50s), blockSize: s.blockSize }])),
    ratios: {
      'evaluate@N / map-prebuilt@N': ratio('evaluate@N', 'map-prebuilt@N'),
      'decide@N / map-key@N': ratio('decide@N', 'map-key@N'),
      'evaluate@N / map-key@N': ratio('evaluate@N', 'map-key@N'),
      'evaluate@N / evaluate@10': ratio('evaluate@N', 'evaluate@10'),
      'decide@N / decide@10': ratio('decide@N', 'decide@10'),
    },
  };
}

if (require.main === module) {
  const unforked = forkedOnly('engine-paired.js', 'bench/engine.ts', 'node dist/bench/run.js --only engine');
  if (unforked) process.exit(unforked.exit);
  process.once('message', (task: PairedTask) => {
    try {
      const result = runPaired(task);
      process.send!({ type: 'result', result }, () => process.exit(0));
    } catch (e) {
      process.send!({ type: 'error', message: (e as Error).stack ?? String(e) }, () => process.exit(1));
    }
  });
}
