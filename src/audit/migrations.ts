// Numbered schema migrations for the audit database. The schema is a public contract (security teams
// query it with the plain `sqlite3` shell), so it changes only by appending a migration here; a
// shipped migration's SQL is never edited. The applied version lives in `PRAGMA user_version`
// (stored in the database header, so any SQLite client can read it and it commits or rolls back
// with the transaction that applied the migration).
import type Database from 'better-sqlite3';

export interface Migration {
  version: number;
  description: string;
  sql: string;
}

/** The message both append-only triggers raise; tests and docs match on it. */
export const APPEND_ONLY_MESSAGE = 'audit_log is append-only';

/**
 * Migration 1: the audit log, the allowed-services table the "unknown services" analysis reads, and
 * the append-only machinery.
 *
 * - `id INTEGER PRIMARY KEY AUTOINCREMENT`: AUTOINCREMENT (not a plain rowid) so an id is never
 *   reused, even when pruning removes the newest rows; consumers may checkpoint on "last id seen".
 * - `timestamp` has a CHECK on its shape so text order is time order for every writer, not only ours.
 * - Indexes: `(event_type, timestamp, service_name)` serves the spike and unknown-service analyses as
 *   a covering index; `(result, timestamp, identity)` serves the denial analysis the same way;
 *   `(timestamp)` serves retention pruning and ad-hoc time-range queries.
 * - Append-only: UPDATE always fails; DELETE fails unless the row is expired according to the cutoffs
 *   in the one-row `audit_control` table. Those cutoffs are NULL at rest and are set only inside the
 *   prune transaction (and reset before it commits), so no other connection ever sees them set, and
 *   even inside it only rows older than their class's retention can go. `INSERT OR REPLACE` over an
 *   existing id would delete silently (REPLACE fires no DELETE trigger unless recursive_triggers is
 *   on), so an insert that names an existing id is refused as well.
 *   (Migration 3 replaced the DELETE trigger: `audit_control` turned out to be writable by anyone.)
 */
const MIGRATION_1 = `
CREATE TABLE audit_log (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  timestamp      TEXT NOT NULL
                 CHECK (timestamp GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z'),
  event_type     TEXT NOT NULL CHECK (event_type <> ''),
  service_name   TEXT,
  namespace      TEXT,
  instance_id    TEXT,
  identity       TEXT,
  source_ip      TEXT,
  action         TEXT,
  resource       TEXT,
  result         TEXT CHECK (result IN ('ALLOW', 'ALLOW_DEFAULT', 'DENY')),
  reason         TEXT,
  rule           TEXT,
  decision_id    TEXT,
  policy_version TEXT,
  details        TEXT,
  registry_node  TEXT NOT NULL
);

CREATE INDEX audit_log_timestamp ON audit_log (timestamp);
CREATE INDEX audit_log_event_type_timestamp ON audit_log (event_type, timestamp, service_name);
CREATE INDEX audit_log_result_timestamp ON audit_log (result, timestamp, identity);

CREATE TABLE allowed_services (
  name      TEXT NOT NULL,
  namespace TEXT NOT NULL,
  PRIMARY KEY (name, namespace)
);

CREATE TABLE audit_control (
  id                      INTEGER PRIMARY KEY CHECK (id = 1),
  prune_discovery_before  TEXT,
  prune_standard_before   TEXT,
  prune_acl_change_before TEXT
);
INSERT INTO audit_control (id) VALUES (1);

CREATE TABLE audit_probe (
  id       INTEGER PRIMARY KEY CHECK (id = 1),
  probed_at TEXT
);
INSERT INTO audit_probe (id) VALUES (1);

CREATE TRIGGER audit_log_append_only_update
BEFORE UPDATE ON audit_log
BEGIN
  SELECT RAISE(ABORT, '${APPEND_ONLY_MESSAGE}');
END;

CREATE TRIGGER audit_log_append_only_delete
BEFORE DELETE ON audit_log
WHEN NOT EXISTS (
  SELECT 1 FROM audit_control AS c
  WHERE c.id = 1
    AND OLD.timestamp < CASE
      WHEN OLD.event_type = 'ACL_CHANGE' THEN c.prune_acl_change_before
      WHEN OLD.event_type = 'DISCOVERY' AND OLD.result IS NOT 'DENY' THEN c.prune_discovery_before
      ELSE c.prune_standard_before
    END
)
BEGIN
  SELECT RAISE(ABORT, '${APPEND_ONLY_MESSAGE}; expired rows are removed only by \`pdp audit prune\`');
END;

CREATE TRIGGER audit_log_append_only_replace
BEFORE INSERT ON audit_log
WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.id)
BEGIN
  SELECT RAISE(ABORT, '${APPEND_ONLY_MESSAGE}; an existing row cannot be replaced');
END;
`;

