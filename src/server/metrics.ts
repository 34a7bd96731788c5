// Prometheus metrics (prom-client), one registry per server so tests can run several.
// The two metrics touched by every decision are plain numbers on the hot path and become Prometheus
// text only when scraped: prom-client's inc()/observe() hash a label object and allocate per call,
// which measured about 2 µs per request.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DecisionResult } from '../syntax';

/** A label-less histogram with the exposition of prom-client's, whose observe() is a bucket search and two adds. */
export class FastHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly counts: Float64Array;
  private sum = 0;
  private count = 0;

  constructor(readonly name: string, readonly help: string, private readonly upperBounds: readonly number[], registry: Registry) {
    this.counts = new Float64Array(upperBounds.length);
    registry.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  observe(value: number): void {
    const bounds = this.upperBounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        this.counts[i]!++;
        break;
      }
    }
    this.sum += value;
    this.count++;
  }

  get() {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    let cumulative = 0;
    for (let i = 0; i < this.upperBounds.length; i++) {
      cumulative += this.counts[i]!;
      values.push({ labels: { le: this.upperBounds[i]! }, value: cumulative, metricName: `${this.name}_bucket` });
    }
    values.push({ labels: { le: '+Inf' }, value: this.count, metricName: `${this.name}_bucket` });
    values.push({ labels: {}, value: this.sum, metricName: `${this.name}_sum` });
    values.push({ labels: {}, value: this.count, metricName: `${this.name}_count` });
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}

/** The last reload attempt, for the gauges below and `GET /v1/policies`. */
export interface LastReload {
  /** When it finished (ms since the epoch). */
  at: number;
  outcome: 'changed' | 'unchanged' | 'refused' | 'audit_unavailable';
  trigger: string;
  /** Why it was refused. */
  message?: string;
}

