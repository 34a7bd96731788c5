// Where the CPU time of one audit row goes: the same realistic decision rows committed in group
// commits into the real `audit_log` schema and into variants of it with one part left out (the
// insert trigger, the CHECK constraints, the time index), into a bare table with none of them, and
// into the real schema in memory (no file, no WAL). Interleaved rounds in one process, CPU time per
// row (user + system), median and range over the rounds. It reports; it asserts nothing.
//
//   node dist/bench/audit-row-cost.js [--quick]   (--help: USAGE below)
//   → bench/results/audit-row-cost-latest.md and audit-row-cost-<date>.json (quick: …-quick names, not committed)
//
// Statements as the store's (src/audit/store.ts): multi-row INSERTs of up to 64 rows, positional
// parameters, one transaction per group; WAL, synchronous=NORMAL, wal_autocheckpoint 10,000 pages.
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { AUDIT_ROW_COLUMNS, APPEND_ONLY_GUARD_FUNCTION, PRUNE_GUARD_FUNCTION, openAuditStore, toAuditRow, type AuditEvent, type AuditRow } from '../src/audit';
import { benchArgs } from './args';
import { machineStamp } from './run';
import { benchTempDir } from './suite';

interface Variant {
  name: string;
  what: string;
  file: string | ':memory:';
  /** The schema's statements, edited; a statement mapped to null is left out. */
  edit(sql: string): string | null;
}

