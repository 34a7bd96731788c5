// `pdp check [PATH…]`: every error and warning of every file, sorted by location (text, json or
// SARIF). `pdp check --replay AUDIT_DB --policies DIR`: re-decides recorded decisions under a new
// policy set and reports the ones that would flip.
import fs from 'node:fs';
import path from 'node:path';
import { LINT_CODES, type Acknowledged } from '../check';
import { hasErrors, quote, sortDiagnostics, type Diagnostic } from '../diagnostics';
import { buildPolicySet, type LoadedPolicy } from '../engine';
import { formatOption, parse, parseDuration, refuseEmptyPaths } from './args';
import { EXIT_FINDING, EXIT_OK, UsageError, type CliIo, type Command } from './io';
import { diagnosticToJson, policyPathProblem, printDiagnostics, readPolicyDirectory, readPolicyInputs, withDisplayPaths, type PolicyInput } from './policy-input';

/** `text` wrapped at `width` columns: the help lists the lint codes from LINT_CODES itself, so it never misses one. */
const wrap = (text: string, width = 96): string => text.replace(new RegExp(`(.{1,${width}})(?: |$)`, 'g'), '$1\n').trimEnd();

export const HELP = `usage: pdp check [PATH…] [--strict] [--format text|json|sarif]
       pdp check --within DIR [FILE…] [--strict] [--format text|json|sarif]
       pdp check --replay AUDIT_DB [--policies DIR] [--since DURATION] [--fail-on-change] [--format text|json]

Parses and checks policy files or directories (default: $PDP_POLICIES or ./policies) and prints
every error and warning, sorted by location. Each directory is checked as one policy set; files
named together are checked together as one set. Warnings come from the lint rules (docs/lint.md):
${wrap(Object.keys(LINT_CODES).join(', ') + '.')}

  --within DIR      check the whole policy set in DIR, but report only what lies in the FILEs
                    named (all of DIR when none is): for pre-commit hooks, which pass the
                    changed files only, while roles and settings live in other files of the set
  --strict          warnings fail the check too; a warning that is meant is acknowledged in the
                    policy, next to its rule, with \`# pdp:allow CODE -- why\` (docs/lint.md): it is
                    then reported apart (json \`acknowledged\`, SARIF suppressions) and does not fail
  --format FORMAT   text (default), json, or sarif (SARIF 2.1.0, for code-scanning tools)

Replay (docs/replay.md): re-decides every decision recorded in the audit database under the policy
set in DIR (default $PDP_POLICIES or ./policies) and reports each one that would flip allow→deny or
deny→allow, grouped by identity and resource. The database is opened read-only.

  --replay FILE       the audit database to read (e.g. audit.db)
  --policies DIR      the new policy set to decide with
  --since DURATION    only decisions recorded in the last DURATION (30m, 1h, 7d)
  --fail-on-change    exit 1 when any decision would flip
  --format FORMAT     text (default) or json

Exit codes: 0 no errors (replay: no flip, or flips without --fail-on-change), 1 errors found
(or warnings with --strict; replay: the new set has errors, or flips with --fail-on-change),
2 bad usage or an unreadable audit database.
`;

