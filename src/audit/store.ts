// The audit store: one SQLite file written through better-sqlite3 in WAL mode. Writes are
// synchronous (better-sqlite3 has no async API); the recorder batches them so the event loop pays
// for one transaction per turn, not one per decision.
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import Database from 'better-sqlite3';
import { AUDIT_ROW_COLUMNS, packAuditRows, toAuditRow, type AuditEvent, type AuditRow, type PackedAuditRows } from './event';
import { APPEND_ONLY_GUARD_FUNCTION, APPEND_ONLY_GUARD_FUNCTION_V5, applyMigrations, schemaVersion } from './migrations';

export interface AuditStoreOptions {
  /**
   * `normal` (default): in WAL mode a commit is a write() into the WAL without fsync. A process killed
   * with SIGKILL loses no committed row (the frames are in the OS page cache); a power loss or kernel
   * crash can lose the most recent commits. `full`: fsync the WAL on every commit; survives power loss.
   */
  synchronous?: 'normal' | 'full';
  /**
   * How long a write waits for another connection's write lock before failing with SQLITE_BUSY.
   * SQLite waits by sleeping the thread; the server's inline recorder therefore never lets it wait
   * (`insertRowsIfUnlocked`) and retries for this long itself, with the event loop free. Default 1000 ms.
   */
  busyTimeoutMs?: number;
  /** Refuse to create a new file (the CLI's `prune` must not invent an empty database). Default false. */
  fileMustExist?: boolean;
  /**
   * WAL pages after which a commit of this connection checkpoints (SQLite's `wal_autocheckpoint`).
   * Default 10,000. `pdp serve` leaves it on as the backstop of its checkpointer thread (checkpointer.ts).
   */
  walAutocheckpointPages?: number;
}

export interface AllowedService {
  name: string;
  namespace: string;
}

/** Days each class of event is kept (seed design, "What to Log"). */
export const RETENTION_DAYS = {
  /** DISCOVERY events that were not denied. */
  discovery: 30,
  /** REGISTRATION, DEREGISTRATION, AUTHN_FAILURE, every DENY, and any other event type. */
  standard: 90,
  /** ACL_CHANGE. */
  aclChange: 365,
} as const;

export interface PruneCutoffs {
  /** Non-denied DISCOVERY rows with a timestamp before this are expired. */
  discoveryBefore: string;
  /** Rows of the standard class before this are expired. */
  standardBefore: string;
  /** ACL_CHANGE rows before this are expired. */
  aclChangeBefore: string;
}

export interface PruneResult {
  now: string;
  dryRun: boolean;
  cutoffs: PruneCutoffs;
  /** Rows past their retention when pruning started. */
  expired: number;
  /** Rows actually removed (0 on a dry run). */
  deleted: number;
}

export interface PruneOptions {
  now: Date;
  dryRun?: boolean;
  /** Rows per prune transaction; each chunk holds the write lock only briefly so a running server keeps writing. */
  chunkSize?: number;
  /** Milliseconds the write lock is left free between chunks (default 110). */
  pauseMs?: number;
}

/** One file of a policy set as every `ACL_CHANGE` row's `details.files` lists it. */
export interface PolicySetFile {
  path: string;
  sha256: string;
  rules: number;
}

/** What the newest `ACL_CHANGE` row says about the policy set it activated. */
export interface RecordedPolicySet {
  id: number;
  timestamp: string;
  /** The version that row activated (`policy_version`, else `details.new_version`). */
  version: string | null;
  /** `details.files`; null when the row has none (written by a pdp before file lists, or unreadable). */
  files: PolicySetFile[] | null;
}

