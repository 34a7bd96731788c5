// Replay: re-decide recorded decisions under another policy set and report which would flip.
// `pdp check --replay AUDIT_DB --policies NEW_DIR` wires it to the command line (src/cli/check.ts);
// this module takes rows and a loaded policy and returns the report. It never writes the database:
// the CLI opens it read-only and streams the rows through `decisionRows`.
import type Database from 'better-sqlite3';
import { decideWith, type LoadedPolicy } from '../engine';
import { normalizeIp } from '../syntax';

/** The columns of an `audit_log` decision row that replay reads. */
export interface ReplayRow {
  identity: string | null;
  action: string;
  resource: string;
  namespace: string | null;
  source_ip: string | null;
  result: string;
  rule: string | null;
}

export type FlipDirection = 'allow_to_deny' | 'deny_to_allow';

export interface FlipGroup {
  direction: FlipDirection;
  identity: string;
  action: string;
  resource: string;
  namespace: string;
  /** Recorded decisions in this group. */
  count: number;
  old: { result: string; rule: string | null };
  new: { result: string; rule: string | null; reason: string };
}

export interface ReplayReport {
  policyVersion: string;
  /** Decision rows re-decided (unchanged + both kinds of flip). */
  rows: number;
  unchanged: number;
  allowToDeny: number;
  denyToAllow: number;
  /** Rows that do not form a valid request (no identity, a malformed resource …), left out. */
  skipped: number;
  /** Distinct requests actually evaluated (the rest were answered from the memo). */
  distinctRequests: number;
  /** Sorted: most decisions first, then identity, resource, action. */
  flips: FlipGroup[];
}

export interface ReplayOptions {
  /** Called every `progressEvery` rows (default 100,000) with the number of rows read so far. */
  onProgress?: (rowsRead: number) => void;
  progressEvery?: number;
  /** Largest memo of decisions kept; it is cleared when full (default 1,000,000). */
  memoLimit?: number;
}

/** ALLOW and ALLOW_DEFAULT both allow. */
export const isAllow = (result: string): boolean => result === 'ALLOW' || result === 'ALLOW_DEFAULT';

interface NewDecision {
  allow: boolean;
  result: string;
  rule: string | null;
  reason: string;
}

/**
 * The recorded decisions of an audit database, oldest first, as an iterator (rows are streamed, never
 * loaded together). Decision rows are those with a result, a `read`/`write`/`admin` action and a
 * resource; ACL changes, authentication failures and API denials are not decisions about resources.
 */
export function decisionRows(db: Database.Database, options: { since?: string } = {}): IterableIterator<ReplayRow> {
  const statement = db.prepare(
    `SELECT identity, action, resource, namespace, source_ip, result, rule FROM audit_log
     WHERE result IS NOT NULL AND action IN ('read', 'write', 'admin') AND resource IS NOT NULL
       AND event_type NOT IN ('ACL_CHANGE', 'AUTHN_FAILURE', 'API_DENIED')
       ${options.since !== undefined ? 'AND timestamp >= @since' : ''}
     ORDER BY id`,
  );
  return (options.since !== undefined ? statement.iterate({ since: options.since }) : statement.iterate()) as IterableIterator<ReplayRow>;
}

/** Re-decides every row under `policy`; memoises per distinct request. */
export function replay(rows: Iterable<ReplayRow>, policy: LoadedPolicy, options: ReplayOptions = {}): ReplayReport {
  const progressEvery = options.progressEvery ?? 100_000;
  const memoLimit = options.memoLimit ?? 1_000_000;
  // Without cidrs in the new set the source address cannot change a decision: leave it out of the key.
  const keyedByAddress = policy.compiled.usesCidrs;
  const memo = new Map<string, NewDecision | null>();
  const groups = new Map<string, FlipGroup>();
  let read = 0;
  let unchanged = 0;
  let allowToDeny = 0;
  let denyToAllow = 0;
  let skipped = 0;
  let distinct = 0;

  for (const row of rows) {
    read++;
    if (options.onProgress && read % progressEvery === 0) options.onProgress(read);
    if (row.identity === null || row.identity === '') {
      skipped++;
      continue;
    }
    const sourceIp = row.source_ip === null ? undefined : normalizeIp(row.source_ip);
    const namespace = row.namespace ?? undefined;
    const key = `${row.identity}\0${row.action}\0${row.resource}\0${namespace ?? ''}\0${keyedByAddress ? sourceIp ?? '' : ''}`;
    let decision = memo.get(key);
    if (decision === undefined) {
      decision = decide(policy, row.identity, row.action, row.resource, namespace, sourceIp);
      distinct++;
      if (memo.size >= memoLimit) memo.clear();
      memo.set(key, decision);
    }
    if (decision === null) {
      skipped++;
      continue;
    }
    const wasAllowed = isAllow(row.result);
    if (wasAllowed === decision.allow) {
      unchanged++;
      continue;
    }
    const direction: FlipDirection = wasAllowed ? 'allow_to_deny' : 'deny_to_allow';
    if (wasAllowed) allowToDeny++;
    else denyToAllow++;
    const resolvedNamespace = namespace ?? 'default';
    const groupKey = [direction, row.identity, row.action, row.resource, resolvedNamespace, row.result, row.rule ?? '', decision.result, decision.rule ?? ''].join('\0');
    const group = groups.get(groupKey);
    if (group) group.count++;
    else {
      groups.set(groupKey, {
        direction, identity: row.identity, action: row.action, resource: row.resource, namespace: resolvedNamespace, count: 1,
        old: { result: row.result, rule: row.rule },
        new: { result: decision.result, rule: decision.rule, reason: decision.reason },
      });
    }
  }

  const flips = [...groups.values()].sort((a, b) =>
    b.count - a.count || cmp(a.identity, b.identity) || cmp(a.resource, b.resource) || cmp(a.action, b.action) || cmp(a.direction, b.direction));
  return {
    policyVersion: policy.version,
    rows: unchanged + allowToDeny + denyToAllow,
    unchanged,
    allowToDeny,
    denyToAllow,
    skipped,
    distinctRequests: distinct,
    flips,
  };
}

/**
 * One decision under the new set. The recorded identity is replayed as given: an unauthenticated
 * request was recorded as `anonymous`, which the evaluator treats the same way. null: not a valid request.
 */
function decide(policy: LoadedPolicy, identity: string, action: string, resource: string, namespace: string | undefined, sourceIp: string | undefined): NewDecision | null {
  // A `namespace:NS/*` resource was recorded with namespace NS; the request did not need to name it.
  const ns = resource.startsWith('namespace:') ? undefined : namespace;
  const outcome = decideWith(policy, { identity, action, resource, namespace: ns, sourceIp });
  if (!outcome.ok) return null;
  const d = outcome.decision;
  return { allow: d.allow, result: d.result, rule: d.rule ? `${d.rule.file}:${d.rule.line}` : null, reason: d.reason };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