export const run: Command = async (args, io) => {
  const { values, positionals } = parse(args, {
    strict: { type: 'boolean' },
    format: { type: 'string' },
    replay: { type: 'string' },
    policies: { type: 'string' },
    since: { type: 'string' },
    'fail-on-change': { type: 'boolean' },
    within: { type: 'string' },
  });
  refuseEmptyPaths(positionals, { policies: values.policies, within: values.within });
  if (values.replay !== undefined) {
    if (positionals.length) throw new UsageError(`--replay takes the new policy set from --policies, not a path argument (got \`${positionals[0]}\`)`);
    if (values.strict) throw new UsageError('--strict does not apply to --replay');
    return runReplay({
      db: values.replay,
      policies: (values.policies ?? io.env.PDP_POLICIES) || 'policies',
      since: values.since,
      failOnChange: values['fail-on-change'] === true,
      format: formatOption(values.format, ['text', 'json'], 'text'),
    }, io);
  }
  for (const flag of ['policies', 'since', 'fail-on-change'] as const) {
    if (values[flag] !== undefined) throw new UsageError(`--${flag} goes with --replay AUDIT_DB`);
  }
  const format = formatOption(values.format, ['text', 'json', 'sarif'], 'text');
  const within = values.within === undefined ? undefined : namedFilesWithin(values.within, positionals, io);
  const paths = within ? [values.within!] : positionals.length ? positionals : [io.env.PDP_POLICIES || 'policies'];
  const inputs = readPolicyInputs(paths, io);
  const diagnostics: Diagnostic[] = [];
  const acknowledged: Acknowledged[] = [];
  let files = 0;
  let rules = 0;
  for (const input of inputs) {
    const built = buildPolicySet(input.sources, { lint: true });
    files += input.sources.length;
    rules += built.policy?.ruleCount ?? 0;
    for (const d of withDisplayPaths(input, built.diagnostics)) diagnostics.push(d);
    for (const a of built.acknowledged ?? []) acknowledged.push({ diagnostic: withDisplayPaths(input, [a.diagnostic])[0]!, reason: a.reason });
  }
  // --within: the whole set is checked, and what is reported is what lies in the named files.
  const reported = (d: Diagnostic) => within === undefined || within.size === 0 || within.has(realFile(path.resolve(io.cwd, d.span.file)));
  const sorted = sortDiagnostics(diagnostics.filter(reported));
  const reportedAcknowledged = acknowledged.filter((a) => reported(a.diagnostic));
  if (within !== undefined && within.size > 0) files = within.size;
  const errors = sorted.filter((d) => d.severity === 'error').length;
  const warnings = sorted.length - errors;
  // Acknowledged warnings (`# pdp:allow CODE -- why`) are reported apart and never fail --strict.
  const failed = hasErrors(sorted) || (values.strict === true && warnings > 0);
  if (format === 'json') {
    const acknowledgedJson = reportedAcknowledged.map((a) => ({ ...diagnosticToJson(a.diagnostic), reason: a.reason }));
    io.stdout.write(`${JSON.stringify({ ok: !failed, files, rules, errors, warnings, diagnostics: sorted.map(diagnosticToJson), acknowledged: acknowledgedJson }, null, 2)}\n`);
  } else if (format === 'sarif') {
    const { toSarif } = await import('./sarif');
    io.stdout.write(`${JSON.stringify(toSarif(sorted, { version: packageVersion() }, reportedAcknowledged), null, 2)}\n`);
  } else {
    printDiagnostics(sorted, inputs, io);
    const summary = `${files} file${files === 1 ? '' : 's'}, ${rules} rule${rules === 1 ? '' : 's'}: ${errors} error${errors === 1 ? '' : 's'}, ${warnings} warning${warnings === 1 ? '' : 's'}${reportedAcknowledged.length ? ` (${reportedAcknowledged.length} more acknowledged by \`pdp:allow\`)` : ''}`;
    (failed ? io.stderr : io.stdout).write(`${failed ? 'check failed' : 'ok'}: ${summary}\n`);
  }
  return failed ? EXIT_FINDING : EXIT_OK;
};

const realFile = (file: string): string => {
  try {
    return fs.realpathSync(file);
  } catch {
    return file;
  }
};

/**
 * `--within DIR FILE…`: the named files (as real paths), each of which must be a policy file of the
 * set in DIR. Empty when none is named (the whole set is reported).
 */
function namedFilesWithin(dir: string, files: readonly string[], io: CliIo): Set<string> {
  const root = path.resolve(io.cwd, dir);
  let stat: fs.Stats;
  try {
    stat = fs.statSync(root);
  } catch (e) {
    throw new UsageError(`--within: ${policyPathProblem(dir, e)}`);
  }
  if (!stat.isDirectory()) throw new UsageError(`--within takes the policy set's directory; ${quote(dir)} is a file`);
  const realRoot = realFile(root);
  const named = new Set<string>();
  for (const file of files) {
    const real = realFile(path.resolve(io.cwd, file));
    let fileStat: fs.Stats;
    try {
      fileStat = fs.statSync(real);
    } catch (e) {
      throw new UsageError(policyPathProblem(file, e));
    }
    if (!real.startsWith(realRoot + path.sep) || !real.endsWith('.hcl') || fileStat.isDirectory()) {
      throw new UsageError(`\`${file}\` is not a policy file of the set in \`${dir}\` (a \`*.hcl\` file under it)`);
    }
    named.add(real);
  }
  return named;
}

function packageVersion(): string | undefined {
  try {
    return (require('../../../package.json') as { version?: string }).version;
  } catch {
    return undefined;
  }
}

// ---- replay -----------------------------------------------------------------------------------

interface ReplayArgs {
  db: string;
  policies: string;
  since: string | undefined;
  failOnChange: boolean;
  format: string;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

// Audit data is attacker-influenced (identities, resources): control characters are shown escaped
// so they cannot rewrite the terminal.
function printable(value: string | null): string {
  if (value === null) return '(none)';
  return value.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Text output lists at most this many groups; --format json lists all. */
const TEXT_GROUP_LIMIT = 200;

async function runReplay(options: ReplayArgs, io: CliIo): Promise<number> {
  if (options.db === '') throw new UsageError('--replay expects an audit database file');
  let since: string | undefined;
  if (options.since !== undefined) {
    const ms = parseDuration(options.since, '--since');
    if (ms <= 0) throw new UsageError(`--since must be longer than zero; got \`${options.since}\``);
    since = new Date(Date.now() - ms).toISOString();
  }

  // The new policy set first: a broken set is a finding (exit 1) whatever the database holds.
  const sources = readPolicyDirectory(options.policies, io);
  if (sources.length === 0) {
    io.stderr.write(`pdp check: no \`*.hcl\` files in \`${options.policies}\`\n`);
    return EXIT_FINDING;
  }
  const built = buildPolicySet(sources);
  if (!built.policy) {
    const input: PolicyInput = { label: options.policies, base: options.policies, sources };
    const errors = withDisplayPaths(input, built.diagnostics.filter((d) => d.severity === 'error'));
    if (options.format === 'json') {
      io.stdout.write(`${JSON.stringify({ ok: false, policies: options.policies, errors: errors.length, diagnostics: errors.map(diagnosticToJson) }, null, 2)}\n`);
    } else {
      printDiagnostics(errors, [input], io);
      io.stderr.write(`pdp check: the policy set in \`${options.policies}\` has ${plural(errors.length, 'error')}; nothing replayed\n`);
    }
    return EXIT_FINDING;
  }
  const policy: LoadedPolicy = built.policy;

  const { AuditStoreError, openAuditStoreReadOnly } = await import('../audit');
  const { decisionRows, replay } = await import('../replay');
  const dbPath = path.resolve(io.cwd, options.db);
  let reader;
  try {
    reader = openAuditStoreReadOnly(dbPath);
  } catch (e) {
    if (e instanceof AuditStoreError) throw new UsageError(e.message);
    throw e;
  }
  const progress = io.stderr.isTTY === true;
  let report;
  try {
    report = replay(decisionRows(reader.db, since === undefined ? {} : { since }), policy, {
      ...(progress ? { onProgress: (n: number) => io.stderr.write(`\rreplayed ${n.toLocaleString('en-US')} rows…`) } : {}),
    });
  } catch (e) {
    throw new UsageError(`cannot read audit database \`${options.db}\`: ${(e as Error).message}`);
  } finally {
    reader.close();
    if (progress) io.stderr.write('\r\x1b[K');
  }

  const changed = report.allowToDeny + report.denyToAllow;
  if (options.format === 'json') {
    io.stdout.write(`${JSON.stringify({
      ok: !(options.failOnChange && changed > 0),
      db: options.db,
      policies: options.policies,
      policy_version: report.policyVersion,
      since: since ?? null,
      rows: report.rows,
      unchanged: report.unchanged,
      allow_to_deny: report.allowToDeny,
      deny_to_allow: report.denyToAllow,
      skipped: report.skipped,
      distinct_requests: report.distinctRequests,
      flips: report.flips,
    }, null, 2)}\n`);
  } else {
    io.stdout.write(formatReplayText(report, options, since));
  }
  return options.failOnChange && changed > 0 ? EXIT_FINDING : EXIT_OK;
}

function formatReplayText(report: import('../replay').ReplayReport, options: ReplayArgs, since: string | undefined): string {
  let out = `replaying the decisions in ${options.db}${since ? ` since ${since}` : ''} under ${options.policies} (${report.policyVersion})\n`;
  const sections: [import('../replay').FlipDirection, string, number][] = [
    ['allow_to_deny', 'allow → deny', report.allowToDeny],
    ['deny_to_allow', 'deny → allow', report.denyToAllow],
  ];
  let shown = 0;
  let hidden = 0;
  for (const [direction, title, total] of sections) {
    if (total === 0) continue;
    const groups = report.flips.filter((g) => g.direction === direction);
    // Grouped by (identity, resource), each with one line per action and outcome.
    const byTarget = new Map<string, typeof groups>();
    for (const g of groups) {
      const key = `${g.identity}\0${g.resource}\0${g.namespace}`;
      const list = byTarget.get(key);
      if (list) list.push(g);
      else byTarget.set(key, [g]);
    }
    out += `\n${title}: ${plural(total, 'decision')}, ${plural(byTarget.size, 'identity and resource pair')}\n`;
    for (const list of byTarget.values()) {
      if (shown >= TEXT_GROUP_LIMIT) {
        hidden += list.length;
        continue;
      }
      const first = list[0]!;
      const namespace = first.resource.startsWith('namespace:') ? '' : ` (namespace ${printable(first.namespace)})`;
      out += `  ${printable(first.identity)} on ${printable(first.resource)}${namespace}\n`;
      for (const g of list) {
        shown++;
        out += `    ${g.action} ×${g.count}: was ${g.old.result}${g.old.rule ? ` (${printable(g.old.rule)})` : ''}, now ${g.new.result}${g.new.rule ? ` (${g.new.rule})` : ''}: ${printable(g.new.reason)}\n`;
      }
    }
  }
  if (hidden > 0) out += `\n… and ${plural(hidden, 'more group')}; use --format json for all of them\n`;
  out += `\nreplayed ${plural(report.rows, 'decision')}: ${report.allowToDeny} allow→deny, ${report.denyToAllow} deny→allow, ${report.unchanged} unchanged`;
  if (report.skipped) out += `, ${report.skipped} skipped (not a valid request)`;
  out += '\n';
  return out;
}