const CHECKS = [/CHECK \(timestamp GLOB '[^']*'\)/, /CHECK \(event_type <> ''\)/, /CHECK \(result IN \([^)]*\)\)/];
const withoutChecks = (sql: string) => CHECKS.reduce((s, re) => s.replace(re, ''), sql);

function variants(dir: string): Variant[] {
  return [
    { name: 'real', what: 'the schema pdp serves with (migrations 1-5)', file: path.join(dir, 'real.db'), edit: (s) => s },
    { name: 'no-triggers', what: 'without the append-only triggers', file: path.join(dir, 'no-triggers.db'), edit: (s) => (/CREATE TRIGGER/.test(s) ? null : s) },
    { name: 'no-checks', what: 'without the CHECK constraints', file: path.join(dir, 'no-checks.db'), edit: withoutChecks },
    { name: 'no-time-index', what: 'without the covering time index `audit_log_time`', file: path.join(dir, 'no-index.db'), edit: (s) => (/CREATE INDEX audit_log_time /.test(s) ? null : s) },
    {
      name: 'bare', what: 'a table of the same columns alone: no trigger, CHECK, index or AUTOINCREMENT', file: path.join(dir, 'bare.db'),
      edit: (s) => (/CREATE (TRIGGER|INDEX)/.test(s) ? null : withoutChecks(s).replace('AUTOINCREMENT', '')),
    },
    { name: 'real-in-memory', what: 'the real schema in a `:memory:` database (no file, no WAL)', file: ':memory:', edit: (s) => s },
  ];
}

let clock = Date.parse('2026-11-23T10:00:00.000Z');
/** A decision row as the server writes it: ALLOW 2/3, DENY 1/3 with the engine's longer reason. */
function decisionRow(i: number): AuditRow {
  clock += 0.05;
  const service = `svc-${String(i % 1000).padStart(4, '0')}`;
  const identity = `spiffe://cluster/ns/prod/sa/${service}-reader`;
  const allow = i % 3 !== 0;
  const event: AuditEvent = {
    timestamp: new Date(clock).toISOString(), event_type: 'DISCOVERY', service_name: service, namespace: 'prod', instance_id: null,
    identity, source_ip: '10.0.1.50', action: 'read', resource: `service:${service}`, result: allow ? 'ALLOW' : 'DENY',
    reason: allow ? `${identity} has read on service:${service} (service "${service}" at generated.hcl:${i % 2000})` : `no rule grants ${identity} access to service:${service}; the default policy is deny`,
    rule: allow ? `generated.hcl:${i % 2000}` : null, decision_id: randomUUID(),
    policy_version: 'sha256:4ddd218292eae409e6715f4d1aec14bffb95428c4e23d9812d595f76b8764334', details: null, registry_node: os.hostname(),
  };
  return toAuditRow(event);
}

function open(variant: Variant, schema: string[]): (rows: AuditRow[]) => void {
  const db = new Database(variant.file);
  // The triggers call these; only pdp's connection defines them (a DELETE guard, never called here).
  db.function(APPEND_ONLY_GUARD_FUNCTION, () => 1);
  db.function(PRUNE_GUARD_FUNCTION, () => 0);
  if (variant.file !== ':memory:') {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('wal_autocheckpoint = 10000');
  }
  for (const statement of schema) {
    const edited = variant.edit(statement);
    if (edited !== null) db.exec(edited);
  }
  const columns = AUDIT_ROW_COLUMNS.join(', ');
  const one = `(${AUDIT_ROW_COLUMNS.map(() => '?').join(', ')})`;
  const statements = new Map<number, Database.Statement>();
  const statement = (n: number) => {
    let s = statements.get(n);
    if (s === undefined) statements.set(n, (s = db.prepare(`INSERT INTO audit_log (${columns}) VALUES ${Array(n).fill(one).join(', ')}`)));
    return s;
  };
  return db.transaction((rows: AuditRow[]) => {
    for (let at = 0; at < rows.length;) {
      const n = [64, 16, 4, 1].find((size) => size <= rows.length - at)!;
      const values: (string | null)[] = [];
      for (let i = at; i < at + n; i++) for (const c of AUDIT_ROW_COLUMNS) values.push(rows[i]![c]);
      statement(n).run(values);
      at += n;
    }
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

export function runRowCost(quick: boolean): { markdown: string; data: unknown } {
  const dir = benchTempDir('pdp-bench-row-');
  try {
    // The real schema, as the migrations leave it.
    const schemaFile = path.join(dir, 'schema.db');
    openAuditStore(schemaFile).close();
    const reader = new Database(schemaFile, { readonly: true });
    const schema = reader.prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY rowid").pluck().all() as string[];
    reader.close();

    const groups = [8, 100];
    const rounds = quick ? 3 : 7;
    const rowsPerRound = quick ? 6_000 : 20_000;
    const list = variants(dir);
    const inserts = new Map(list.flatMap((v) => groups.map((g) => [`${v.name}/${g}`, open({ ...v, file: v.file === ':memory:' ? v.file : v.file.replace('.db', `-${g}.db`) }, schema)] as const)));
    const samples = new Map<string, number[]>();
    for (let round = 0; round <= rounds; round++) {
      for (const g of groups) {
        for (const v of list) {
          const batches: AuditRow[][] = [];
          for (let i = 0; i < rowsPerRound; i += g) batches.push(Array.from({ length: g }, (_, k) => decisionRow(i + k)));
          const insert = inserts.get(`${v.name}/${g}`)!;
          const before = process.cpuUsage();
          for (const b of batches) insert(b);
          const used = process.cpuUsage(before);
          if (round === 0) continue; // warm-up
          const key = `${v.name}/${g}`;
          samples.set(key, [...(samples.get(key) ?? []), (used.user + used.system) / (batches.length * g)]);
        }
      }
    }
    const m = machineStamp();
    const out: string[] = [];
    out.push(`# Where the CPU time of an audit row goes${quick ? ' (quick)' : ''}`, '');
    out.push(`Machine: ${m.cpu}, ${m.cores} cores, Node ${m.node}; ${m.date}; commit ${m.commit?.slice(0, 12) ?? 'unknown'}${m.dirty ? ' (with uncommitted changes)' : ''}; load average at start ${m.loadAverageAtStart.join(' / ')}.`, '');
    out.push(`\`node dist/bench/audit-row-cost.js${quick ? ' --quick' : ''}\`: ${rowsPerRound.toLocaleString('en-US')} realistic decision rows (~${Math.round(JSON.stringify(Object.values(decisionRow(0))).length)} bytes of values) per variant and group size in each of ${rounds} interleaved rounds after a warm-up, committed in group commits of 8 and of 100 rows with the store's statements. CPU time (user + system) per row; median over the rounds, range in brackets.`, '');
    out.push('| variant | what | groups of 8: µs/row | groups of 100: µs/row |', '|---|---|---:|---:|');
    for (const v of list) {
      const cell = (g: number) => {
        const xs = samples.get(`${v.name}/${g}`)!;
        return `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;
      };
      out.push(`| \`${v.name}\` | ${v.what} | ${cell(8)} | ${cell(100)} |`);
    }
    out.push('', 'What this says: the difference between `real` and `bare` is what pdp\'s guarantees (append-only triggers, CHECKs, the time index, AUTOINCREMENT) cost per row; `bare` is SQLite\'s own work for the row (the record, the B-tree, the WAL frames, binding 16 values); `real-in-memory` against `real` is what the file and its WAL add. A shared host moves single rounds by tens of percent: compare within a column of one run.', '');
    const perRow = Object.fromEntries([...samples].map(([key, xs]) => [key, { median_us: median(xs), rounds_us: xs }]));
    return { markdown: out.join('\n'), data: { machine: m, quick, rounds, rowsPerRound, groups, variants: list.map((v) => ({ name: v.name, what: v.what })), perRow } };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export const USAGE = `usage: node dist/bench/audit-row-cost.js [--quick]

Where the CPU time of one audit row goes: the same realistic rows committed into the real
\`audit_log\` schema, into variants with one part left out, into a bare table and into the real
schema in memory; CPU time per row, median and range over interleaved rounds. Prints the table and
writes bench/results/audit-row-cost-latest.md and audit-row-cost-<date>.json.

  --quick          fewer and smaller rounds; the files are named …-quick (not committed)
  -h, --help       this text
`;

if (require.main === module) {
  const parsed = benchArgs('audit-row-cost.js', USAGE, process.argv.slice(2), { quick: { type: 'boolean' } });
  if ('exit' in parsed) process.exitCode = parsed.exit;
  else {
    const quick = parsed.values.quick === true;
    const { markdown, data } = runRowCost(quick);
    const results = path.join(__dirname, '..', '..', 'bench', 'results');
    const suffix = quick ? '-quick' : '';
    const file = path.join(results, `audit-row-cost-latest${suffix}.md`);
    const json = path.join(results, `audit-row-cost-${new Date().toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}${suffix}.json`);
    fs.writeFileSync(file, `${markdown}\n`);
    fs.writeFileSync(json, `${JSON.stringify(data, null, 2)}\n`);
    process.stdout.write(`${markdown}\nwrote ${path.relative(process.cwd(), file)}, ${path.relative(process.cwd(), json)}\n`);
  }
}
