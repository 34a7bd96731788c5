// `pdp audit`: the seed's anomaly analyses over the audit database, and retention pruning.
import * as path from 'node:path';
import { formatOption, parse, parseDuration, refuseEmptyPaths } from './args';
import { EXIT_FINDING, EXIT_OK, UsageError, type CliIo, type Command } from './io';
import {
  AuditStoreError,
  DEFAULT_DENY_THRESHOLD,
  DEFAULT_SPIKE_THRESHOLD,
  anomalyReportJson,
  findAnomalies,
  openAuditStore,
  openAuditStoreReadOnly,
  RETENTION_DAYS,
  type AnomalyReport,
  type PruneResult,
} from '../audit';

export const HELP = `usage: pdp audit <command> [options]

Commands:
  anomalies   run the three security analyses over the audit database
  prune       remove rows past their retention

pdp audit anomalies [--db FILE] [--since 1h] [--spike-threshold N] [--deny-threshold N] [--format table|json]
  Registration spikes: services registered more than N times in the window (--spike-threshold, default ${DEFAULT_SPIKE_THRESHOLD}).
  Unknown services:    registrations of names not in allowed_services: every kept row, as the seed's query, or with --since given, those in the window.
  Authorization failures: identities denied more than N times in the window (--deny-threshold, default ${DEFAULT_DENY_THRESHOLD}).
  Opens the database read-only. Exit 0 when nothing is found, 1 when any analysis finds something.

pdp audit prune [--db FILE] [--dry-run] [--format table|json]
  Removes rows past their retention: non-denied DISCOVERY ${RETENTION_DAYS.discovery} days, ACL_CHANGE ${RETENTION_DAYS.aclChange} days,
  everything else (REGISTRATION, DEREGISTRATION, AUTHN_FAILURE, every DENY) ${RETENTION_DAYS.standard} days.
  --dry-run counts the expired rows and removes nothing.

Options:
  --db FILE       audit database (default ./audit.db; env PDP_AUDIT)
  --since DUR     window of the analyses, e.g. 30m, 1h, 7d (default: 1h for spikes and denials, every kept row for unknown services)
  --format FMT    table (alias text) or json (default table)
  -h, --help      show this help

Exit codes: 0 ok / nothing found, 1 finding or failure, 2 bad usage or unreadable database.
`;

const FORMATS = ['table', 'text', 'json'] as const;

function databasePath(flag: string | undefined, io: CliIo): string {
  refuseEmptyPaths([], { db: flag });
  const given = (flag ?? io.env.PDP_AUDIT) || 'audit.db';
  if (given === '') throw new UsageError('--db expects a file name');
  return path.resolve(io.cwd, given);
}

function parseThreshold(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) throw new UsageError(`${flag} expects a whole number; got \`${value}\``);
  const threshold = Number(value);
  if (!Number.isSafeInteger(threshold)) throw new UsageError(`${flag} is too large; got \`${value}\``);
  return threshold;
}

// Audit data is attacker-influenced (service names, identities). In a table printed to a terminal,
// control characters could move the cursor or rewrite earlier lines, and bidirectional controls
// (U+202E and its kin) could show a name reversed ("Trojan Source"), so they are shown escaped.
function printable(value: string | null): string {
  if (value === null) return '(null)';
  return value.replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((cells) => `  ${cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')}\n`).join('');
}

function formatAnomalyTable(report: AnomalyReport, dbPath: string): string {
  let out = `audit anomalies in ${dbPath}, window ${report.since} .. ${report.now}\n\n`;
  out += `registration spikes (more than ${report.thresholds.spike} registrations per service)\n`;
  out += report.registrationSpikes.length === 0
    ? '  none\n'
    : table(['service_name', 'registrations'], report.registrationSpikes.map((r) => [printable(r.service_name), String(r.registrations)]));
  out += `\nunknown services (registered ${report.unknownServicesSince === null ? 'in any kept row' : `since ${report.unknownServicesSince}`}, not in allowed_services)\n`;
  if (report.allowedServices === 0) out += '  note: allowed_services is empty (no policy set loaded yet), so every registered service counts as unknown\n';
  out += report.unknownServices.length === 0
    ? '  none\n'
    : table(['service_name', 'registrations'], report.unknownServices.map((r) => [printable(r.service_name), String(r.registrations)]));
  out += `\nauthorization failures (more than ${report.thresholds.deny} denials per identity)\n`;
  out += report.authorizationFailures.length === 0
    ? '  none\n'
    : table(['identity', 'denials', 'of them failed authentications'], report.authorizationFailures.map((r) => [printable(r.identity), String(r.denials), String(r.failed_authentications)]));
  if (report.authorizationFailures.some((r) => r.failed_authentications > 0)) {
    out += '  note: a failed authentication names the identity that was attempted, not one that was verified:\n'
      + '        anyone can claim an identity (a self-signed certificate will do); see details.identity_verified\n';
  }
  out += `\n${report.findings === 0 ? 'no findings' : report.findings === 1 ? '1 finding' : `${report.findings} findings`}\n`;
  return out;
}