/**
 * Migration 2: one time-first covering index instead of the three of migration 1.
 *
 * Rows arrive in time order, so an index that starts with `timestamp` is appended at its right edge:
 * a group commit dirties one leaf page of it. Migration 1's `(event_type, …)` and `(result, …)`
 * indexes put each new row into one of several ranges, so every commit dirtied a leaf page per
 * event type and per result, and each dirty page is a 4 KiB write into the WAL. Measured on the
 * benchmark machine (docs/audit.md), inserting in group commits of 10-30 rows went from 26-39 µs to
 * 18-23 µs per row. The analyses read the window's slice of this index and never the table (every
 * column they filter or group on is in it); retention pruning reads it in time order too.
 */
const MIGRATION_2 = `
DROP INDEX audit_log_timestamp;
DROP INDEX audit_log_event_type_timestamp;
DROP INDEX audit_log_result_timestamp;
CREATE INDEX audit_log_time ON audit_log (timestamp, event_type, result, service_name, identity);
`;

/**
 * The SQL function the DELETE trigger of migration 3 asks whether a row may go. Only pdp's own
 * connections register it (`openAuditStore`), and it answers 1 only while `pdp audit prune` runs in
 * that connection, for a row past its class's retention. In any other client (the `sqlite3` shell,
 * Python, another program) the function does not exist, so a DELETE on `audit_log` fails to prepare
 * with `no such function: pdp_audit_prune_may_delete`. Named so that error says who may delete.
 * Migration 5 replaced it by APPEND_ONLY_GUARD_FUNCTION; the name stays here for migration 3's SQL.
 */
export const PRUNE_GUARD_FUNCTION = 'pdp_audit_prune_may_delete';

/**
 * Migration 3: the DELETE trigger stops trusting `audit_control`.
 *
 * Migration 1's trigger allowed a DELETE when the row was older than the cutoffs written in the
 * one-row `audit_control` table, and nothing protects that table: any client could set the cutoffs
 * to `9999-12-31…` and then delete every row with plain SQL. The new trigger asks
 * `pdp_audit_prune_may_delete(timestamp, event_type, result)` instead, a function registered only by
 * pdp's own connection, whose cutoffs live in JavaScript for the duration of one prune transaction.
 * `IS NOT 1` (not `NOT …`) so that any other answer, NULL included, refuses. `audit_control` stays
 * (dropping a table is a schema change consumers may notice) but nothing reads it any more; its
 * cutoffs are reset to NULL so nobody mistakes them for meaningful.
 *
 * It also adds a partial index holding only the `ACL_CHANGE` rows, so `pdp serve` finds the newest
 * one at start-up (the version it is replacing) in a few page reads however many decisions were
 * logged since. An insert of any other event type only evaluates the index's WHERE: no index page
 * is written, so the insert cost migration 2 bought stays.
 */
