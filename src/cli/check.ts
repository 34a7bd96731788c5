// `pdp check [PATH…]`: every error and warning of every file, sorted by location.
import { hasErrors, sortDiagnostics, type Diagnostic } from '../diagnostics';
import { buildPolicySet } from '../engine';
import { parse, formatOption } from './args';
import { EXIT_FINDING, EXIT_OK, type Command } from './io';
import { diagnosticToJson, printDiagnostics, readPolicyInputs, withDisplayPaths } from './policy-input';

export const HELP = `usage: pdp check [PATH…] [--strict] [--format text|json]

Parses and checks policy files or directories (default: $PDP_POLICIES or ./policies) and prints
every error and warning, sorted by location. Each directory is checked as one policy set; files
named together are checked together as one set.

  --strict          warnings fail the check too
  --format FORMAT   text (default) or json

Exit codes: 0 no errors, 1 errors found (or warnings with --strict), 2 bad usage.
`;

export const run: Command = async (args, io) => {
  const { values, positionals } = parse(args, { strict: { type: 'boolean' }, format: { type: 'string' } });
  const format = formatOption(values.format, ['text', 'json'], 'text');
  const paths = positionals.length ? positionals : [io.env.PDP_POLICIES ?? 'policies'];
  const inputs = readPolicyInputs(paths, io);
  const diagnostics: Diagnostic[] = [];
  let files = 0;
  let rules = 0;
  for (const input of inputs) {
    const built = buildPolicySet(input.sources);
    files += input.sources.length;
    rules += built.policy?.ruleCount ?? 0;
    diagnostics.push(...withDisplayPaths(input, built.diagnostics));
  }
  const sorted = sortDiagnostics(diagnostics);
  const errors = sorted.filter((d) => d.severity === 'error').length;
  const warnings = sorted.length - errors;
  const failed = hasErrors(sorted) || (values.strict === true && warnings > 0);
  if (format === 'json') {
    io.stdout.write(`${JSON.stringify({ ok: !failed, files, rules, errors, warnings, diagnostics: sorted.map(diagnosticToJson) }, null, 2)}\n`);
  } else {
    printDiagnostics(sorted, inputs, io);
    const summary = `${files} file${files === 1 ? '' : 's'}, ${rules} rule${rules === 1 ? '' : 's'}: ${errors} error${errors === 1 ? '' : 's'}, ${warnings} warning${warnings === 1 ? '' : 's'}`;
    (failed ? io.stderr : io.stdout).write(`${failed ? 'check failed' : 'ok'}: ${summary}\n`);
  }
  return failed ? EXIT_FINDING : EXIT_OK;
};