function anomalyJson(report: AnomalyReport, dbPath: string): string {
  return `${JSON.stringify(anomalyReportJson(report, dbPath), null, 2)}\n`;
}

async function runAnomalies(args: string[], io: CliIo): Promise<number> {
  const { values } = parse(
    args,
    {
      db: { type: 'string' },
      since: { type: 'string' },
      'spike-threshold': { type: 'string' },
      'deny-threshold': { type: 'string' },
      format: { type: 'string' },
    },
    false,
  );
  if (values.help) {
    io.stdout.write(HELP);
    return EXIT_OK;
  }
  const format = formatOption(values.format, FORMATS, 'table');
  const sinceMs = parseDuration(values.since ?? '1h', '--since');
  if (sinceMs <= 0) throw new UsageError(`--since must be longer than zero; got \`${values.since}\``);
  const spikeThreshold = parseThreshold(values['spike-threshold'], '--spike-threshold', DEFAULT_SPIKE_THRESHOLD);
  const denyThreshold = parseThreshold(values['deny-threshold'], '--deny-threshold', DEFAULT_DENY_THRESHOLD);
  const dbPath = databasePath(values.db, io);

  let reader;
  try {
    reader = openAuditStoreReadOnly(dbPath);
  } catch (e) {
    if (e instanceof AuditStoreError) throw new UsageError(e.message);
    throw e;
  }
  let report: AnomalyReport;
  try {
    report = findAnomalies(reader.db, { now: new Date(), sinceMs, windowUnknownServices: values.since !== undefined, spikeThreshold, denyThreshold });
  } catch (e) {
    // A database that opened but cannot be read as ours (damaged, missing columns) is not a finding.
    throw new UsageError(`cannot read audit database \`${dbPath}\`: ${(e as Error).message}`);
  } finally {
    reader.close();
  }
  io.stdout.write(format === 'json' ? anomalyJson(report, dbPath) : formatAnomalyTable(report, dbPath));
  return report.findings > 0 ? EXIT_FINDING : EXIT_OK;
}

function formatPrune(result: PruneResult, dbPath: string): string {
  const { cutoffs } = result;
  const lines = [
    `retention cutoffs: DISCOVERY before ${cutoffs.discoveryBefore}, ACL_CHANGE before ${cutoffs.aclChangeBefore}, other before ${cutoffs.standardBefore}`,
    result.dryRun
      ? `${result.expired} expired row${result.expired === 1 ? '' : 's'} in ${dbPath} would be removed (dry run, nothing removed)`
      : `removed ${result.deleted} expired row${result.deleted === 1 ? '' : 's'} from ${dbPath}`,
  ];
  return `${lines.join('\n')}\n`;
}

async function runPrune(args: string[], io: CliIo): Promise<number> {
  const { values } = parse(args, { db: { type: 'string' }, 'dry-run': { type: 'boolean' }, format: { type: 'string' } }, false);
  if (values.help) {
    io.stdout.write(HELP);
    return EXIT_OK;
  }
  const format = formatOption(values.format, FORMATS, 'table');
  const dbPath = databasePath(values.db, io);
  let store;
  try {
    // A longer busy timeout than the server's: pruning may wait for the server's write to finish.
    store = openAuditStore(dbPath, { fileMustExist: true, busyTimeoutMs: 5000 });
  } catch (e) {
    if (e instanceof AuditStoreError) throw new UsageError(e.message);
    throw e;
  }
  let result: PruneResult;
  try {
    result = store.prune({ now: new Date(), dryRun: values['dry-run'] ?? false });
  } catch (e) {
    io.stderr.write(`pdp audit prune: cannot prune \`${dbPath}\`: ${(e as Error).message}\n`);
    return EXIT_FINDING;
  } finally {
    store.close();
  }
  io.stdout.write(
    format === 'json'
      ? `${JSON.stringify({ db: dbPath, now: result.now, dry_run: result.dryRun, cutoffs: result.cutoffs, expired: result.expired, deleted: result.deleted }, null, 2)}\n`
      : formatPrune(result, dbPath),
  );
  return EXIT_OK;
}

export const run: Command = async (args, io) => {
  const [subcommand, ...rest] = args;
  switch (subcommand) {
    case 'anomalies':
      return runAnomalies(rest, io);
    case 'prune':
      return runPrune(rest, io);
    case '-h':
    case '--help':
    case 'help':
      io.stdout.write(HELP);
      return EXIT_OK;
    case undefined:
      throw new UsageError('`pdp audit` needs a command: `anomalies` or `prune` (see `pdp audit --help`)');
    default:
      throw new UsageError(`unknown audit command \`${subcommand}\`; expected \`anomalies\` or \`prune\``);
  }
};
