// Where our engine's time goes. Not part of `npm run bench`; run it under the V8 profiler:
//
//   node dist/bench/profile-engine.js evaluate 100000 5 /tmp/eval-100k.cpuprofile   (profiles the loop only)
//   node --cpu-prof --cpu-prof-dir=/tmp/pdp-prof dist/bench/profile-engine.js load 10000
//   node dist/bench/profile-engine.js summarize /tmp/pdp-prof/<file>.cpuprofile
//
// modes: load N (buildPolicySet, three times) | evaluate N SECONDS [PROFILE] | decide N SECONDS [PROFILE]
//        | summarize FILE. The decision modes also report the garbage collections during the loop.
import fs from 'node:fs';
import inspector from 'node:inspector';
import { PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { buildPolicySet, decideWith } from '../src/engine';
import { evaluate, prepareRequest, type Request } from '../src/eval';
import { benchArgs, refuse } from './args';
import { hclSources, makeFamily, sampleRequests } from './policy-family';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

/** Self time per function (and per file), from a .cpuprofile. */
export function summarize(file: string, top = 25): string {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const byFn = new Map<string, number>();
  const byFile = new Map<string, number>();
  let total = 0;
  for (const node of profile.nodes) {
    const us = selfUs.get(node.id) ?? 0;
    if (!us) continue;
    total += us;
    const url = node.callFrame.url.replace(/^file:\/\//, '').replace(/.*\/(dist|node_modules)\//, '$1/');
    const fn = `${node.callFrame.functionName || '(anonymous)'}  ${url}${url ? `:${node.callFrame.lineNumber + 1}` : ''}`;
    byFn.set(fn, (byFn.get(fn) ?? 0) + us);
    byFile.set(url || '(native/vm)', (byFile.get(url || '(native/vm)') ?? 0) + us);
  }
  const lines = [`total sampled: ${(total / 1000).toFixed(0)} ms`, '', 'self time by function:'];
  for (const [fn, us] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${fn}`);
  lines.push('', 'self time by file:');
  for (const [f, us] of [...byFile].sort((a, b) => b[1] - a[1]).slice(0, 12)) lines.push(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${f}`);
  return lines.join('\n');
}

function post<T>(session: inspector.Session, method: string, params?: object): Promise<T> {
  return new Promise((resolve, reject) => session.post(method, params ?? {}, (err, result) => (err ? reject(err) : resolve(result as T))));
}

export const USAGE = `usage: node dist/bench/profile-engine.js MODE …

Where the engine's time goes, on the benchmark policy family of N rules (not part of npm run bench):
  load N                              buildPolicySet, three times (run it under node --cpu-prof)
  evaluate N [SECONDS] [PROFILE]      evaluate() on prepared requests for SECONDS (default 5), with
                                      the garbage collections in the loop; PROFILE: write a
                                      .cpuprofile of the loop only to that file
  decide N [SECONDS] [PROFILE]        the same through decideWith (request parsing included)
  summarize FILE [TOP]                self time per function (the TOP, default 25) and per file of a
                                      .cpuprofile
N defaults to 10000. Prints to stdout; writes only PROFILE.

  -h, --help       this text
`;

const MODES = ['load', 'evaluate', 'decide', 'summarize'];

/** Positional arguments checked before any work: a wrong word would otherwise start a 5 s loop. */
function checkArgs(argv: string[]): string[] | { exit: number } {
  const parsed = benchArgs('profile-engine.js', USAGE, argv, {}, true);
  if ('exit' in parsed) return parsed;
  const [mode, a, b] = parsed.positionals;
  const count = (value: string | undefined, what: string) => value === undefined || /^[1-9]\d*$/.test(value) ? undefined : `${what} expects a whole number; got \`${value}\``;
  const seconds = (value: string | undefined) => value === undefined || (/^\d+(\.\d+)?$/.test(value) && Number(value) > 0) ? undefined : `SECONDS expects a number of seconds; got \`${value}\``;
  const max = mode === 'summarize' ? 3 : mode === 'load' ? 2 : 4;
  const problem = mode === undefined ? 'name a mode: load, evaluate, decide or summarize'
    : !MODES.includes(mode) ? `unknown mode \`${mode}\`; the modes are load, evaluate, decide and summarize`
    : parsed.positionals.length > max ? `too many arguments for \`${mode}\``
    : mode === 'summarize' ? (a === undefined ? 'summarize expects a .cpuprofile file' : count(b, 'TOP'))
    : count(a, 'N') ?? seconds(b);
  return problem ? refuse('profile-engine.js', problem) : parsed.positionals;
}

async function main(argv: string[]): Promise<void> {
  const [mode, a, b, profileOut] = argv;
  if (mode === 'summarize') {
    console.log(summarize(a!, b ? Number(b) : 25));
    return;
  }
  const n = Number(a ?? 10_000);
  const family = makeFamily(n);
  const sources = hclSources(family);
  if (mode === 'load') {
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const built = buildPolicySet(sources);
      console.log(`buildPolicySet ${family.ruleCount} rules: ${(performance.now() - t0).toFixed(0)} ms (${built.policy?.ruleCount ?? 'failed'})`);
    }
    return;
  }
  const policy = buildPolicySet(sources).policy!;
  const sample = sampleRequests(family, 1024);
  const raws = sample.map((r) => ({ identity: r.identity, action: r.action, resource: `service:${r.service}`, namespace: r.namespace }));
  const prepared = raws.map((r) => (prepareRequest(r) as { ok: true; request: Request }).request);
  const seconds = Number(b ?? 5);
  const gcs: PerformanceEntry[] = [];
  const observer = new PerformanceObserver((list) => gcs.push(...list.getEntries()));
  observer.observe({ entryTypes: ['gc'] });
  const session = new inspector.Session();
  if (profileOut) {
    session.connect();
    await post(session, 'Profiler.enable');
    await post(session, 'Profiler.setSamplingInterval', { interval: 100 });
    await post(session, 'Profiler.start');
  }
  const end = performance.now() + seconds * 1000;
  let k = 0;
  let allowed = 0;
  while (performance.now() < end) {
    for (let j = 0; j < 1000; j++, k++) {
      const i = k & 1023;
      if (mode === 'decide') {
        const d = decideWith(policy, raws[i]!);
        if (d.ok && d.decision.allow) allowed++;
      } else if (evaluate(policy.compiled, prepared[i]!, prepared[i]!.identity!).allow) allowed++;
    }
  }
  if (profileOut) {
    const { profile } = await post<{ profile: object }>(session, 'Profiler.stop');
    fs.writeFileSync(profileOut, JSON.stringify(profile));
    session.disconnect();
  }
  await new Promise((resolve) => setTimeout(resolve, 50));
  observer.disconnect();
  const kinds = new Map<string, { count: number; ms: number }>();
  for (const e of gcs) {
    const kind = ({ 1: 'minor (scavenge)', 2: 'major (mark-compact)', 4: 'incremental marking', 8: 'weak callbacks' } as Record<number, string>)[(e as unknown as { detail?: { kind: number } }).detail?.kind ?? 0] ?? 'other';
    const slot = kinds.get(kind) ?? { count: 0, ms: 0 };
    slot.count++;
    slot.ms += e.duration;
    kinds.set(kind, slot);
  }
  console.log(`${mode} N=${n}: ${k} decisions in ${seconds} s = ${((seconds * 1e9) / k).toFixed(0)} ns each (${allowed} allowed)`);
  console.log(`  GC during the loop: ${[...kinds].map(([kind, v]) => `${kind} ${v.count}× ${v.ms.toFixed(0)} ms`).join(', ') || 'none'}; heap used ${(process.memoryUsage().heapUsed / 1048576).toFixed(0)} MB`);
}

if (require.main === module) {
  const args = checkArgs(process.argv.slice(2));
  if ('exit' in args) process.exitCode = args.exit;
  else void main(args);
}
