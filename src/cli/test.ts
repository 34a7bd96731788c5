// `pdp test [PATH…]`: runs the `test` blocks of each policy set against that set.
import { escapeForTerminal } from '../diagnostics';
import { buildPolicySet, decideWith, defaultDecisionNote, describeRule, ruleCoverage, type RuleCoverage } from '../engine';
import { parse, formatOption, refuseEmptyPaths } from './args';
import { EXIT_FINDING, EXIT_OK, UsageError, type Command } from './io';
import { displayPath, printDiagnostics, readPolicyInputs, withDisplayLocations, withDisplayPaths } from './policy-input';

export const HELP = `usage: pdp test [PATH…] [--run REGEXP] [--coverage] [--coverage-threshold PCT] [--format text|json]

Runs every \`test\` block in each policy set (default: $PDP_POLICIES or ./policies) and prints
pass/fail per test, the deciding rule of each failure, and a \`N passed, N failed\` line.
A policy set with errors is not tested: its errors go to stderr and, instead of the count, stdout
says \`tests not run: …\` (json: the set is listed in \`not_run\`). A set without any \`test\`
block is a finding too (stderr says so; json: \`no_tests\`), so a CI job whose tests file was
renamed or commented out does not stay green.

  --run REGEXP   run only the tests whose name matches REGEXP (JavaScript syntax, as \`go test -run\`);
                 matching no test at all is a finding
  --coverage     after the count, per policy set: how many of its rules (blocks with a \`policy\`)
                 decided at least one test, and each other rule at its file:line (json: \`coverage\`).
                 A test the default policy decides covers no rule; with --run, only the tests that
                 ran count
  --coverage-threshold PCT
                 a finding when any set's coverage is below PCT percent (0-100); implies --coverage
  --format FMT   text (default) or json

Exit codes: 0 all passed, 1 any failure (or a set with errors, one without tests, or coverage
below the threshold), 2 bad usage.
`;

interface TestOutcome {
  name: string;
  at: string;
  passed: boolean;
  expected: string;
  actual: string;
  reason: string;
  /** The deciding rule, shaped as in `pdp eval --format json` and the HTTP answer. */
  rule: { file: string; line: number } | null;
  /** For a failure the default policy decided: the rules for its service in other namespaces. */
  note?: string;
}

/** One policy set's coverage, paths as the rest of the output shows them. */
interface SetCoverage {
  set: string;
  covered: number;
  total: number;
  /** Rounded down to one decimal, so only full coverage reads 100. */
  percent: number;
  uncovered: { file: string; line: number; rule: string }[];
}

/** `--coverage-threshold`: a percentage from 0 to 100 (decimals allowed, as `opa test --threshold`). */
function parseCoverageThreshold(value: string): number {
  const threshold = /^\d+(\.\d+)?$/.test(value) ? Number(value) : NaN;
  if (!(threshold >= 0 && threshold <= 100)) throw new UsageError(`--coverage-threshold expects a percentage from 0 to 100; got \`${value}\``);
  return threshold;
}

function setCoverage(set: string, base: string, coverage: RuleCoverage): SetCoverage {
  const { covered, total } = coverage;
  return {
    set, covered, total,
    // In integers, so 29 of 100 is 29.0, not 28.9 as 0.29 * 100 in floating point would give.
    percent: total === 0 ? 100 : Math.floor((covered * 1000) / total) / 10,
    uncovered: coverage.uncovered.map((r) => ({ file: displayPath(base, r.file), line: r.line, rule: describeRule(r) })),
  };
}

