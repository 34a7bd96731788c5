// The decision cache. One LRU per loaded policy version (held in a WeakMap keyed by the policy
// object), so an answer computed under one version can never be served under another: after a
// swap the old cache is simply unreachable.
import { LRUCache } from 'lru-cache';
import type { LoadedPolicy } from '../engine';
import type { Decision } from '../eval';

export interface CachedDecision {
  decision: Decision;
  identity: string;
  /** What the engine parsed out of the request, for the audit row of every hit. */
  service: string | undefined;
  instance: string | undefined;
  namespace: string;
}

export class DecisionCache {
  private readonly perPolicy = new WeakMap<LoadedPolicy, LRUCache<string, CachedDecision>>();
  hits = 0;
  misses = 0;

  constructor(private readonly maxEntries: number) {}

  get enabled(): boolean {
    return this.maxEntries > 0;
  }

  private cacheFor(policy: LoadedPolicy): LRUCache<string, CachedDecision> {
    let cache = this.perPolicy.get(policy);
    if (!cache) {
      cache = new LRUCache({ max: this.maxEntries });
      this.perPolicy.set(policy, cache);
    }
    return cache;
  }

  /**
   * Everything that can change the answer: identity, action, resource (as written: the reason
   * quotes it), namespace, and the source address whenever the policy has any `cidrs`.
   */
  static key(policy: LoadedPolicy, identity: string | undefined, action: string, resource: string, namespace: string | undefined, sourceIp: string | undefined): string {
    const ip = policy.compiled.usesCidrs ? sourceIp ?? '' : '';
    return `${identity ?? '\u0001anon'}\u0000${action}\u0000${resource}\u0000${namespace ?? 'default'}\u0000${ip}`;
  }

  /**
   * The cached decision, or undefined. Counts nothing: the caller counts with `hit` or `store` once
   * the request is known to be answered, so a request refused as invalid (a batch with a bad check
   * after good ones) counts neither and stores nothing.
   */
  peek(policy: LoadedPolicy, key: string): CachedDecision | undefined {
    return this.cacheFor(policy).get(key);
  }

  /** Counts an answer served from the cache. */
  hit(): void {
    this.hits++;
  }

  /** Stores the decision computed after a miss, and counts that miss. */
  store(policy: LoadedPolicy, key: string, value: CachedDecision): void {
    this.misses++;
    this.cacheFor(policy).set(key, value);
  }

  size(policy: LoadedPolicy | undefined): number {
    return policy ? this.perPolicy.get(policy)?.size ?? 0 : 0;
  }
}
