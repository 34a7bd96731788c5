// Refusals of a locked-out source, counted instead of audited one row each.
//
// Every authentication failure is an AUTHN_FAILURE row, until its source is locked out: the failure
// that starts the lock is a row of its own (it says so), and from then on the source's refusals are
// counted here, per source, and written as one summary row per source at most every interval (the
// server's timer takes them; see `summaryEvent`). A flood from a locked address therefore costs one
// row per interval instead of one per request, and still leaves evidence: how many, which kinds,
// first and last time. Pure: time is passed in. Memory is bounded: past `maxSources` distinct
// sources, further ones are counted together under `source: null`.

export interface RefusalSummary {
  /** The source address; null for the overflow bucket (more sources than `maxSources` in one interval). */
  source: string | null;
  count: number;
  first: Date;
  last: Date;
  /** Refusals by authentication-failure kind (e.g. `locked-out`, `certificate-untrusted`). */
  kinds: Record<string, number>;
}

export class RefusalCounter {
  private pending = new Map<string | null, RefusalSummary>();

  constructor(private readonly maxSources = 10_000) {}

  /** Counts one refusal that is not audited by a row of its own. */
  add(source: string, kind: string, at: Date): void {
    const key = this.pending.has(source) || this.pending.size < this.maxSources ? source : null;
    let entry = this.pending.get(key);
    if (!entry) {
      entry = { source: key, count: 0, first: at, last: at, kinds: {} };
      this.pending.set(key, entry);
    }
    entry.count++;
    entry.last = at;
    entry.kinds[kind] = (entry.kinds[kind] ?? 0) + 1;
  }

  /** Sources with refusals not yet summarised. */
  get size(): number {
    return this.pending.size;
  }

  /** Every pending summary, and forgets them (they are about to become rows). */
  take(): RefusalSummary[] {
    if (this.pending.size === 0) return [];
    const out = [...this.pending.values()];
    this.pending = new Map();
    return out;
  }
}