const MIGRATION_3 = `
DROP TRIGGER audit_log_append_only_delete;
CREATE TRIGGER audit_log_append_only_delete
BEFORE DELETE ON audit_log
WHEN ${PRUNE_GUARD_FUNCTION}(OLD.timestamp, OLD.event_type, OLD.result) IS NOT 1
BEGIN
  SELECT RAISE(ABORT, '${APPEND_ONLY_MESSAGE}; expired rows are removed only by \`pdp audit prune\`');
END;
UPDATE audit_control SET prune_discovery_before = NULL, prune_standard_before = NULL, prune_acl_change_before = NULL;
CREATE INDEX audit_log_acl_change ON audit_log (id) WHERE event_type = 'ACL_CHANGE';
`;

/**
 * Migration 4: the insert guard stops costing a lookup per row, and ids are the store's to assign.
 *
 * Migration 1's guard against `INSERT OR REPLACE` was `WHEN NEW.id IS NOT NULL AND EXISTS (…)`,
 * meant to be false for every row pdp writes. It never was: in a BEFORE INSERT trigger SQLite does
 * not know the id it is about to assign and gives `NEW.id` as -1, not NULL, so the EXISTS ran a
 * B-tree lookup (of id -1) for every decision logged; ~0.5-0.7 µs of the ~7-11 µs a row costs,
 * measured side by side (docs/audit.md). The new guard refuses every insert that names an id of its
 * own, so it is false for every row whose id SQLite assigns, and it decides from `NEW.id` alone.
 * It is also stricter: besides `INSERT OR REPLACE` over an existing row, it refuses an explicit id
 * below ones already assigned (a freed id after pruning), which a consumer reading "rows after the
 * last id seen" would never read. -1 itself is the one id that cannot be told from an assigned one
 * inside the trigger; a row forged with id -1 is not one pdp wrote, and docs/audit.md says so.
 */
const MIGRATION_4 = `
DROP TRIGGER audit_log_append_only_replace;
CREATE TRIGGER audit_log_append_only_insert_id
BEFORE INSERT ON audit_log
WHEN NEW.id <> -1
BEGIN
  SELECT RAISE(ABORT, '${APPEND_ONLY_MESSAGE}; ids are assigned by the audit store, so an insert cannot name one');
END;
`;

/**
 * The SQL function the DELETE trigger of migration 5 asked whether a row is protected (migration 7
 * renamed it to APPEND_ONLY_GUARD_FUNCTION); the name stays here for migration 5's SQL.
 */
export const APPEND_ONLY_GUARD_FUNCTION_V5 = 'audit_log_is_append_only';

/**
 * The SQL function the DELETE trigger asks whether a row is protected: 0 only while `pdp audit
 * prune` runs in pdp's own connection and only for a row past its class's retention, 1 otherwise.
 * Only pdp's connections register it, so in any other client a DELETE on `audit_log` fails to
 * prepare, and the name is what that client prints: `no such function: audit_log is append-only;
 * expired rows are removed only by pdp audit prune`. A quoted identifier (APPEND_ONLY_GUARD_CALL in
 * SQL), so the name can be that sentence.
 */
export const APPEND_ONLY_GUARD_FUNCTION = `${APPEND_ONLY_MESSAGE}; expired rows are removed only by pdp audit prune`;
/** APPEND_ONLY_GUARD_FUNCTION as SQL names it. */
export const APPEND_ONLY_GUARD_CALL = `"${APPEND_ONLY_GUARD_FUNCTION}"`;

/**
 * Migration 5: the DELETE trigger's function is renamed so that the error another client gets says
 * what happened. Under migration 3 the `sqlite3` shell answered a DELETE with `no such function:
 * pdp_audit_prune_may_delete`, an error that reads like a broken database rather than a refusal;
 * now it reads `no such function: audit_log_is_append_only`. SQLite resolves a trigger's functions
 * when it prepares the statement, so no trigger can RAISE its own message in a client that lacks the
 * function: the function's name is the only text such a client shows. The function's answer is
 * inverted to match the name (1: the row is protected), and `IS NOT 0` keeps every other answer,
 * NULL included, a refusal.
 */
