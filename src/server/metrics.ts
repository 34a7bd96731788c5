// Prometheus metrics (prom-client), one registry per server so tests can run several.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export function createMetrics(sources: { queueDepth(): number; cacheHits(): number; cacheMisses(): number; rules(): number; auditWritable(): boolean }, defaults = true) {
  const registry = new Registry();
  if (defaults) collectDefaultMetrics({ register: registry, prefix: 'pdp_process_' });
  const decisions = new Counter({ name: 'pdp_decisions_total', help: 'Decisions answered, by result.', labelNames: ['result'], registers: [registry] });
  const decisionSeconds = new Histogram({
    name: 'pdp_decision_duration_seconds', help: 'Time from request to answer, audit commit included.',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25], registers: [registry],
  });
  new Counter({ name: 'pdp_cache_hits_total', help: 'Decision cache hits.', registers: [registry], collect() { this.reset(); this.inc(sources.cacheHits()); } });
  new Counter({ name: 'pdp_cache_misses_total', help: 'Decision cache misses.', registers: [registry], collect() { this.reset(); this.inc(sources.cacheMisses()); } });
  new Gauge({ name: 'pdp_audit_queue_depth', help: 'Audit rows waiting for their group commit.', registers: [registry], collect() { this.set(sources.queueDepth()); } });
  new Gauge({ name: 'pdp_audit_writable', help: '1 when the audit store accepts writes.', registers: [registry], collect() { this.set(sources.auditWritable() ? 1 : 0); } });
  new Gauge({ name: 'pdp_policy_rules', help: 'Rules in the active policy set.', registers: [registry], collect() { this.set(sources.rules()); } });
  const auditWriteSeconds = new Histogram({
    name: 'pdp_audit_write_seconds', help: 'Duration of one group-commit transaction.',
    buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5], registers: [registry],
  });
  const auditRows = new Counter({ name: 'pdp_audit_rows_total', help: 'Audit rows committed.', registers: [registry] });
  const auditFailures = new Counter({ name: 'pdp_audit_failures_total', help: 'Group commits that failed (requests answered 503).', registers: [registry] });
  const authnFailures = new Counter({ name: 'pdp_authn_failures_total', help: 'Authentication failures, by kind.', labelNames: ['kind'], registers: [registry] });
  const reloads = new Counter({ name: 'pdp_policy_reloads_total', help: 'Policy reloads, by outcome.', labelNames: ['outcome'], registers: [registry] });
  return { registry, decisions, decisionSeconds, auditWriteSeconds, auditRows, auditFailures, authnFailures, reloads };
}

export type Metrics = ReturnType<typeof createMetrics>;
