// `pdp test [PATH…]`: runs the `test` blocks of each policy set against that set.
import { escapeForTerminal } from '../diagnostics';
import { buildPolicySet, decideWith, defaultDecisionNote } from '../engine';
import { parse, formatOption, refuseEmptyPaths } from './args';
import { EXIT_FINDING, EXIT_OK, UsageError, type Command } from './io';
import { displayPath, printDiagnostics, readPolicyInputs, withDisplayLocations, withDisplayPaths } from './policy-input';

export const HELP = `usage: pdp test [PATH…] [--run REGEXP] [--format text|json]

Runs every \`test\` block in each policy set (default: $PDP_POLICIES or ./policies) and prints
pass/fail per test, the deciding rule of each failure, and a closing \`N passed, N failed\` line.
A policy set with errors is not tested: its errors go to stderr and, instead of the count, stdout
says \`tests not run: …\` (json: the set is listed in \`not_run\`). A set without any \`test\`
block is a finding too (stderr says so; json: \`no_tests\`), so a CI job whose tests file was
renamed or commented out does not stay green.

  --run REGEXP   run only the tests whose name matches REGEXP (JavaScript syntax, as \`go test -run\`);
                 matching no test at all is a finding
  --format FMT   text (default) or json

Exit codes: 0 all passed, 1 any failure (or a set with errors, or one without tests), 2 bad usage.
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

export const run: Command = async (args, io) => {
  const { values, positionals } = parse(args, { format: { type: 'string' }, run: { type: 'string' } });
  refuseEmptyPaths(positionals);
  const format = formatOption(values.format, ['text', 'json'], 'text');
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
    for (const t of built.policy.compiled.tests) {
      if (selected !== undefined && !selected.test(t.name)) continue;
      const at = `${displayPath(input.base, t.file)}:${t.line}`;
      const outcome = decideWith(built.policy, { identity: t.identity, action: t.action, resource: t.resource, namespace: t.namespace, sourceIp: t.sourceIp });
      if (!outcome.ok) {
        outcomes.push({ name: t.name, at, passed: false, expected: t.expect, actual: 'ERROR', reason: `${outcome.error.field}: ${outcome.error.message}`, rule: null });
        continue;
      }
      const d = outcome.decision;
      const passed = d.result === t.expect;
      const note = passed ? undefined : defaultDecisionNote(built.policy, outcome);
      outcomes.push({
        name: t.name, at, passed, expected: t.expect, actual: d.result, reason: withDisplayLocations(input, d.reason),
        rule: d.rule ? { file: displayPath(input.base, d.rule.file), line: d.rule.line } : null,
        ...(note === undefined ? {} : { note: withDisplayLocations(input, note) }),
      });
    }
  }
  // --run that selects nothing tested nothing: said, and a finding (a typo must not pass a CI job).
  const noneSelected = selected !== undefined && outcomes.length === 0 && noTests.length === 0 && notRun.length === 0;
  if (noneSelected) io.stderr.write(`pdp test: no test name matches \`${values.run}\`\n`);
  const passed = outcomes.filter((o) => o.passed).length;
  const failed = outcomes.length - passed;
  if (format === 'json') {
    // `not_run`: the policy sets whose tests were not run because the set has errors;
    // `no_tests`: the sets that loaded but hold no `test` block.
    io.stdout.write(`${JSON.stringify({ passed, failed, not_run: notRun, no_tests: noTests, tests: outcomes }, null, 2)}\n`);
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
  }
  return failed > 0 || notRun.length > 0 || noTests.length > 0 || noneSelected ? EXIT_FINDING : EXIT_OK;
};