const MIGRATION_5 = `
DROP TRIGGER audit_log_append_only_delete;
CREATE TRIGGER audit_log_append_only_delete
BEFORE DELETE ON audit_log
WHEN ${APPEND_ONLY_GUARD_FUNCTION_V5}(OLD.timestamp, OLD.event_type, OLD.result) IS NOT 0
BEGIN
  SELECT RAISE(ABORT, '${APPEND_ONLY_MESSAGE}; expired rows are removed only by \`pdp audit prune\`');
END;
`;

/**
 * Migration 6: a view `audit_logs` over `audit_log`, so the seed design's three security-monitoring
 * queries run as the contract (spec/audit.md) says they must: with only `NOW() - INTERVAL '1 hour'`
 * and `'DENIED'` changed. The seed writes `FROM audit_logs`; the contract names the table `audit_log`.
 * A plain view is flattened into the query, so the seed's queries use the same indexes as the table;
 * it is read-only (a view without INSTEAD OF triggers cannot be written), so it opens no way around
 * the append-only triggers.
 */
const MIGRATION_6 = `
CREATE VIEW audit_logs AS SELECT * FROM audit_log;
`;

/**
 * Migration 7: the DELETE trigger's function is named by the sentence a client without it should
 * read. Under migration 5 the `sqlite3` shell answered a DELETE with `no such function:
 * audit_log_is_append_only`, which says "append only" only to a reader who parses the identifier;
 * the contract asks for a clear message (spec/audit.md). Same function, same answers, new name.
 */
const MIGRATION_7 = `
DROP TRIGGER audit_log_append_only_delete;
CREATE TRIGGER audit_log_append_only_delete
BEFORE DELETE ON audit_log
WHEN ${APPEND_ONLY_GUARD_CALL}(OLD.timestamp, OLD.event_type, OLD.result) IS NOT 0
BEGIN
  SELECT RAISE(ABORT, '${APPEND_ONLY_MESSAGE}; expired rows are removed only by \`pdp audit prune\`');
END;
`;

export const MIGRATIONS: readonly Migration[] = [
  { version: 1, description: 'audit_log, allowed_services, append-only triggers', sql: MIGRATION_1 },
  { version: 2, description: 'one time-first covering index for inserts in time order and windowed analyses', sql: MIGRATION_2 },
  { version: 3, description: 'the DELETE trigger asks a function only pdp registers, not the unprotected audit_control table; a partial index of ACL_CHANGE rows', sql: MIGRATION_3 },
  { version: 4, description: 'the insert guard refuses inserts that name an id, instead of looking up every new row', sql: MIGRATION_4 },
  { version: 5, description: 'the DELETE trigger asks `audit_log_is_append_only`, so a client without it is told in those words', sql: MIGRATION_5 },
  { version: 6, description: 'a read-only view `audit_logs` over `audit_log`, so the seed design\'s queries run as written', sql: MIGRATION_6 },
  { version: 7, description: 'the DELETE trigger\'s function is named `audit_log is append-only; expired rows are removed only by pdp audit prune`, the message a client without it prints', sql: MIGRATION_7 },
];

/** The schema version this build writes. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1].version;

export function schemaVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}

/**
 * Brings the database up to `SCHEMA_VERSION`. Runs in one IMMEDIATE transaction, so two processes
 * opening the same new file at once cannot both migrate it, and a failed migration leaves nothing
 * half-applied. Returns the versions before and after.
 */
export function applyMigrations(db: Database.Database): { from: number; to: number } {
  const migrate = db.transaction(() => {
    const from = schemaVersion(db);
    if (from > SCHEMA_VERSION) {
      throw new Error(`schema version ${from} is newer than this pdp supports (${SCHEMA_VERSION}); upgrade pdp`);
    }
    for (const migration of MIGRATIONS) {
      if (migration.version <= from) continue;
      db.exec(migration.sql);
      // user_version takes no bound parameter; the value is our own integer constant.
      db.pragma(`user_version = ${migration.version}`);
    }
    return { from, to: schemaVersion(db) };
  });
  return migrate.immediate();
}