export const run: Command = async (args, io) => {
  const { values, positionals } = parse(args, {
    format: { type: 'string' }, run: { type: 'string' }, coverage: { type: 'boolean' }, 'coverage-threshold': { type: 'string' },
  });
  refuseEmptyPaths(positionals);
  const format = formatOption(values.format, ['text', 'json'], 'text');
  const threshold = values['coverage-threshold'] === undefined ? undefined : parseCoverageThreshold(values['coverage-threshold']);
  const withCoverage = values.coverage === true || threshold !== undefined;
  let selected: RegExp | undefined;
  if (values.run !== undefined) {
    try {
      selected = new RegExp(values.run, 'u');
    } catch (e) {
      throw new UsageError(`--run: \`${values.run}\` is not a regular expression: ${(e as Error).message}`);
    }
  }
  const inputs = readPolicyInputs(positionals.length ? positionals : [io.env.PDP_POLICIES || 'policies'], io);
  const outcomes: TestOutcome[] = [];
  const notRun: string[] = [];
  const noTests: string[] = [];
  const coverages: SetCoverage[] = [];
  for (const input of inputs) {
    const built = buildPolicySet(input.sources);
    if (!built.policy) {
      notRun.push(input.label);
      printDiagnostics(withDisplayPaths(input, built.diagnostics).filter((d) => d.severity === 'error'), [input], io);
      io.stderr.write(`pdp test: \`${input.label}\` has errors; its tests were not run\n`);
      continue;
    }
    if (built.policy.compiled.tests.length === 0) {
      noTests.push(input.label);
      io.stderr.write(`pdp test: \`${input.label}\` has no \`test\` blocks; nothing in it was tested\n`);
    }
    const cited: ({ file: string; line: number } | null)[] = [];
    for (const t of built.policy.compiled.tests) {
      if (selected !== undefined && !selected.test(t.name)) continue;
      const at = `${displayPath(input.base, t.file)}:${t.line}`;
      const outcome = decideWith(built.policy, { identity: t.identity, action: t.action, resource: t.resource, namespace: t.namespace, sourceIp: t.sourceIp });
      if (!outcome.ok) {
        outcomes.push({ name: t.name, at, passed: false, expected: t.expect, actual: 'ERROR', reason: `${outcome.error.field}: ${outcome.error.message}`, rule: null });
        continue;
      }
      const d = outcome.decision;
      cited.push(d.rule); // a failing test covers the rule that decided it too: coverage is what ran
      const passed = d.result === t.expect;
      const note = passed ? undefined : defaultDecisionNote(built.policy, outcome);
      outcomes.push({
        name: t.name, at, passed, expected: t.expect, actual: d.result, reason: withDisplayLocations(input, d.reason),
        rule: d.rule ? { file: displayPath(input.base, d.rule.file), line: d.rule.line } : null,
        ...(note === undefined ? {} : { note: withDisplayLocations(input, note) }),
      });
    }
    if (withCoverage) coverages.push(setCoverage(input.label, input.base, ruleCoverage(built.policy.compiled.rules, cited)));
  }
  // --run that selects nothing tested nothing: said, and a finding (a typo must not pass a CI job).
  const noneSelected = selected !== undefined && outcomes.length === 0 && noTests.length === 0 && notRun.length === 0;
  if (noneSelected) io.stderr.write(`pdp test: no test name matches \`${values.run}\`\n`);
  const passed = outcomes.filter((o) => o.passed).length;
  const failed = outcomes.length - passed;
  if (format === 'json') {
    // `not_run`: the policy sets whose tests were not run because the set has errors;
    // `no_tests`: the sets that loaded but hold no `test` block.
    // `coverage`: one object per set whose tests ran, only with --coverage.
    const body = { passed, failed, not_run: notRun, no_tests: noTests, tests: outcomes, ...(withCoverage ? { coverage: coverages } : {}) };
    io.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
  } else {
    const out = io.stdout;
    for (const outcome of outcomes) {
      // Test names and reasons are policy text: escaped for the terminal like diagnostics.
      const o = { ...outcome, name: escapeForTerminal(outcome.name), at: escapeForTerminal(outcome.at), reason: escapeForTerminal(outcome.reason) };
      if (o.passed) out.write(`PASS  ${o.name}  (${o.at})\n`);
      else if (o.actual === 'ERROR') {
        // Refused before any rule was looked at: nothing decided it.
        out.write(`FAIL  ${o.name}  (${o.at})\n      expected ${o.expected}, got ERROR: the request was refused: ${o.reason}\n`);
      } else {
        const rule = o.rule ? escapeForTerminal(`${o.rule.file}:${o.rule.line}`) : 'the default policy';
        out.write(`FAIL  ${o.name}  (${o.at})\n      expected ${o.expected}, got ${o.actual}: ${o.reason}\n      decided by ${rule}\n`);
        if (outcome.note !== undefined) out.write(`      note: ${escapeForTerminal(outcome.note)}\n`);
      }
    }
    // No count when some set was not run: `0 passed, 0 failed` would read as a result.
    // A set without tests is named on the count line too: `0 passed, 0 failed` alone would read as green.
    const untested = noTests.length ? `; no \`test\` blocks in ${noTests.map((l) => `\`${l}\``).join(', ')}` : '';
    if (notRun.length === 0) out.write(`${passed} passed, ${failed} failed${untested}\n`);
    else out.write(`tests not run: ${notRun.map((l) => `\`${l}\``).join(', ')} ${notRun.length === 1 ? 'has' : 'have'} errors${outcomes.length ? ` (of the others: ${passed} passed, ${failed} failed)` : ''}\n`);
    for (const c of coverages) out.write(coverageText(c, selected !== undefined));
  }
  // Compared exactly, not as the rounded-down percent shown: 2 of 3 rules is below 66.7.
  const below = threshold === undefined ? [] : coverages.filter((c) => c.covered * 100 < threshold * c.total);
  for (const c of below) io.stderr.write(`pdp test: rule coverage of \`${c.set}\` is ${c.percent.toFixed(1)}% (${c.covered}/${c.total}), below --coverage-threshold ${threshold}%\n`);
  return failed > 0 || notRun.length > 0 || noTests.length > 0 || noneSelected || below.length > 0 ? EXIT_FINDING : EXIT_OK;
};

function coverageText(c: SetCoverage, onlySelected: boolean): string {
  const which = onlySelected ? ' (the tests --run selected)' : '';
  const lines = [`coverage of \`${c.set}\`${which}: ${c.covered}/${c.total} rules decided a test (${c.percent.toFixed(1)}%)${c.uncovered.length ? '; not covered:' : ''}`];
  const width = Math.max(0, ...c.uncovered.map((u) => `${u.file}:${u.line}`.length));
  for (const u of c.uncovered) lines.push(`  ${`${u.file}:${u.line}`.padEnd(width)}  ${u.rule}`);
  // Rule text and file names come from the policy files: escaped for the terminal like diagnostics.
  return `${lines.map(escapeForTerminal).join('\n')}\n`;
}
