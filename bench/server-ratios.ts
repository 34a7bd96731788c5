// The server benchmark's ratios: one definition, used by a run (bench/server.ts) for its report and by
// bench/server-runs.ts, which recomputes them from each committed run's stored results, so a ratio
// added later is counted over the earlier runs too. Separate from server.ts because server.ts
// imports server-runs.ts.
import type { ScenarioId, ScenarioResult } from './server';

/** The targets the product has to meet (ratios within one run). */
export const TARGETS = {
  pdpVsFastifyReqs: 0.75,
  pdpVsFastifyP99: 2,
  auditOnVsOff: 0.85,
  batchVsSingle: 5,
  mtlsVsPlain: 0.8,
} as const;

export interface Ratio {
  name: string;
  /** From the measured rates (req/s, decisions/s) or latencies. */
  value: number;
  /** Throughput ratios only: the same ratio from work per server CPU-second (contention factored out). */
  perCpu?: number;
  /** '≥ 0.75' etc., or 'reference' (no target: context for another ratio). */
  target: string;
  met?: boolean;
  metPerCpu?: boolean;
}

/** What a ratio reads of a target's result (a stored run may hold more). */
export type RatioInput = Pick<ScenarioResult, 'id' | 'requestsPerSecond' | 'decisionsPerSecond' | 'requestsPerServerCpuSecond' | 'checksPerRequest'> & {
  latencyMs: Partial<ScenarioResult['latencyMs']>;
};

export function ratios(results: readonly RatioInput[]): Ratio[] {
  const by = (id: ScenarioId) => results.find((r) => r.id === id);
  const out: Ratio[] = [];
  const check = (op: '≥' | '≤', target: number, v: number) => (op === '≥' ? v >= target : v <= target);
  const rate = (name: string, num: ScenarioId, den: ScenarioId, target: number | undefined, perDecision = false) => {
    const a = by(num);
    const b = by(den);
    if (!a || !b || !b.requestsPerSecond || !b.requestsPerServerCpuSecond) return;
    const value = perDecision ? a.decisionsPerSecond / b.decisionsPerSecond : a.requestsPerSecond / b.requestsPerSecond;
    const perCpu = (a.requestsPerServerCpuSecond * (perDecision ? a.checksPerRequest : 1)) / (b.requestsPerServerCpuSecond * (perDecision ? b.checksPerRequest : 1));
    if (target === undefined) out.push({ name, value, perCpu, target: 'reference' });
    else out.push({ name, value, perCpu, target: `≥ ${target}`, met: check('≥', target, value), metPerCpu: check('≥', target, perCpu) });
  };
  const p99 = (name: string, num: ScenarioId, den: ScenarioId, target: number) => {
    const a = by(num);
    const b = by(den);
    if (!a?.latencyMs.p99 || !b?.latencyMs.p99) return;
    const value = a.latencyMs.p99 / b.latencyMs.p99;
    out.push({ name, value, target: `≤ ${target}`, met: check('≤', target, value) });
  };
  const tail = (name: string, num: ScenarioId, den: ScenarioId, key: 'p99' | 'p999') => {
    const a = by(num)?.latencyMs[key];
    const b = by(den)?.latencyMs[key];
    if (a !== undefined && b) out.push({ name, value: a / b, target: 'reference' });
  };
  rate('pdp audit on, cache hit / bare fastify (req/s)', 'pdp-hit', 'fastify', TARGETS.pdpVsFastifyReqs);
  rate('pdp audit on, cache miss / bare fastify (req/s)', 'pdp-miss', 'fastify', TARGETS.pdpVsFastifyReqs);
  // Where the gap to fastify lies: pdp with no audit log at all (a benchmark-only recorder) against the
  // same bare route. The audit on/off ratios below are the rest of the gap.
  rate('pdp audit off, cache hit / bare fastify (req/s): the gap without the audit log', 'pdp-audit-off', 'fastify', undefined);
  rate('pdp audit off, cache miss / bare fastify (req/s): the gap without the audit log', 'pdp-audit-off-miss', 'fastify', undefined);
  p99('pdp audit on, cache hit: p99 / bare fastify p99', 'pdp-hit', 'fastify', TARGETS.pdpVsFastifyP99);
  p99('pdp audit on, cache miss: p99 / bare fastify p99', 'pdp-miss', 'fastify', TARGETS.pdpVsFastifyP99);
  rate('audit on / audit off, cache hit (req/s)', 'pdp-hit', 'pdp-audit-off', TARGETS.auditOnVsOff);
  rate('audit on / audit off, cache miss (req/s)', 'pdp-miss', 'pdp-audit-off-miss', TARGETS.auditOnVsOff);
  rate('batch ×100 / single, cache hit (decisions/s)', 'pdp-batch-hit', 'pdp-hit', TARGETS.batchVsSingle, true);
  rate('batch ×100 / single, cache miss (decisions/s)', 'pdp-batch-miss', 'pdp-miss', TARGETS.batchVsSingle, true);
  // The writer thread (`--audit-writer thread`): its own batch/single ratio, and what it does to each path.
  rate('writer thread: batch ×100 / single, cache hit (decisions/s)', 'pdp-batch-hit-thread', 'pdp-hit-thread', TARGETS.batchVsSingle, true);
  rate('writer thread / inline, single, cache hit (req/s)', 'pdp-hit-thread', 'pdp-hit', undefined);
  rate('writer thread / inline, batch ×100, cache hit (decisions/s)', 'pdp-batch-hit-thread', 'pdp-batch-hit', undefined, true);
  // The audit checkpointer thread (audit/checkpointer.ts): what it does to the tail and to throughput.
  tail('checkpointer thread / none, cache hit: p99.9', 'pdp-hit', 'pdp-hit-no-checkpointer', 'p999');
  tail('checkpointer thread / none, cache hit: p99', 'pdp-hit', 'pdp-hit-no-checkpointer', 'p99');
  rate('checkpointer thread / none, cache hit (req/s)', 'pdp-hit', 'pdp-hit-no-checkpointer', undefined);
  rate('mTLS / plain HTTP, twin servers (req/s)', 'pdp-mtls', 'pdp-plain', TARGETS.mtlsVsPlain);
  rate('bare fastify: mTLS / plain HTTP (req/s): what the transport alone costs', 'fastify-mtls', 'fastify-plain', undefined);
  return out;
}