export interface AuditStore {
  readonly path: string;
  /** The open connection, for the analyses and for tests. The server never touches it. */
  readonly db: Database.Database;
  /** Validates and inserts events in one transaction. Throws `InvalidAuditEventError` or the SQLite error. */
  insertBatch(events: readonly AuditEvent[]): void;
  /** Inserts already-validated rows in one transaction, waiting up to the busy timeout for the write lock (the writer thread's path). */
  insertRows(rows: readonly AuditRow[]): void;
  /** `insertRows` for rows already in the packed form (what the writer thread receives). */
  insertPackedRows(packed: PackedAuditRows): void;
  /**
   * Inserts already-validated rows in one transaction if no other connection holds the write lock;
   * false (nothing written) if one does. Never waits: SQLite's busy handler waits by sleeping the
   * thread, which on the event loop would stall every request (the inline recorder's path; it
   * retries later, see recorder.ts).
   */
  insertRowsIfUnlocked(rows: readonly AuditRow[]): boolean;
  /** Replaces the contents of `allowed_services` in one transaction. */
  refreshAllowedServices(entries: readonly AllowedService[]): void;
  /** The newest `ACL_CHANGE` row (highest id), or undefined when the log has none. */
  lastPolicyChange(): RecordedPolicySet | undefined;
  /** Removes rows past their retention (or counts them, on a dry run). */
  prune(options: PruneOptions): PruneResult;
  /** A trivial committed write (no audit row), to learn whether writing works again after a failure. */
  probeWrite(): void;
  setBusyTimeout(ms: number): void;
  readonly busyTimeoutMs: number;
  close(): void;
}

export interface AuditReader {
  readonly path: string;
  readonly db: Database.Database;
  readonly schemaVersion: number;
  close(): void;
}

/** Opening or migrating the file failed; the message says which file and why, in words. */
export class AuditStoreError extends Error {
  override name = 'AuditStoreError';
}

/**
 * The file this store has open is no longer the one at its path (deleted, moved away by a log
 * rotation, replaced): writing would put rows where nobody reads them, and nothing in this process
 * can recover, so `pdp serve` exits for its supervisor to restart it on the path. Recognised by
 * `name`, which survives the writer thread's message boundary.
 */
export class AuditFileReplacedError extends AuditStoreError {
  override name = 'AuditFileReplacedError';
}

const DEFAULT_BUSY_TIMEOUT_MS = 1000;
const DEFAULT_PRUNE_CHUNK = 2_000;
/**
 * Between two prune chunks the write lock is left free this long. SQLite's busy handler polls a
 * waiting writer at growing intervals (at most every 100 ms); a chunk that followed the previous one
 * at once would win the lock again and again, and a serving pdp would time out and answer 503.
 */
const DEFAULT_PRUNE_PAUSE_MS = 110;

