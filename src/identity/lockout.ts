// Failed-authentication lockout (design: max_failed_attempts 5, lockout_duration 15m).
//
// A source (client IP, token id, ...) that fails `maxFailures` times within `windowMs` is locked for
// `lockoutMs`. A success in between does not clear the count: a source is an address, which many
// clients can share, and one valid credential must not buy unlimited guesses at others. Pure: time
// is passed in. Memory is bounded by two LRU caches: one for sources that are counting failures and
// a separate one for locked sources, so an attacker spraying many sources with one failure each
// evicts other counters but cannot push an active lock out cheaply.
import { LRUCache } from 'lru-cache';

export interface FailureTrackerOptions {
  maxFailures?: number;
  windowMs?: number;
  lockoutMs?: number;
  /** Most sources counted at once (default 10,000). */
  maxEntries?: number;
  /** Most sources locked at once (default 10,000). */
  maxLocked?: number;
}

export const DEFAULT_MAX_FAILURES = 5;
export const DEFAULT_WINDOW_MS = 15 * 60_000;
export const DEFAULT_LOCKOUT_MS = 15 * 60_000;

function time(now: number | Date): number {
  const t = +now;
  if (!Number.isFinite(t)) throw new TypeError('FailureTracker: `now` must be a valid time');
  return t;
}

export class FailureTracker {
  readonly maxFailures: number;
  readonly windowMs: number;
  readonly lockoutMs: number;
  /** Recent failure times per source (at most `maxFailures`, oldest first). */
  private readonly failures: LRUCache<string, number[]>;
  /** Lock expiry (epoch ms) per locked source. */
  private readonly locks: LRUCache<string, number>;

  constructor(options: FailureTrackerOptions = {}) {
    this.maxFailures = options.maxFailures ?? DEFAULT_MAX_FAILURES;
    this.windowMs = options.windowMs ?? DEFAULT_WINDOW_MS;
    this.lockoutMs = options.lockoutMs ?? DEFAULT_LOCKOUT_MS;
    if (!Number.isInteger(this.maxFailures) || this.maxFailures < 1) throw new RangeError('maxFailures must be a positive integer');
    if (!(this.windowMs > 0) || !(this.lockoutMs > 0)) throw new RangeError('windowMs and lockoutMs must be positive');
    this.failures = new LRUCache({ max: Math.max(1, options.maxEntries ?? 10_000) });
    this.locks = new LRUCache({ max: Math.max(1, options.maxLocked ?? 10_000) });
  }

  /** Records one failed attempt at `now` (epoch ms or Date). Returns whether the source is now locked. */
  recordFailure(source: string, now: number | Date): { locked: boolean; until?: number } {
    const t = time(now);
    const lockedUntil = this.activeLock(source, t);
    if (lockedUntil !== undefined) return { locked: true, until: lockedUntil };
    const recent = (this.failures.get(source) ?? []).filter((at) => t - at < this.windowMs);
    recent.push(t);
    if (recent.length >= this.maxFailures) {
      this.failures.delete(source);
      const until = t + this.lockoutMs;
      this.locks.set(source, until);
      return { locked: true, until };
    }
    this.failures.set(source, recent.slice(-this.maxFailures));
    return { locked: false };
  }

  /** Whether `source` is locked at `now`, and for how many more whole seconds (for `Retry-After`). */
  isLocked(source: string, now: number | Date): { locked: boolean; retryAfterSeconds: number } {
    const t = time(now);
    const until = this.activeLock(source, t);
    if (until === undefined) return { locked: false, retryAfterSeconds: 0 };
    return { locked: true, retryAfterSeconds: Math.max(1, Math.ceil((until - t) / 1000)) };
  }

  /** Sources currently tracked (counting + locked); for metrics and tests. */
  get size(): number {
    return this.failures.size + this.locks.size;
  }

  clear(): void {
    this.failures.clear();
    this.locks.clear();
  }

  private activeLock(source: string, t: number): number | undefined {
    const until = this.locks.peek(source);
    if (until === undefined) return undefined;
    if (t >= until) {
      this.locks.delete(source);
      return undefined;
    }
    return until;
  }
}