export function createMetrics(sources: { queueDepth(): number; cacheHits(): number; cacheMisses(): number; rules(): number; auditWritable(): boolean; version(): string | undefined; lastReload(): LastReload | undefined }, defaults = true) {
  const registry = new Registry();
  // prom-client's own names (`process_cpu_seconds_total`, `nodejs_heap_size_used_bytes`, …), which
  // the usual Node.js dashboards and alerts query; a prefix made them `pdp_process_process_…`.
  if (defaults) collectDefaultMetrics({ register: registry });
  const decisionCounts: Record<DecisionResult, number> = { ALLOW: 0, ALLOW_DEFAULT: 0, DENY: 0 };
  new Counter({
    name: 'pdp_decisions_total', help: 'Decisions answered, by result.', labelNames: ['result'], registers: [registry],
    collect() {
      this.reset();
      for (const [result, n] of Object.entries(decisionCounts)) if (n > 0) this.inc({ result }, n);
    },
  });
  // Every error answer, by the error registry's code (a fixed set: errors.ts) and its status: counted
  // where the answer is written, so answers that succeed pay nothing. With pdp_decisions_total this
  // gives an error rate; 429s, 503s (shutting_down, audit_unavailable, policy_unavailable) included.
  const errorCounts = new Map<string, { status: number; n: number }>();
  new Counter({
    name: 'pdp_http_errors_total', help: 'Error answers, by error code and HTTP status.', labelNames: ['code', 'status'], registers: [registry],
    collect() {
      this.reset();
      for (const [code, { status, n }] of errorCounts) this.inc({ code, status }, n);
    },
  });
  const countError = (code: string, status: number) => {
    const known = errorCounts.get(code);
    if (known) known.n++;
    else errorCounts.set(code, { status, n: 1 });
  };
  const decisionSeconds = new FastHistogram('pdp_decision_duration_seconds', 'Time from request to answer, audit commit included.',
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25], registry);
  new Counter({ name: 'pdp_cache_hits_total', help: 'Decision cache hits.', registers: [registry], collect() { this.reset(); this.inc(sources.cacheHits()); } });
  new Counter({ name: 'pdp_cache_misses_total', help: 'Decision cache misses.', registers: [registry], collect() { this.reset(); this.inc(sources.cacheMisses()); } });
  // `aggregator`: how `pdp serve --workers N` combines the workers' values (AggregatorRegistry);
  // counters and histograms are summed (prom-client's default).
  new Gauge({ name: 'pdp_audit_queue_depth', help: 'Audit rows waiting for their group commit.', aggregator: 'sum', registers: [registry], collect() { this.set(sources.queueDepth()); } });
  new Gauge({ name: 'pdp_audit_writable', help: '1 when the audit store accepts writes.', aggregator: 'min', registers: [registry], collect() { this.set(sources.auditWritable() ? 1 : 0); } });
  new Gauge({ name: 'pdp_policy_rules', help: 'Rules in the active policy set.', aggregator: 'max', registers: [registry], collect() { this.set(sources.rules()); } });
  const auditWriteSeconds = new Histogram({
    name: 'pdp_audit_write_seconds', help: 'Duration of one group-commit transaction.',
    buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5], registers: [registry],
  });
  const auditLockWaitSeconds = new Histogram({
    name: 'pdp_audit_lock_wait_seconds', help: 'Group commits that found the audit write lock held by another connection (another worker, a prune): how long they waited, the event loop free meanwhile.',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1], registers: [registry],
  });
  const auditCheckpointSeconds = new Histogram({
    name: 'pdp_audit_checkpoint_seconds', help: 'Passes of the audit checkpointer thread that found new commits: WAL pages copied into the database file off the event loop.',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1], registers: [registry],
  });
  const auditWalFrames = new Gauge({
    name: 'pdp_audit_wal_frames', help: 'Frames (pages) in the audit WAL at the checkpointer thread\'s last pass that found new commits. It drops each time a commit starts the WAL over; a reader holding an old snapshot keeps it growing.',
    // Only one process of a `--workers` cluster runs the checkpointer; the others report 0.
    aggregator: 'max', registers: [registry],
  });
  const auditRows = new Counter({ name: 'pdp_audit_rows_total', help: 'Audit rows committed.', registers: [registry] });
  const auditFailures = new Counter({ name: 'pdp_audit_failures_total', help: 'Group commits that failed (requests answered 503).', registers: [registry] });
  const authnFailures = new Counter({ name: 'pdp_authn_failures_total', help: 'Authentication failures, by kind.', labelNames: ['kind'], registers: [registry] });
  const reloads = new Counter({ name: 'pdp_policy_reloads_total', help: 'Policy reloads, by outcome (refused: the set has errors; audit_unavailable: its ACL_CHANGE row could not be written).', labelNames: ['outcome'], registers: [registry] });
  // Every outcome exists from the start at 0, so `increase(…[5m])` has a series to compare against.
  for (const outcome of ['changed', 'unchanged', 'refused', 'audit_unavailable']) reloads.inc({ outcome }, 0);
  // A refused reload leaves the last good set serving while the files on disk say otherwise: these
  // stay 0 until a reload succeeds, however long ago the refusal was (a counter's increase fades).
  new Gauge({
    name: 'pdp_policy_last_reload_success', help: '0 when the last reload was refused (the files on disk are not what is served), else 1.', aggregator: 'min', registers: [registry],
    collect() { const last = sources.lastReload(); this.set(last === undefined || last.outcome === 'changed' || last.outcome === 'unchanged' ? 1 : 0); },
  });
  new Gauge({
    name: 'pdp_policy_last_reload_timestamp_seconds', help: 'When the last reload (or the start-up load) finished, in seconds since the epoch.', aggregator: 'max', registers: [registry],
    collect() { const last = sources.lastReload(); if (last !== undefined) this.set(last.at / 1000); },
  });
  new Gauge({
    name: 'pdp_policy_info', help: 'The active policy version, as a label; always 1.', labelNames: ['version'], aggregator: 'max', registers: [registry],
    collect() { this.reset(); const version = sources.version(); if (version !== undefined) this.set({ version }, 1); },
  });
  return { registry, decisionCounts, countError, decisionSeconds, auditWriteSeconds, auditLockWaitSeconds, auditCheckpointSeconds, auditWalFrames, auditRows, auditFailures, authnFailures, reloads };
}

export type Metrics = ReturnType<typeof createMetrics>;