/** SQLITE_BUSY and its extended codes (SQLITE_BUSY_RECOVERY, SQLITE_BUSY_SNAPSHOT, SQLITE_BUSY_TIMEOUT). */
function isBusy(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return e instanceof Database.SqliteError && typeof code === 'string' && (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_'));
}

/**
 * `step`, tried again while it fails with SQLITE_BUSY, for up to `waitMs`. For what SQLite's busy
 * handler does not wait out: two connections that both begin by reading a new file and then both
 * need to write it (switching it into WAL) would deadlock, so SQLite fails one of them at once
 * instead of waiting. `pdp serve --workers 2` on a new audit file hit that in 9 of 115 starts
 * (`cannot open audit database …: database is locked`); one more try a few milliseconds later
 * finds the file already in WAL mode.
 */
function retryWhileBusy<T>(step: () => T, waitMs: number): T {
  const deadline = Date.now() + waitMs;
  for (let pauseMs = 2; ; pauseMs = Math.min(2 * pauseMs, 50)) {
    try {
      return step();
    } catch (e) {
      if (!isBusy(e) || Date.now() >= deadline) throw e;
      pauseThread(pauseMs);
    }
  }
}

/** Sleeps the thread without a busy loop (prune is synchronous and runs in the CLI). */
function pauseThread(ms: number): void {
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
const DAY_MS = 86_400_000;

/** Whether this process may write `target` (a file or a directory); false when it does not exist. */
function writable(target: string): boolean {
  try {
    fs.accessSync(target, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Why the database cannot be opened, in words that name the file or directory at fault. SQLite's own
 * messages name the database even when the cause is its directory (where it must create the file
 * and its `-wal` and `-shm`) or a read-only `-shm` an earlier run left behind.
 */
function describeOpenError(path: string, error: unknown): AuditStoreError {
  const code = (error as { code?: string }).code ?? '';
  const message = (error as Error).message ?? String(error);
  const prefix = `cannot open audit database \`${path}\``;
  if (code === 'SQLITE_NOTADB') return new AuditStoreError(`\`${path}\` is not an SQLite database`);
  let stat: fs.Stats | undefined;
  try {
    stat = fs.statSync(path);
  } catch {
    stat = undefined;
  }
  if (stat?.isDirectory()) return new AuditStoreError(`${prefix}: it is a directory; name a file in it, e.g. \`${path.replace(/\/+$/, '')}/audit.db\``);
  const dir = nodePath.dirname(nodePath.resolve(path));
  const readOnly = code.startsWith('SQLITE_READONLY') || /readonly database/i.test(message);
  if (code.startsWith('SQLITE_CANTOPEN') || /unable to open|does not exist/i.test(message) || readOnly) {
    if (!fs.existsSync(dir)) return new AuditStoreError(`${prefix}: the directory \`${dir}\` does not exist`);
    if (stat === undefined) {
      return new AuditStoreError(writable(dir) ? `${prefix}: no such file` : `${prefix}: the directory \`${dir}\` is not writable, so the database cannot be created there`);
    }
    if (!writable(path)) return new AuditStoreError(`${prefix}: the file is read-only for this user`);
    for (const sidecar of [`${path}-wal`, `${path}-shm`]) {
      if (fs.existsSync(sidecar) && !writable(sidecar)) {
        return new AuditStoreError(`${prefix}: \`${sidecar}\` is read-only (left by an earlier run?); make it writable, or delete it while no pdp has the database open`);
      }
    }
    if (!writable(dir)) return new AuditStoreError(`${prefix}: the directory \`${dir}\` is not writable (SQLite creates \`-wal\` and \`-shm\` files beside the database)`);
    if (readOnly) return new AuditStoreError(`${prefix}: ${message}`);
    return new AuditStoreError(`${prefix}: permission denied or unreadable`);
  }
  return new AuditStoreError(`${prefix}: ${message}`);
}

export function retentionCutoffs(now: Date): PruneCutoffs {
  const before = (days: number) => new Date(now.getTime() - days * DAY_MS).toISOString();
  return {
    discoveryBefore: before(RETENTION_DAYS.discovery),
    standardBefore: before(RETENTION_DAYS.standard),
    aclChangeBefore: before(RETENTION_DAYS.aclChange),
  };
}

/**
 * The retention rule. The prune code selects rows with it, and the DELETE trigger (migration 5) asks
 * it again through the DELETE trigger's guard function (APPEND_ONLY_GUARD_FUNCTION) for every row the prune deletes.
 */
export function isExpired(row: { timestamp: string; event_type: string; result: string | null }, cutoffs: PruneCutoffs): boolean {
  if (row.event_type === 'ACL_CHANGE') return row.timestamp < cutoffs.aclChangeBefore;
  if (row.event_type === 'DISCOVERY' && row.result !== 'DENY') return row.timestamp < cutoffs.discoveryBefore;
  return row.timestamp < cutoffs.standardBefore;
}

// The same rule as isExpired, for counting on a dry run. Named parameters, never interpolated values.
const EXPIRED_CONDITION = `timestamp < CASE
    WHEN event_type = 'ACL_CHANGE' THEN @aclChangeBefore
    WHEN event_type = 'DISCOVERY' AND result IS NOT 'DENY' THEN @discoveryBefore
    ELSE @standardBefore
  END`;

/** Reads version and file list out of an ACL_CHANGE row, tolerating rows that predate (or mangle) them. */
function recordedPolicySet(policyVersion: string | null, details: string | null): { version: string | null; files: PolicySetFile[] | null } {
  let parsed: unknown;
  try {
    parsed = details === null ? null : JSON.parse(details);
  } catch {
    parsed = null;
  }
  const d = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
  const version = policyVersion ?? (typeof d.new_version === 'string' ? d.new_version : null);
  const raw = d.files;
  const files = Array.isArray(raw) && raw.every((f) => f !== null && typeof f === 'object' && typeof f.path === 'string' && typeof f.sha256 === 'string')
    ? raw.map((f: { path: string; sha256: string; rules?: unknown }) => ({ path: f.path, sha256: f.sha256, rules: typeof f.rules === 'number' ? f.rules : 0 }))
    : null;
  return { version, files };
}

/** Rows per INSERT statement, largest first; any group is a sum of these (1 is last). */
const MULTI_ROW_SIZES = [64, 16, 4, 1] as const;

/** Device and inode of a file on disk (undefined for `:memory:` or a path that is gone). */
function identityOf(path: string): { dev: number; ino: number } | undefined {
  if (path === ':memory:' || path === '') return undefined;
  try {
    const st = fs.statSync(path);
    return { dev: st.dev, ino: st.ino };
  } catch {
    return undefined;
  }
}

/**
 * Opens (creating if needed) the audit database for writing: WAL, the chosen synchronous level,
 * a busy timeout, migrations applied, statements prepared.
 */
export function openAuditStore(path: string, options: AuditStoreOptions = {}): AuditStore {
  let busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  let db: Database.Database;
  try {
    db = new Database(path, { fileMustExist: options.fileMustExist ?? false, timeout: busyTimeoutMs });
  } catch (e) {
    throw describeOpenError(path, e);
  }
  // The cutoffs the DELETE trigger trusts, held here (never in the database) and set only for the
  // duration of one prune transaction in this connection.
  let pruneGuard: PruneCutoffs | undefined;
  try {
    // Registered before the migrations run, so no statement of this connection ever meets the
    // trigger without it. Not `directOnly`: the trigger must be able to call it.
    // 1: the row is protected; 0 only inside a prune, for an expired row.
    const isProtected = (timestamp: unknown, eventType: unknown, result: unknown) => {
      if (pruneGuard === undefined || typeof timestamp !== 'string' || typeof eventType !== 'string') return 1;
      if (result !== null && typeof result !== 'string') return 1;
      return isExpired({ timestamp, event_type: eventType, result }, pruneGuard) ? 0 : 1;
    };
    // Under both names: a file's trigger uses migration 5's until migration 7 has run.
    for (const name of [APPEND_ONLY_GUARD_FUNCTION, APPEND_ONLY_GUARD_FUNCTION_V5]) db.function(name, { deterministic: false, varargs: false }, isProtected);
    const mode = retryWhileBusy(() => db.pragma('journal_mode = WAL', { simple: true }), busyTimeoutMs);
    if (mode !== 'wal') throw new AuditStoreError(`cannot put audit database \`${path}\` in WAL mode (got \`${String(mode)}\`)`);
    db.pragma(`synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
    // Keep the WAL file from staying at its high-water mark after a burst.
    db.pragma('journal_size_limit = 67108864');
    // Checkpoint every 10,000 WAL pages (~40 MiB) instead of SQLite's 1,000: an append-only log
    // rewrites its last pages in every commit, so a rarer checkpoint copies each page once instead of
    // many times (measured 10-15 % less insert time per row). Connection-level, so set on every open.
    db.pragma(`wal_autocheckpoint = ${Math.max(0, Math.trunc(options.walAutocheckpointPages ?? 10_000))}`);
    applyMigrations(db);
  } catch (e) {
    db.close();
    if (e instanceof AuditStoreError) throw e;
    throw describeOpenError(path, e);
  }

  // Rows go in by statements of up to MULTI_ROW_SIZES[0] rows each (`VALUES (…), (…), …`): every
  // statement pays its own setup and, because of the insert trigger, its own statement journal (each
  // page it touches is copied first), so fewer statements per group commit cost less per row (2-9 %
  // less CPU per row, measured side by side against one statement per row in groups of 5, 20 and
  // 100: a small gain, kept because it costs nothing else). Positional binding, in AUDIT_ROW_COLUMNS
  // order: binding 16 named parameters looks each one up on the row object from C++, which measured
  // 15-20 % slower per row than passing the values.
  const columns = AUDIT_ROW_COLUMNS.join(', ');
  const rowPlaceholders = `(${AUDIT_ROW_COLUMNS.map(() => '?').join(', ')})`;
  const insertStatements = new Map(MULTI_ROW_SIZES.map((size) => [size, db.prepare(`INSERT INTO audit_log (${columns}) VALUES ${Array(size).fill(rowPlaceholders).join(', ')}`)]));
  const width = AUDIT_ROW_COLUMNS.length;
  const insertRowsTransaction = db.transaction((packed: PackedAuditRows) => {
    const count = packed.length / width;
    if (!Number.isInteger(count)) throw new TypeError(`packed audit rows hold ${packed.length} values, not a multiple of ${width}`);
    let at = 0;
    while (at < count) {
      const size = MULTI_ROW_SIZES.find((n) => n <= count - at)!;
      insertStatements.get(size)!.run(size === count ? packed : packed.slice(at * width, (at + size) * width));
      at += size;
    }
  });

  const clearAllowed = db.prepare('DELETE FROM allowed_services');
  // OR IGNORE: the same (name, namespace) declared twice is one allowed service, not an error.
  const insertAllowed = db.prepare('INSERT OR IGNORE INTO allowed_services (name, namespace) VALUES (?, ?)');
  const refreshAllowedTransaction = db.transaction((entries: readonly AllowedService[]) => {
    clearAllowed.run();
    for (const entry of entries) insertAllowed.run(entry.name, entry.namespace);
  });

  const probeStatement = db.prepare('UPDATE audit_probe SET probed_at = ? WHERE id = 1');

  // The newest ACL_CHANGE row: the last entry of the partial index `audit_log_acl_change`
  // (migration 3), a few page reads however many other rows came after it.
  const lastPolicyChangeStatement = db.prepare(
    `SELECT id, timestamp, policy_version, details FROM audit_log INDEXED BY audit_log_acl_change
     WHERE event_type = 'ACL_CHANGE' ORDER BY id DESC LIMIT 1`,
  );

  const countExpired = db.prepare(`SELECT COUNT(*) FROM audit_log WHERE timestamp < @discoveryBefore AND ${EXPIRED_CONDITION}`).pluck();
  // Keyset pagination in (timestamp, id) order over the timestamp index: each chunk starts where the
  // last one stopped, so rows kept by a longer retention are read once, not once per chunk.
  const selectCandidates = db.prepare(
    `SELECT id, timestamp, event_type, result FROM audit_log
     WHERE timestamp < @discoveryBefore AND timestamp >= @afterTimestamp AND (timestamp > @afterTimestamp OR id > @afterId)
     ORDER BY timestamp, id LIMIT @limit`,
  );
  const deleteById = db.prepare('DELETE FROM audit_log WHERE id = ?');
  type Candidate = { id: number; timestamp: string; event_type: string; result: string | null };
  // The guard lives in this closure, is set only while this chunk's deletes run inside its transaction
  // and is cleared in `finally`, whatever happens; the trigger still refuses any row whose retention
  // covers it, so a bug here cannot delete a live row. Nothing is written to `audit_control`.
  const pruneChunk = db.transaction((cutoffs: PruneCutoffs, after: { timestamp: string; id: number }, limit: number) => {
    const candidates = selectCandidates.all({ ...cutoffs, afterTimestamp: after.timestamp, afterId: after.id, limit }) as Candidate[];
    const expired = candidates.filter((row) => isExpired(row, cutoffs));
    if (expired.length > 0) {
      pruneGuard = cutoffs;
      try {
        for (const row of expired) deleteById.run(row.id);
      } finally {
        pruneGuard = undefined;
      }
    }
    return { last: candidates[candidates.length - 1] as Candidate | undefined, deleted: expired.length, seen: candidates.length };
  });

  // The file this connection writes to, as opened. Deleting or replacing it while serving would leave
  // the process writing rows into an unlinked inode that nobody can ever read: every write checks
  // first, and fails (the server then answers 503 and is not ready) instead of losing rows silently.
  const opened = identityOf(path);

  // The busy timeout SQLite applies on this connection right now: `busyTimeoutMs` for the writes that
  // may wait inside SQLite, 0 while `insertRowsIfUnlocked` is the one writing. Switched only when the
  // kind of write changes (a serving pdp does nothing else between reloads), because a PRAGMA per
  // group commit measured 2-4 µs, as much as several rows.
  let sqliteBusyTimeoutMs = busyTimeoutMs;
  // PRAGMA takes no bound parameter: one prepared statement per value used (two, in practice).
  const busyTimeoutStatements = new Map<number, Database.Statement>();
  const useBusyTimeout = (ms: number) => {
    if (ms === sqliteBusyTimeoutMs) return;
    let statement = busyTimeoutStatements.get(ms);
    if (statement === undefined) {
      statement = db.prepare(`PRAGMA busy_timeout = ${ms}`);
      busyTimeoutStatements.set(ms, statement);
    }
    statement.get();
    sqliteBusyTimeoutMs = ms;
  };
  const waitingForLocks = () => useBusyTimeout(busyTimeoutMs);
  const checkFile = () => {
    if (opened === undefined) return;
    const now = identityOf(path);
    if (now === undefined || now.dev !== opened.dev || now.ino !== opened.ino) {
      throw new AuditFileReplacedError(`the audit database \`${path}\` was deleted or replaced while open; refusing to write rows nobody could read (restart pdp to open the new file)`);
    }
  };

  function insertPacked(packed: PackedAuditRows): void {
    checkFile();
    waitingForLocks();
    insertRowsTransaction.immediate(packed);
  }

  return {
    path,
    db,
    get busyTimeoutMs() {
      return busyTimeoutMs;
    },
    insertBatch: (events) => insertPacked(packAuditRows(events.map(toAuditRow))),
    insertRows: (rows) => insertPacked(packAuditRows(rows)),
    insertPackedRows: insertPacked,
    insertRowsIfUnlocked(rows) {
      checkFile();
      useBusyTimeout(0);
      try {
        insertRowsTransaction.immediate(packAuditRows(rows));
        return true;
      } catch (e) {
        // BEGIN IMMEDIATE found the lock taken, or (WAL) a reader's snapshot is being recovered:
        // better-sqlite3 rolled back whatever the transaction had begun, so nothing is stored.
        if (isBusy(e)) return false;
        throw e;
      }
    },
    refreshAllowedServices(entries) {
      waitingForLocks();
      refreshAllowedTransaction.immediate(entries);
    },
    lastPolicyChange() {
      const row = lastPolicyChangeStatement.get() as { id: number; timestamp: string; policy_version: string | null; details: string | null } | undefined;
      if (row === undefined) return undefined;
      return { id: row.id, timestamp: row.timestamp, ...recordedPolicySet(row.policy_version, row.details) };
    },
    prune({ now, dryRun = false, chunkSize = DEFAULT_PRUNE_CHUNK, pauseMs = DEFAULT_PRUNE_PAUSE_MS }) {
      const cutoffs = retentionCutoffs(now);
      const expired = countExpired.get(cutoffs) as number;
      let deleted = 0;
      if (!dryRun && expired > 0) {
        let after = { timestamp: '', id: 0 };
        for (;;) {
          waitingForLocks();
          const chunk = pruneChunk.immediate(cutoffs, after, chunkSize);
          deleted += chunk.deleted;
          if (chunk.last === undefined || chunk.seen < chunkSize) break;
          after = { timestamp: chunk.last.timestamp, id: chunk.last.id };
          pauseThread(pauseMs);
        }
      }
      return { now: now.toISOString(), dryRun, cutoffs, expired, deleted };
    },
    probeWrite() {
      checkFile();
      waitingForLocks();
      probeStatement.run(new Date().toISOString());
    },
    setBusyTimeout(ms) {
      busyTimeoutMs = Math.max(0, Math.floor(ms));
      useBusyTimeout(busyTimeoutMs);
    },
    close() {
      if (db.open) db.close();
    },
  };
}

/**
 * Opens an existing audit database read-only, for analysis: never creates, migrates or writes it.
 * A database written by a newer pdp is still readable (migrations only add).
 */
export function openAuditStoreReadOnly(path: string): AuditReader {
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
  } catch (e) {
    throw describeOpenError(path, e);
  }
  let version: number;
  try {
    version = schemaVersion(db);
    const hasTable = db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'audit_log'").get() !== undefined;
    if (version < 1 || !hasTable) throw new AuditStoreError(`\`${path}\` is not a pdp audit database (no \`audit_log\` table)`);
  } catch (e) {
    db.close();
    if (e instanceof AuditStoreError) throw e;
    throw describeOpenError(path, e);
  }
  return {
    path,
    db,
    schemaVersion: version,
    close() {
      if (db.open) db.close();
    },
  };
}

